//! CMD descriptors (SQL text, JSON ops, the SQL nesting bound): any bytes parse or fail with a client error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::command(data));
