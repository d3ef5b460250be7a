//! Flight references: PATH descriptors, text references and JSON `source` values.
#![no_main]

use flightbay::protocol::reference::{Source, parse_path, parse_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<String> = text.split('\u{0}').map(str::to_string).collect();
    let _ = parse_path(&parts);
    let _ = parse_text(&text);
    let _ = serde_json::from_slice::<Source>(data);
});
