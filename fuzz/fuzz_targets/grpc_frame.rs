//! The hand-written gRPC request decoder DoGet uses, for the messages a client can send to it.
#![no_main]

use arrow_flight::{FlightDescriptor, Ticket};
use flightbay::protocol::flight_data::decode_grpc_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_grpc_request::<Ticket>(data);
    let _ = decode_grpc_request::<FlightDescriptor>(data);
});
