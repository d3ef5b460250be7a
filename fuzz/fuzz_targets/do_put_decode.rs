//! DoPut's FlightData decoding: the upload checks and arrow-flight's decoder, on a valid upload (schema, a batch
//! of several types, a dictionary batch) edited by the input, and on raw protobuf messages. Never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's panic hook would abort on the panics DoPut catches too; only one escaping counts.
    flightbay::fuzzing::quiet_caught_panics();
    flightbay::fuzzing::do_put_decode(data)
});
