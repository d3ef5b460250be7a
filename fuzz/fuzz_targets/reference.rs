//! Flight references: PATH descriptors, text references and JSON `source` values.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::reference(data));
