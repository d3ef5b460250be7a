//! Reading flights. [`FlightStore::read`] streams rows wherever they live (memory or disk, whole or a row range,
//! projected) and is what DoGet, SQL scans and streaming ops use; [`FlightStore::load`] brings a whole flight into
//! memory under a reservation, for ops that need random access to every row.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::flight::Part;
use super::spill;
use super::{Flight, FlightStore, Resident, SegmentId, batch_bytes, slice_batches};
use crate::error::{Error, Result};

/// A flight's rows as a stream of batches.
pub type RowStream = BoxStream<'static, Result<RecordBatch>>;

/// A whole flight in memory: its batches in order, and the segments that hold them (which keep the bytes counted
/// against the budget for as long as this lives).
#[derive(Debug)]
pub struct Loaded {
    /// Every batch, in row order.
    pub batches: Vec<RecordBatch>,
    pub(super) residents: Vec<(SegmentId, Arc<Resident>)>,
}

impl FlightStore {
    /// Streams the rows of `flight` — all of them, or `range` = (offset, length) — with only the `projection`
    /// columns if given. Resident batches are passed as they are (zero-copy slices); segments on disk are read in the
    /// background a few batches ahead, each batch counted against the budget while the reader holds it. Holding the
    /// stream keeps what it reads alive, even if the flight is evicted or dropped meanwhile.
    pub fn read(&self, flight: &Flight, range: Option<(u64, u64)>, projection: Option<Vec<usize>>) -> RowStream {
        let total: u64 = flight.parts.iter().map(|p| p.rows).sum();
        let (start, length) = range.unwrap_or((0, total));
        let end = start.saturating_add(length).min(total);
        let mut pieces = Vec::new();
        let mut at = 0u64;
        for part in flight.parts.iter() {
            let (first, last) = (at, at + part.rows);
            at = last;
            if part.rows == 0 || last <= start || first >= end {
                continue;
            }
            let offset = start.max(first) - first;
            let take = end.min(last) - first - offset;
            let whole = offset == 0 && take == part.rows;
            pieces.push((part.clone(), (!whole).then_some((offset, take))));
        }
        let store = self.clone();
        // A reader is foreground work: conversions wait until it is done (see the background module).
        let active = self.active();
        futures::stream::iter(pieces)
            .map(move |(part, range)| store.read_part(part, range, projection.clone()))
            .flatten()
            .map(move |batch| {
                let _reading = &active;
                batch
            })
            .boxed()
    }

    fn read_part(&self, part: Part, range: Option<(u64, u64)>, projection: Option<Vec<usize>>) -> RowStream {
        if let Some(memory) = part.memory {
            let batches = match range {
                None => memory.batches().to_vec(),
                Some((offset, length)) => slice_batches(memory.batches(), offset, length),
            };
            let batches: Vec<Result<RecordBatch>> = batches
                .into_iter()
                .map(|b| match &projection {
                    Some(columns) => b.project(columns).map_err(Error::from),
                    None => Ok(b),
                })
                .collect();
            // The segment's memory (and its reservation) lives as long as the stream.
            return futures::stream::iter(batches)
                .map(move |b| {
                    let _held = &memory;
                    b
                })
                .boxed();
        }
        let Some(file) = part.file else {
            return futures::stream::empty().boxed();
        };
        let store = self.clone();
        let mut reservation = self.budget().reservation();
        let path = file.path.clone();
        let format = file.format;
        spill::stream(file, path, format, range, projection)
            .map(move |batch| {
                // The previous batch is the reader's to keep now; this one is counted until the next arrives.
                reservation.free();
                if let Ok(b) = &batch {
                    store.reserve_transient(&mut reservation, batch_bytes(b));
                }
                batch
            })
            .boxed()
    }

    /// Every row of `flight` in memory. Segments on disk are read back under a reservation (made by dropping what
    /// is already on disk, or waiting for the background writer), and stay resident afterwards. RESOURCE_EXHAUSTED
    /// when the flight cannot fit.
    pub async fn load(&self, flight: &Flight) -> Result<Loaded> {
        let mut batches = Vec::new();
        let mut residents = Vec::new();
        for part in flight.parts.iter() {
            let memory = match (&part.memory, &part.file) {
                (Some(m), _) => Arc::clone(m),
                (None, Some(file)) => self.reload(part.segment, part.bytes, Arc::clone(file), flight).await?,
                (None, None) => continue,
            };
            batches.extend(memory.batches().iter().cloned());
            residents.push((part.segment, memory));
        }
        Ok(Loaded { batches, residents })
    }

    async fn reload(
        &self,
        segment: SegmentId,
        bytes: u64,
        file: Arc<spill::SegmentFile>,
        flight: &Flight,
    ) -> Result<Arc<Resident>> {
        let mut reservation = self.budget().reservation();
        if !self.reserve(&mut reservation, bytes as usize, usize::MAX).await {
            return Err(Error::ResourceExhausted(format!(
                "flight {} needs {} bytes in memory and the budget ({} bytes) cannot make room: the rest is pinned, \
                 being written or used by queries; unpin flights or raise --memory-limit",
                flight.id(),
                flight.meta.num_bytes,
                self.budget().limit()
            )));
        }
        let batches = tokio::task::spawn_blocking(move || spill::read_all(&file.path, file.format))
            .await
            .map_err(|e| Error::internal(format!("reload task failed: {e}")))??;
        let actual: usize = batches.iter().map(batch_bytes).sum();
        let reserved = reservation.size();
        if actual > reserved {
            self.reserve_transient(&mut reservation, actual - reserved);
        } else {
            reservation.shrink(reserved - actual);
        }
        let memory = Arc::new(Resident::new(batches, reservation));
        let mut st = self.state();
        if let Some(seg) = st.segments.get_mut(&segment)
            && seg.memory.is_none()
        {
            seg.memory = Some(Arc::clone(&memory));
            self.shared.counters.reloads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(memory)
    }
}
