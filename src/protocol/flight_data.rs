//! The byte layout of DoGet's answer, built by hand so that stored column buffers reach the socket without a
//! user-space copy.
//!
//! An Arrow IPC stream (what [`StreamEncoder`] returns, as a list of zero-copy [`Buffer`]s) is a sequence of
//! messages, each `0xFFFFFFFF`, a little-endian `i32` metadata length, the flatbuffer `Message` (padded), then
//! `bodyLength` bytes of body. A Flight message carries the flatbuffer as `FlightData.data_header` (field 2) and
//! the body as `FlightData.data_body` (field 1000), and gRPC frames each protobuf message with one flag byte (0:
//! not compressed) and its big-endian `u32` length. [`FlightMessage::into_grpc_chunks`] writes that frame as a
//! few small header bytes followed by the column buffers themselves.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamEncoder;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::error::Error;
use crate::store::batch_bytes;

/// `FlightData.data_header`'s protobuf field number.
const DATA_HEADER_FIELD: u32 = 2;
/// `FlightData.data_body`'s protobuf field number.
const DATA_BODY_FIELD: u32 = 1000;
/// gRPC's per-message prefix: compressed flag and big-endian length.
pub const GRPC_PREFIX_BYTES: usize = 5;
/// Chunks shorter than this (prefix, tags, flatbuffer, padding) are merged into their neighbours: each chunk
/// becomes its own HTTP/2 DATA frame, and a handful of bytes is cheaper to copy than to frame.
const MERGE_BELOW_BYTES: usize = 4096;
/// Largest body of one outgoing message (a batch over it is cut into row slices): under the 4 MiB that grpc-go and
/// tonic clients accept by default, with room for headers, and large enough that the 2.6 MB messages of
/// pyarrow's 65 536-row batches go out whole (in the benchmark, splitting them in two cost the pyarrow client more
/// than it cost the server).
pub const TARGET_MESSAGE_BYTES: usize = 3 * 1024 * 1024;
/// The IPC stream's continuation marker before each message's metadata length.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// One Flight IPC message: the flatbuffer header and the body as zero-copy chunks.
#[derive(Clone, Debug, Default)]
pub struct FlightMessage {
    /// `FlightData.data_header`: the IPC `Message` flatbuffer.
    pub header: Bytes,
    /// `FlightData.data_body`, in pieces that concatenate to the body.
    pub body: Vec<Bytes>,
}

impl FlightMessage {
    /// Wraps a `FlightData` built elsewhere (dictionary flights go through arrow-flight's encoder).
    pub fn from_flight_data(data: FlightData) -> Self {
        Self {
            header: data.data_header,
            body: vec![data.data_body],
        }
    }

    /// Total length of the body.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// The protobuf `FlightData` (copies the body when it is in more than one piece); for tonic's codec.
    pub fn into_flight_data(self) -> FlightData {
        let data_body = match <[Bytes; 1]>::try_from(self.body) {
            Ok([one]) => one,
            Err(pieces) => pieces.concat().into(),
        };
        FlightData {
            data_header: self.header,
            data_body,
            ..Default::default()
        }
    }

    /// Length of the gRPC frame [`into_grpc_chunks`](Self::into_grpc_chunks) writes, prefix included.
    pub fn grpc_frame_len(&self) -> usize {
        GRPC_PREFIX_BYTES + self.protobuf_len()
    }

    fn protobuf_len(&self) -> usize {
        let field = |tag: u32, len: usize| {
            if len == 0 {
                0
            } else {
                prost::encoding::key_len(tag) + prost::encoding::encoded_len_varint(len as u64) + len
            }
        };
        field(DATA_HEADER_FIELD, self.header.len()) + field(DATA_BODY_FIELD, self.body_len())
    }

    /// The gRPC-framed protobuf `FlightData`, as chunks that concatenate to it: the body's large buffers are
    /// passed through untouched; everything small is merged into as few chunks as possible.
    pub fn into_grpc_chunks(self) -> Vec<Bytes> {
        let protobuf_len = self.protobuf_len();
        let body_len = self.body_len();
        let mut chunks = Vec::with_capacity(self.body.len() + 1);
        let mut small = BytesMut::with_capacity(GRPC_PREFIX_BYTES + 16 + self.header.len());
        small.put_u8(0);
        small.put_u32(u32::try_from(protobuf_len).unwrap_or(u32::MAX));
        if !self.header.is_empty() {
            encode_key(DATA_HEADER_FIELD, WireType::LengthDelimited, &mut small);
            encode_varint(self.header.len() as u64, &mut small);
            small.put_slice(&self.header);
        }
        if body_len > 0 {
            encode_key(DATA_BODY_FIELD, WireType::LengthDelimited, &mut small);
            encode_varint(body_len as u64, &mut small);
        }
        for piece in self.body {
            if piece.len() < MERGE_BELOW_BYTES {
                small.put_slice(&piece);
            } else {
                if !small.is_empty() {
                    chunks.push(small.split().freeze());
                }
                chunks.push(piece);
            }
        }
        if !small.is_empty() {
            chunks.push(small.freeze());
        }
        chunks
    }
}

