//! DoAction types and bodies: any bytes parse or fail with INVALID_ARGUMENT (UNIMPLEMENTED for unknown types).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::action(data));
