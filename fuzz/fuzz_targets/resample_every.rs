//! `resample` bin widths (`1h`, `15min`, `1D`): any text parses to a positive width or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(width) = flightbay::query::parse_every(text)
    {
        assert!(width > 0, "{text:?} -> {width}");
    }
});
