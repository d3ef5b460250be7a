//! The checks every DoPut message passes before arrow decodes it.
//!
//! A Flight upload message carries an Arrow IPC `Message` flatbuffer (`data_header`) and its body (`data_body`).
//! arrow's reader trusts the header: a body shorter than the header's `bodyLength`, or a buffer whose
//! `offset + length` lies past the body, makes it slice out of bounds and panic. [`check_message`] verifies those
//! numbers first, so a malformed upload is INVALID_ARGUMENT and never reaches the decoder. arrow's schema
//! conversion also panics (`unimplemented!`) on type ids and units it does not know; there are dozens of such
//! cases, so [`decoder`] runs arrow-flight's decoder with panics caught and answers them as INVALID_ARGUMENT too
//! (found by the property tests and fuzzing; see `fuzz/` and docs/reliability.md).
//!
//! ```text
//! data_header: Message { version, header: RecordBatch { length, nodes, buffers: [{offset, length}, …] }, bodyLength }
//! data_body:   bodyLength bytes; every buffer lies inside it
//! ```

use std::panic::AssertUnwindSafe;

use arrow::ipc::{MessageHeader, root_as_message};
use arrow_flight::FlightData;
use arrow_flight::decode::{DecodedFlightData, DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};

/// Returns `data` if its IPC header agrees with its body (see the module docs); INVALID_ARGUMENT otherwise.
pub fn check_message(data: FlightData) -> Result<FlightData> {
    if data.data_header.is_empty() {
        // Metadata-only messages carry no IPC message; the decoder skips them.
        return Ok(data);
    }
    let message = root_as_message(&data.data_header)
        .map_err(|e| Error::invalid(format!("upload message: the IPC header is not a valid flatbuffer: {e}")))?;
    let body = data.data_body.len() as u64;
    let announced = u64::try_from(message.bodyLength())
        .map_err(|_| Error::invalid("upload message: the IPC header announces a negative body length"))?;
    if announced > body {
        return Err(Error::invalid(format!(
            "upload message: the IPC body is {body} bytes but its header announces {announced}"
        )));
    }
    let buffers = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch().and_then(|b| b.buffers()),
        MessageHeader::DictionaryBatch => message
            .header_as_dictionary_batch()
            .and_then(|d| d.data())
            .and_then(|b| b.buffers()),
        _ => None,
    };
    for (i, buffer) in buffers.iter().flatten().enumerate() {
        let end = u64::try_from(buffer.offset())
            .ok()
            .zip(u64::try_from(buffer.length()).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        match end {
            Some(end) if end <= announced => {}
            _ => {
                return Err(Error::invalid(format!(
                    "upload message: buffer {i} (offset {}, length {}) lies outside the {announced}-byte body",
                    buffer.offset(),
                    buffer.length()
                )));
            }
        }
    }
    Ok(data)
}

/// DoPut's decoder: every message passes [`check_message`], then arrow-flight's decoder, whose panics on
/// malformed input end the stream with INVALID_ARGUMENT instead of unwinding through the handler.
pub fn decoder<S>(messages: S) -> impl Stream<Item = Result<DecodedFlightData, FlightError>> + Send
where
    S: Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
{
    let checked =
        messages.map(|m| m.and_then(|m| check_message(m).map_err(|e| FlightError::ExternalError(Box::new(e)))));
    AssertUnwindSafe(FlightDataDecoder::new(checked))
        .catch_unwind()
        .map(|polled| {
            polled.unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(FlightError::ExternalError(Box::new(Error::invalid(format!(
                    "upload message could not be decoded: {why}"
                )))))
            })
        })
}

/// Checks and decodes a whole upload the way DoPut does (for tests and fuzzing): every payload, or the first
/// error. Never panics, whatever the bytes.
pub fn decode_messages(messages: Vec<FlightData>) -> Result<Vec<DecodedPayload>> {
    let mut decoder = Box::pin(decoder(futures::stream::iter(messages.into_iter().map(Ok))));
    futures::executor::block_on(async {
        let mut out = Vec::new();
        while let Some(decoded) = decoder.next().await {
            out.push(decoded.map_err(Error::from)?.payload);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use futures::TryStreamExt;

    use super::*;

    fn messages() -> Vec<FlightData> {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from_iter_values((0..100).map(|i| format!("v{i}")))) as ArrayRef,
            ),
        ])
        .expect("batch");
        let encoded = FlightDataEncoderBuilder::new().build(futures::stream::iter([Ok(batch)]));
        futures::executor::block_on(encoded.try_collect::<Vec<_>>()).expect("encode")
    }

    #[test]
    fn well_formed_uploads_decode() {
        let decoded = decode_messages(messages()).expect("decodes");
        assert!(matches!(decoded[0], DecodedPayload::Schema(_)));
        assert!(matches!(&decoded[1], DecodedPayload::RecordBatch(b) if b.num_rows() == 100));
    }

    /// Found by fuzzing (`fuzz/regressions/do_put_decode-boolean-buffer-bounds`): a batch header whose row count
    /// exceeds what its buffers hold made arrow panic building a validity bitmap; it is INVALID_ARGUMENT.
    #[test]
    fn a_row_count_beyond_the_buffers_is_invalid_not_a_panic() {
        let mut m = messages();
        let header = m[1].data_header.to_vec();
        let at = header
            .windows(8)
            .position(|w| w == 100i64.to_le_bytes())
            .expect("the row count is in the header");
        let mut edited = header.clone();
        edited[at..at + 8].copy_from_slice(&1_000_000i64.to_le_bytes());
        m[1].data_header = edited.into();
        let e = decode_messages(m).expect_err("row count beyond the buffers");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }

    #[test]
    fn short_bodies_are_invalid_not_panics() {
        for cut in [1, 8, 100] {
            let mut m = messages();
            let body = m[1].data_body.clone();
            m[1].data_body = body.slice(..body.len() - cut);
            let e = decode_messages(m).expect_err("short body");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
            assert!(e.to_string().contains("announces"), "{e}");
        }
        let mut m = messages();
        m[1].data_header = bytes::Bytes::from_static(b"\x00garbage header");
        assert_eq!(
            decode_messages(m).expect_err("garbage").code(),
            tonic::Code::InvalidArgument
        );
    }
}
