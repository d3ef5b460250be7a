//! The IPC stream splitter DoGet's encoder uses: any bytes, in any number of buffers, split or fail cleanly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::ipc_split(data));
