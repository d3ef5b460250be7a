//! What a flight is: immutable metadata ([`FlightMeta`]) plus segments of rows, each resident ([`Resident`]) or in
//! its file.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::store::budget::Reservation;
use crate::store::spill::SegmentFile;
use crate::store::{FlightId, SegmentId};

/// How a flight was made: an upload or an op over input flights.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Lineage {
    /// `upload` or the op name (`sql`, `take`, …).
    pub op: String,
    /// The op's parameters as the client sent them, after names were resolved to ids.
    pub params: serde_json::Value,
    /// Ids of the flights this one was computed from (for `append` uploads: the flight appended to).
    pub inputs: Vec<FlightId>,
}

impl Lineage {
    /// Lineage of a plain upload with the given put mode.
    pub fn upload(mode: &str, inputs: Vec<FlightId>) -> Self {
        Self {
            op: "upload".to_string(),
            params: serde_json::json!({ "mode": mode }),
            inputs,
        }
    }
}

/// The immutable description of a flight; shared by every reader.
#[derive(Debug)]
pub struct FlightMeta {
    /// The flight's id.
    pub id: FlightId,
    /// Arrow schema of every batch.
    pub schema: SchemaRef,
    /// Total rows.
    pub num_rows: u64,
    /// Total bytes, counted from sliced buffers (what the data really occupies).
    pub num_bytes: u64,
    /// How the flight was made.
    pub lineage: Lineage,
    /// Creation time, RFC 3339 in UTC.
    pub created_at: String,
    /// For uploads, the namespace it was uploaded to (it keeps belonging there after its name moves on; access
    /// checks use it). `None` for derived flights, and for uploads recorded before this was kept.
    pub namespace: Option<String>,
}

/// The batches of one segment held in memory, with the reservation that covers them.
///
/// Readers clone the `Arc` and stream outside the store's lock; the bytes return to the budget when the last
/// holder (the store or a reader) drops it, so a flight evicted while a client reads it stays counted until the
/// read ends.
#[derive(Debug)]
pub struct Resident {
    batches: Vec<RecordBatch>,
    num_rows: u64,
    num_bytes: u64,
    _reservation: Reservation,
}

impl Resident {
    /// Wraps batches whose bytes `reservation` already covers.
    pub fn new(batches: Vec<RecordBatch>, reservation: Reservation) -> Self {
        let num_rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let num_bytes = reservation.size() as u64;
        Self {
            batches,
            num_rows,
            num_bytes,
            _reservation: reservation,
        }
    }

    /// The batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Rows in all batches.
    pub fn num_rows(&self) -> u64 {
        self.num_rows
    }

    /// Bytes reserved for the batches.
    pub fn num_bytes(&self) -> u64 {
        self.num_bytes
    }
}

/// One segment of a flight as it was when the flight was looked up: its memory (read first) and its file, if any.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    /// The segment.
    pub segment: SegmentId,
    /// Rows in it.
    pub rows: u64,
    /// Their in-memory size.
    pub bytes: u64,
    /// Its batches, when resident.
    pub memory: Option<Arc<Resident>>,
    /// Its file, when written.
    pub file: Option<Arc<SegmentFile>>,
}

/// A cheap handle to one flight: its metadata and where its rows were when it was looked up.
///
/// Holding a `Flight` keeps what it points at alive: resident batches stay in memory (and counted) and files stay on
/// disk until the handle is dropped, even if the flight is evicted or dropped meanwhile. Read it with
/// [`crate::store::FlightStore::read`].
#[derive(Clone, Debug)]
pub struct Flight {
    /// Immutable metadata.
    pub meta: Arc<FlightMeta>,
    pub(crate) parts: Arc<[Part]>,
}

impl Flight {
    /// The flight's id.
    pub fn id(&self) -> FlightId {
        self.meta.id
    }

    /// `memory` when every row is in memory, else `spilled` (reading it touches disk).
    pub fn state(&self) -> &'static str {
        if self.is_resident() { "memory" } else { "spilled" }
    }

    /// Whether every row is in memory.
    pub fn is_resident(&self) -> bool {
        self.parts.iter().all(|p| p.memory.is_some() || p.rows == 0)
    }
}

/// Bytes a batch really occupies: the sum of its sliced buffer sizes.
///
/// `RecordBatch::get_array_memory_size` counts whole buffers, which for batches decoded from Flight messages is the
/// size of the entire received message for every column, several times too much.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Copies `batch` into fresh buffers when it is a small view of much larger ones (a slice, or a projection of
/// columns that share one received message), so it does not keep unaccounted memory alive.
pub fn compact_if_wasteful(batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let used = batch_bytes(&batch);
    let held = batch.get_array_memory_size();
    if held <= used.saturating_mul(2) + 64 * 1024 {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let mut copy = arrow::array::MutableArrayData::new(vec![&data], false, data.len());
            copy.try_extend(0, 0, data.len())?;
            Ok(arrow::array::make_array(copy.freeze()))
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Cuts the row range `offset..offset+length` out of `batches` without copying.
pub fn slice_batches<'a>(
    batches: impl IntoIterator<Item = &'a RecordBatch>,
    offset: u64,
    length: u64,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let (mut skip, mut want) = (offset, length);
    for batch in batches {
        if want == 0 {
            break;
        }
        let rows = batch.num_rows() as u64;
        if skip >= rows {
            skip -= rows;
            continue;
        }
        let take = (rows - skip).min(want);
        out.push(batch.slice(skip as usize, take as usize));
        want -= take;
        skip = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(start: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(start..start + n))]).unwrap()
    }

    #[test]
    fn slices_across_batches() {
        let batches = [batch(0, 10), batch(10, 10), batch(20, 10)];
        let out = slice_batches(&batches, 8, 14);
        let values: Vec<i64> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, (8..22).collect::<Vec<_>>());
        assert!(slice_batches(&batches, 30, 5).is_empty());
        assert_eq!(slice_batches(&batches, 25, 100)[0].num_rows(), 5);
    }

    #[test]
    fn compaction_copies_only_wasteful_views() {
        let big = batch(0, 100_000);
        let small = big.slice(10, 5);
        let compacted = compact_if_wasteful(small.clone()).unwrap();
        assert_eq!(compacted, small);
        assert!(compacted.get_array_memory_size() < 4096);
        let whole = compact_if_wasteful(big.clone()).unwrap();
        assert!(whole.column(0).to_data().buffers()[0].ptr_eq(&big.column(0).to_data().buffers()[0]));
    }

    #[test]
    fn sliced_sizes_count_only_the_slice() {
        let strings = StringArray::from_iter_values((0..1000).map(|i| format!("value-{i}")));
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let full = RecordBatch::try_new(schema, vec![Arc::new(strings)]).unwrap();
        let part = full.slice(0, 10);
        assert!(batch_bytes(&part) * 50 < batch_bytes(&full));
        assert!(part.get_array_memory_size() >= full.get_array_memory_size() / 2);
    }
}