/// Decodes the one gRPC-framed protobuf message of a request body (DoGet's `Ticket`).
pub fn decode_grpc_request<M: prost::Message + Default>(frame: &[u8]) -> Result<M, Error> {
    let Some((prefix, message)) = frame.split_first_chunk::<GRPC_PREFIX_BYTES>() else {
        return Err(Error::invalid("request body is shorter than a gRPC message prefix"));
    };
    if prefix[0] != 0 {
        return Err(Error::unimplemented("compressed requests are not supported"));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len != message.len() {
        return Err(Error::invalid(format!(
            "request body holds {} bytes after the gRPC prefix, which announces {len}",
            message.len()
        )));
    }
    M::decode(message).map_err(|e| Error::invalid(format!("request is not a valid protobuf message: {e}")))
}

/// Splits the buffers of an Arrow IPC stream, as [`StreamEncoder`] returns them, into Flight messages without
/// copying the bodies. An end-of-stream marker ends the walk; Flight has no use for it.
pub fn split_ipc_stream(buffers: Vec<Buffer>) -> Result<Vec<FlightMessage>, ArrowError> {
    let mut stream = Chunks::from(buffers);
    let mut messages = Vec::new();
    while stream.remaining > 0 {
        let prefix = stream.take_contiguous(8)?;
        if prefix[..4] != CONTINUATION {
            return Err(ArrowError::IpcError("IPC stream: missing continuation marker".into()));
        }
        let metadata_len = i32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let metadata_len = usize::try_from(metadata_len)
            .map_err(|_| ArrowError::IpcError(format!("IPC stream: metadata length {metadata_len}")))?;
        if metadata_len == 0 {
            break;
        }
        let header = stream.take_contiguous(metadata_len)?;
        let message = arrow::ipc::root_as_message(&header)
            .map_err(|e| ArrowError::IpcError(format!("IPC stream: bad message flatbuffer: {e}")))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| ArrowError::IpcError("IPC stream: negative body length".into()))?;
        let body = stream.take(body_len)?;
        messages.push(FlightMessage { header, body });
    }
    Ok(messages)
}

/// Encodes one batch (preceded, the first time, by the schema) as Flight messages.
pub fn encode_batch(encoder: &mut StreamEncoder, batch: &RecordBatch) -> Result<Vec<FlightMessage>, ArrowError> {
    split_ipc_stream(encoder.encode(batch)?)
}

/// Cuts a batch into zero-copy row slices of about [`TARGET_MESSAGE_BYTES`] each, sized from sliced buffers.
/// Slices hold a multiple of 64 rows, so that validity bitmaps stay byte-aligned and are sent as stored, unless
/// that would take a piece more than an eighth over the target (very wide rows).
pub fn split_for_wire(batch: RecordBatch) -> Vec<RecordBatch> {
    let bytes = batch_bytes(&batch);
    let rows = batch.num_rows();
    if bytes <= TARGET_MESSAGE_BYTES || rows <= 1 {
        return vec![batch];
    }
    let pieces = bytes.div_ceil(TARGET_MESSAGE_BYTES);
    let per_piece = rows.div_ceil(pieces);
    let aligned = per_piece.next_multiple_of(64);
    let limit = (TARGET_MESSAGE_BYTES + TARGET_MESSAGE_BYTES / 8) as u128;
    let per_piece = if aligned as u128 * bytes as u128 <= limit * rows as u128 {
        aligned
    } else {
        per_piece
    };
    (0..rows)
        .step_by(per_piece)
        .map(|start| batch.slice(start, per_piece.min(rows - start)))
        .collect()
}

/// An arrow [`Buffer`] lent to [`Bytes`] without copying; the buffer stays alive until the bytes are dropped.
struct Lent(Buffer);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A byte stream held as a queue of buffers, read from the front.
struct Chunks {
    buffers: VecDeque<Buffer>,
    remaining: usize,
}

impl From<Vec<Buffer>> for Chunks {
    fn from(buffers: Vec<Buffer>) -> Self {
        let remaining = buffers.iter().map(Buffer::len).sum();
        Self {
            buffers: buffers.into(),
            remaining,
        }
    }
}

