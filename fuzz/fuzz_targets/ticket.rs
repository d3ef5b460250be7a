//! DoGet tickets: any bytes parse or fail cleanly, and whatever parses round-trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::ticket(data));
