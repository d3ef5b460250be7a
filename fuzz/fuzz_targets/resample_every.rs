//! `resample` bin widths (`1h`, `15min`, `1D`): any text parses to a positive width or fails cleanly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::resample_every(data));