impl Chunks {
    /// The next `n` bytes as zero-copy pieces.
    fn take(&mut self, mut n: usize) -> Result<Vec<Bytes>, ArrowError> {
        if n > self.remaining {
            return Err(ArrowError::IpcError(format!(
                "IPC stream: message wants {n} more bytes, {} left",
                self.remaining
            )));
        }
        self.remaining -= n;
        let mut pieces = Vec::new();
        while n > 0 {
            let Some(front) = self.buffers.pop_front() else {
                break;
            };
            if front.len() > n {
                pieces.push(Bytes::from_owner(Lent(front.slice_with_length(0, n))));
                self.buffers.push_front(front.slice(n));
                n = 0;
            } else {
                n -= front.len();
                if !front.is_empty() {
                    pieces.push(Bytes::from_owner(Lent(front)));
                }
            }
        }
        Ok(pieces)
    }

    /// The next `n` bytes in one piece (copied only when they straddle buffers, as small headers do).
    fn take_contiguous(&mut self, n: usize) -> Result<Bytes, ArrowError> {
        let mut pieces = self.take(n)?;
        Ok(match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.remove(0),
            _ => pieces.concat().into(),
        })
    }
}

/// Whether `schema` has a dictionary column anywhere; DoGet sends those as their value types.
pub fn has_dictionary(schema: &Schema) -> bool {
    fn walk(field: &Field) -> bool {
        match field.data_type() {
            DataType::Dictionary(_, _) => true,
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::FixedSizeList(f, _)
            | DataType::Map(f, _) => walk(f),
            DataType::Struct(fields) => fields.iter().any(|f| walk(f)),
            DataType::Union(fields, _) => fields.iter().any(|(_, f)| walk(f)),
            DataType::RunEndEncoded(ends, values) => walk(ends) || walk(values),
            _ => false,
        }
    }
    schema.fields().iter().any(|f| walk(f))
}

