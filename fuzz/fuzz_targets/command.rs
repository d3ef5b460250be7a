//! CMD descriptors (SQL text, JSON ops, the SQL nesting bound): any bytes parse or fail with a client error.
#![no_main]

use flightbay::protocol::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Command::try_decode(data) {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = flightbay::protocol::sql_depth::estimate(text);
    }
});
