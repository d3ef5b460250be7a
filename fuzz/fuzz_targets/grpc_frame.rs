//! The hand-written gRPC request decoder DoGet uses, for the messages a client can send to it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flightbay::fuzzing::grpc_frame(data));