/// `schema` as DoGet streams it: dictionary columns become their value types (what arrow-flight's encoder sends),
/// so a FlightInfo or table listing announces exactly the schema the stream carries.
pub fn hydrated_schema(schema: &Schema) -> Schema {
    fn field(f: &Field) -> Field {
        f.clone().with_data_type(data_type(f.data_type()))
    }
    fn data_type(t: &DataType) -> DataType {
        match t {
            DataType::Dictionary(_, values) => data_type(values),
            DataType::List(f) => DataType::List(Arc::new(field(f))),
            DataType::LargeList(f) => DataType::LargeList(Arc::new(field(f))),
            DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(field(f)), *n),
            DataType::Map(f, sorted) => DataType::Map(Arc::new(field(f)), *sorted),
            DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| field(f)).collect()),
            other => other.clone(),
        }
    }
    if !has_dictionary(schema) {
        return schema.clone();
    }
    Schema::new_with_metadata(
        schema.fields().iter().map(|f| field(f)).collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Int64Array, ListArray, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use arrow_flight::decode::FlightRecordBatchStream;
    use futures::TryStreamExt;
    use prost::Message;

    use super::*;

    fn sample() -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter((0..1000).map(|i| (i % 7 != 0).then_some(i))));
        let names: ArrayRef = Arc::new(StringArray::from_iter(
            (0..1000).map(|i| (i % 5 != 0).then(|| format!("name-{i}"))),
        ));
        let flags: ArrayRef = Arc::new(BooleanArray::from_iter((0..1000).map(|i| Some(i % 3 == 0))));
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..1000).map(|i| (i % 4 != 0).then(|| (0..i % 5).map(Some).collect::<Vec<_>>())),
        ));
        let structs: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Int64, true)),
            Arc::clone(&ids),
        )]));
        RecordBatch::try_from_iter([
            ("id", ids),
            ("name", names),
            ("flag", flags),
            ("list", lists),
            ("s", structs),
        ])
        .expect("batch")
    }

    fn encode_all(schema: &Schema, batches: &[RecordBatch]) -> Vec<FlightMessage> {
        let mut encoder = StreamEncoder::try_new(schema).expect("encoder");
        let mut messages = Vec::new();
        for batch in batches {
            messages.extend(encode_batch(&mut encoder, batch).expect("encode"));
        }
        messages
    }

    /// Writes messages with the hand-built layout, parses each gRPC frame with prost and decodes the FlightData
    /// stream with arrow-flight's own decoder: the schema it saw and the batches.
    async fn decode(messages: Vec<FlightMessage>) -> (Option<Arc<Schema>>, Vec<RecordBatch>) {
        let mut data = Vec::new();
        for message in messages {
            let expected_len = message.grpc_frame_len();
            let frame: Vec<u8> = message.into_grpc_chunks().concat();
            assert_eq!(frame.len(), expected_len);
            assert_eq!(frame[0], 0, "not compressed");
            let len = u32::from_be_bytes(frame[1..5].try_into().expect("4 bytes")) as usize;
            assert_eq!(len, frame.len() - GRPC_PREFIX_BYTES);
            data.push(Ok(FlightData::decode(&frame[GRPC_PREFIX_BYTES..]).expect("protobuf")));
        }
        let mut stream = FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(data));
        let mut batches = Vec::new();
        while let Some(batch) = stream.try_next().await.expect("decode") {
            batches.push(batch);
        }
        (stream.schema().cloned(), batches)
    }

    #[tokio::test]
    async fn hand_built_frames_decode_to_the_same_batches() {
        let batch = sample();
        // Unaligned slices exercise bitmaps at bit offsets and rebased string and list offsets.
        let batches = vec![
            batch.slice(0, 333),
            batch.slice(333, 1),
            batch.slice(334, 666),
            batch.slice(5, 0),
        ];
        let (schema, got) = decode(encode_all(&batch.schema(), &batches)).await;
        assert_eq!(schema, Some(batch.schema()));
        assert_eq!(got, batches);
    }

    #[tokio::test]
    async fn large_buffers_pass_through_uncopied() {
        let values = Int64Array::from_iter_values(0..100_000);
        let data_ptr = values.values().inner().as_ptr();
        let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).expect("batch");
        let mut encoder = StreamEncoder::try_new(&batch.schema()).expect("encoder");
        let messages = encode_batch(&mut encoder, &batch).expect("encode");
        assert_eq!(messages.len(), 2, "schema, then the batch");
        assert_eq!(messages[0].body_len(), 0);
        let chunks = messages[1].clone().into_grpc_chunks();
        assert!(
            chunks.iter().any(|c| c.as_ptr() == data_ptr),
            "the column's buffer is sent as it is stored"
        );
        let (_, got) = decode(messages).await;
        assert_eq!(got, vec![batch]);
    }

    #[test]
    fn large_batches_are_cut_at_64_row_boundaries() {
        let values = Int64Array::from_iter_values(0..1_000_000);
        let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).expect("batch");
        let pieces = split_for_wire(batch.clone());
        assert_eq!(pieces.len(), 3, "8 MB in pieces of at most 3 MiB");
        assert!(pieces.iter().all(|p| batch_bytes(p) <= TARGET_MESSAGE_BYTES));
        assert!(pieces[..2].iter().all(|p| p.num_rows() % 64 == 0));
        assert_eq!(
            arrow::compute::concat_batches(&batch.schema(), &pieces).expect("concat"),
            batch
        );
        assert_eq!(split_for_wire(batch.slice(0, 10)).len(), 1);
    }

    #[test]
    fn flight_data_matches_prost_encoding() {
        let message = FlightMessage {
            header: Bytes::from_static(b"header"),
            body: vec![Bytes::from(vec![7u8; 5000]), Bytes::from_static(b"tail")],
        };
        let expected = message.clone().into_flight_data().encode_to_vec();
        let frame = message.into_grpc_chunks().concat();
        assert_eq!(&frame[GRPC_PREFIX_BYTES..], &expected[..]);
    }

    #[test]
    fn request_frames_are_checked() {
        let ticket = arrow_flight::Ticket::new("42");
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(ticket.encoded_len() as u32).to_be_bytes());
        frame.extend_from_slice(&ticket.encode_to_vec());
        assert_eq!(
            decode_grpc_request::<arrow_flight::Ticket>(&frame).expect("decodes"),
            ticket
        );

        let code = |bytes: &[u8]| {
            decode_grpc_request::<arrow_flight::Ticket>(bytes)
                .expect_err("rejected")
                .code()
        };
        assert_eq!(code(&frame[..3]), tonic::Code::InvalidArgument);
        assert_eq!(code(&frame[..frame.len() - 1]), tonic::Code::InvalidArgument);
        let mut compressed = frame.clone();
        compressed[0] = 1;
        assert_eq!(code(&compressed), tonic::Code::Unimplemented);
        let garbage = [0, 0, 0, 0, 2, 0xff, 0xff];
        assert_eq!(code(&garbage), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let batch = sample();
        let mut encoder = StreamEncoder::try_new(&batch.schema()).expect("encoder");
        let mut buffers = encoder.encode(&batch).expect("encode");
        buffers.pop();
        assert!(matches!(split_ipc_stream(buffers), Err(ArrowError::IpcError(_))));
    }

    #[tokio::test]
    async fn an_empty_stream_is_the_schema_alone() {
        let schema = sample().schema();
        let encoder = StreamEncoder::try_new(&schema).expect("encoder");
        let messages = split_ipc_stream(encoder.finish().expect("finish")).expect("split");
        assert_eq!(messages.len(), 1, "the end-of-stream marker is dropped");
        let (got_schema, got) = decode(messages).await;
        assert_eq!(got_schema, Some(schema));
        assert!(got.is_empty());
    }
}
