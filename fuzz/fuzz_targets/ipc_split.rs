//! The IPC stream splitter DoGet's encoder uses: any bytes, in any number of buffers, split or fail cleanly.
#![no_main]

use arrow::buffer::Buffer;
use flightbay::protocol::flight_data::split_ipc_stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    // Cut the input into up to 8 buffers at positions the first byte picks.
    let mut buffers = Vec::new();
    let mut start = 0;
    for i in 0..(cuts % 8) as usize {
        let at = (start + 1 + i * 7 + cuts as usize).min(rest.len());
        buffers.push(Buffer::from(&rest[start..at]));
        start = at;
    }
    buffers.push(Buffer::from(&rest[start..]));
    if let Ok(messages) = split_ipc_stream(buffers) {
        let total: usize = messages.iter().map(|m| m.header.len() + m.body_len()).sum();
        assert!(total <= rest.len());
    }
});
