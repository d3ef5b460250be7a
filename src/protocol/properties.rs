//! Property tests of every parser that takes client bytes (the same ones `fuzz/` runs for millions of inputs):
//! none panics, each either parses or answers a client error, and what parses round-trips.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::buffer::Buffer;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use futures::TryStreamExt;
use proptest::prelude::*;

use super::action::{ACTIONS, Action};
use super::command::Command;
use super::flight_data::{decode_grpc_request, split_ipc_stream};
use super::reference::{Source, parse_path, parse_text};
use super::ticket::Ticket;
use super::{sql_depth, upload};
use crate::store::FlightId;

fn client_error(e: &crate::Error) -> bool {
    matches!(
        e.code(),
        tonic::Code::InvalidArgument | tonic::Code::Unimplemented | tonic::Code::NotFound
    )
}

fn upload_template() -> Vec<FlightData> {
    let batch = RecordBatch::try_from_iter([
        (
            "i",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![Some("x"), None, Some("yz")])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let encoded = FlightDataEncoderBuilder::new().build(futures::stream::iter([Ok(batch)]));
    futures::executor::block_on(encoded.try_collect::<Vec<_>>()).expect("encode")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn tickets_parse_or_fail_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        if let Ok(t) = Ticket::try_decode(&bytes) {
            prop_assert_eq!(Ticket::try_decode(&t.encode()).ok(), Some(t));
        }
    }

    #[test]
    fn built_tickets_round_trip(id in any::<u64>(), offset in any::<u64>(), length in any::<u64>()) {
        for t in [Ticket::whole(FlightId(id)), Ticket::range(FlightId(id), offset, length)] {
            prop_assert_eq!(Ticket::try_decode(&t.encode()).ok(), Some(t));
        }
    }

    #[test]
    fn commands_parse_or_fail_cleanly(text in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for input in [text.as_bytes(), &bytes[..]] {
            if let Err(e) = Command::try_decode(input) {
                prop_assert!(client_error(&e), "{}", e);
            }
        }
    }

    #[test]
    fn json_ops_parse_or_fail_cleanly(
        op in prop::sample::select(vec!["take", "slice", "filter", "sort_by", "select", "head", "join", "resample",
                                        "partition", "put", "sql", "shuffle", "rename_columns", "drop_columns"]),
        key in "[a-z_]{1,12}",
        value in prop_oneof![Just("1".to_string()), Just("\"t\"".to_string()), Just("[1,2]".to_string()),
                             Just("{}".to_string()), Just("null".to_string()), "\"\\PC{0,20}\""],
    ) {
        let json = format!(r#"{{"op":"{op}","source":"t","{key}":{value}}}"#);
        if let Err(e) = Command::try_decode(json.as_bytes()) {
            prop_assert!(client_error(&e), "{}", e);
        }
    }

    #[test]
    fn actions_parse_or_fail_cleanly(pick in 0..ACTIONS.len() + 1, body in proptest::collection::vec(any::<u8>(), 0..80)) {
        let kind = ACTIONS.get(pick).map_or("nope", |(k, _)| *k);
        if let Err(e) = Action::try_decode(kind, &body) {
            prop_assert!(client_error(&e), "{}", e);
        }
    }

    #[test]
    fn action_bodies_that_are_not_objects_are_refused(values in proptest::collection::vec(0u64..100, 0..4)) {
        let list = serde_json::to_vec(&values).expect("json");
        for (kind, _) in ACTIONS {
            prop_assert!(Action::try_decode(kind, &list).is_err(), "{} {:?}", kind, values);
        }
    }

    #[test]
    fn references_parse_or_fail_cleanly(parts in proptest::collection::vec("\\PC{0,20}", 0..4), text in "\\PC{0,40}") {
        if let Err(e) = parse_path(&parts) {
            prop_assert!(client_error(&e), "{}", e);
        }
        if let Err(e) = parse_text(&text) {
            prop_assert!(client_error(&e), "{}", e);
        }
        let _ = serde_json::from_str::<Source>(&text);
    }

    #[test]
    fn resample_widths_are_positive(text in "[0-9]{0,25}[a-zA-Z]{0,6}", noise in "\\PC{0,12}") {
        for input in [text.as_str(), noise.as_str()] {
            if let Ok(width) = crate::query::parse_every(input) {
                prop_assert!(width > 0, "{:?} -> {}", input, width);
            }
        }
    }

    #[test]
    fn grpc_frames_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = decode_grpc_request::<arrow_flight::Ticket>(&bytes) {
            prop_assert!(client_error(&e), "{}", e);
        }
    }

    #[test]
    fn ipc_streams_split_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..256) {
        let at = cut.min(bytes.len());
        let buffers = vec![Buffer::from(&bytes[..at]), Buffer::from(&bytes[at..])];
        let _ = split_ipc_stream(buffers);
        let mut framed = vec![0xff, 0xff, 0xff, 0xff];
        framed.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = split_ipc_stream(vec![Buffer::from(framed)]);
    }

    #[test]
    fn edited_uploads_decode_or_fail_cleanly(
        edits in proptest::collection::vec((0usize..3, any::<bool>(), any::<u16>(), any::<u8>()), 0..6),
        cut in 0usize..64,
    ) {
        let mut messages = upload_template();
        for (which, body, at, value) in edits {
            let m = &mut messages[which % 2];
            let mut bytes = if body { m.data_body.to_vec() } else { m.data_header.to_vec() };
            if !bytes.is_empty() {
                let i = at as usize % bytes.len();
                bytes[i] = value;
            }
            if body { m.data_body = bytes.into() } else { m.data_header = bytes.into() }
        }
        let body = messages[1].data_body.clone();
        messages[1].data_body = body.slice(..body.len().saturating_sub(cut));
        if let Err(e) = upload::decode_messages(messages) {
            prop_assert!(client_error(&e), "{}", e);
        }
    }

    #[test]
    fn the_depth_estimate_bounds_operator_chains(n in 1usize..3000, op in prop::sample::select(vec!["+", " OR ", " AND ", "||", " * "])) {
        let sql = format!("SELECT {}", vec!["1"; n + 1].join(op));
        prop_assert!(sql_depth::estimate(&sql) > n);
    }
}
