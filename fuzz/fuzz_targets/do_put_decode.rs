//! DoPut's FlightData decoding: the upload checks and arrow-flight's decoder, on a valid upload (schema, a batch
//! of several types, a dictionary batch) edited by the input, and on raw protobuf messages. Never panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, ListArray, StringArray};
use arrow::datatypes::{Int8Type, Int32Type};
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use flightbay::protocol::upload::decode_messages;
use futures::TryStreamExt;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn template() -> &'static Vec<FlightData> {
    static TEMPLATE: OnceLock<Vec<FlightData>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dict: DictionaryArray<Int8Type> = vec!["a", "b", "a", "c"].into_iter().collect();
        let batch = RecordBatch::try_from_iter([
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![0.5, 1.5, f64::NAN, -1.0])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("yz"), Some("")])) as ArrayRef,
            ),
            (
                "l",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                    Some(vec![Some(1), Some(2)]),
                    None,
                    Some(vec![]),
                    Some(vec![None]),
                ])) as ArrayRef,
            ),
            ("d", Arc::new(dict) as ArrayRef),
        ])
        .expect("batch");
        let encoded = FlightDataEncoderBuilder::new()
            .with_dictionary_handling(arrow_flight::encode::DictionaryHandling::Resend)
            .build(futures::stream::iter([Ok(batch)]));
        futures::executor::block_on(encoded.try_collect::<Vec<_>>()).expect("encode")
    })
}

/// DoPut decodes through `upload::decoder`, which turns a panic inside arrow's decoder into INVALID_ARGUMENT
/// (arrow panics on many inconsistent headers). libfuzzer-sys's panic hook would abort on those caught panics
/// too; a quiet hook lets them be caught as in the server, and any panic that escapes `decode_messages` still
/// fails the run (libfuzzer-sys aborts when the target itself panics).
fn quiet_caught_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let messages = if mode & 1 == 0 {
        // Edit the valid upload: each 4-byte group sets one byte of one message's header or body.
        let mut messages = template().clone();
        let mut headers: Vec<Vec<u8>> = messages.iter().map(|m| m.data_header.to_vec()).collect();
        let mut bodies: Vec<Vec<u8>> = messages.iter().map(|m| m.data_body.to_vec()).collect();
        for edit in rest.chunks_exact(4) {
            let which = edit[0] as usize % messages.len();
            let target = if edit[0] & 0x80 == 0 {
                &mut headers[which]
            } else {
                &mut bodies[which]
            };
            if target.is_empty() {
                continue;
            }
            let at = u16::from_le_bytes([edit[1], edit[2]]) as usize % target.len();
            target[at] = edit[3];
        }
        if let Some(&cut) = rest.chunks_exact(4).remainder().first() {
            let which = cut as usize % messages.len();
            let keep = bodies[which].len().saturating_sub(cut as usize);
            bodies[which].truncate(keep);
        }
        for (m, (h, b)) in messages.iter_mut().zip(headers.into_iter().zip(bodies)) {
            m.data_header = h.into();
            m.data_body = b.into();
        }
        messages
    } else {
        // Raw protobuf FlightData messages, each prefixed by a one-byte length.
        let mut messages = Vec::new();
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let (one, tail) = tail.split_at((len as usize).min(tail.len()));
            if let Ok(m) = FlightData::decode(one) {
                messages.push(m);
            }
            rest = tail;
        }
        messages
    };
    let _ = decode_messages(messages);
});
