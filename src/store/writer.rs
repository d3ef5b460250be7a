//! [`FlightWriter`]: a flight being written (an upload or a computed result) until it is published.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::background::ActiveGuard;
use super::log::UploadLog;
use super::spill::{Format, SegmentFile, SpillWriter};
use super::{FlightStore, Reservation, Resident, batch_bytes, compact_if_wasteful};
use crate::error::{Error, Result};

/// The rows of a flight that is still arriving, as one new segment; nothing is visible until it is published.
///
/// Batches are kept in memory while the budget can make room for them (see [`FlightStore::reserve`]). When it
/// cannot, an upload with a log (durable) simply stops keeping them in memory — the log has them — and any other
/// writer moves what it holds to a new segment file (Arrow IPC, converted to Parquet later) and streams the rest
/// there. Dropping a writer (a failed or
/// abandoned upload) releases its memory and deletes its files.
#[derive(Debug)]
pub struct FlightWriter {
    store: FlightStore,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    reservation: Reservation,
    /// Copy batches that are small views of large buffers (derived results), so a result never keeps more memory
    /// alive than it accounts for.
    compact: bool,
    rows: u64,
    bytes: u64,
    disk: Option<SpillWriter>,
    log: Option<UploadLog>,
    /// With a log: the in-memory copy was given up for lack of room.
    memory_dropped: bool,
    /// How far this writer may fill the budget: all of it for uploads; up to the high-water mark for computed
    /// results, so the query computing them keeps memory for its own operators.
    ceiling: usize,
    _active: ActiveGuard,
}

/// A finished writer, ready to publish.
#[derive(Debug)]
pub struct PendingFlight {
    pub(super) schema: SchemaRef,
    pub(super) memory: Option<Resident>,
    pub(super) file: Option<SegmentFile>,
    pub(super) num_rows: u64,
    pub(super) num_bytes: u64,
}

impl FlightStore {
    /// Starts an upload with `schema`; batches are pushed as they arrive and nothing is visible until publish.
    pub fn writer(&self, schema: SchemaRef) -> FlightWriter {
        FlightWriter {
            store: self.clone(),
            schema,
            batches: Vec::new(),
            reservation: self.shared.budget.reservation(),
            compact: false,
            rows: 0,
            bytes: 0,
            disk: None,
            log: None,
            memory_dropped: false,
            ceiling: usize::MAX,
            _active: self.active(),
        }
    }

    /// Starts a computed flight; batches that are small views of larger buffers are copied on push.
    pub fn derived_writer(&self, schema: SchemaRef) -> FlightWriter {
        let mut writer = self.writer(schema);
        writer.compact = true;
        writer
    }

    /// Starts the log of a durable upload (see [`UploadLog`]); give it to the upload's writer with
    /// [`FlightWriter::with_log`]. `None` unless the store is durable.
    pub fn upload_log(&self) -> Result<Option<UploadLog>> {
        if !self.shared.config.durable || self.shared.config.ephemeral {
            return Ok(None);
        }
        UploadLog::create(&self.shared.spill_dir).map(Some)
    }
}

impl FlightWriter {
    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Keeps this writer's share of the budget under the high-water mark, so the query computing its rows keeps
    /// room for its own operators (sorts, joins) instead of failing for memory the result took.
    pub fn leave_room_for_queries(mut self) -> Self {
        self.ceiling = self.store.high_water_bytes();
        self
    }

    /// Makes `log` (which holds every message of this upload) the new segment's file.
    pub fn with_log(mut self, log: Option<UploadLog>) -> Self {
        self.log = log;
        self
    }

    /// Adds one batch, counting its bytes against the budget, making room (or going to disk) when it is full.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = if batch.schema().fields() == self.schema.fields() {
            batch
        } else {
            // Same column types under a differently annotated schema (nullability, metadata) are fine; anything
            // else is a schema change.
            RecordBatch::try_new_with_options(
                Arc::clone(&self.schema),
                batch.columns().to_vec(),
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|_| {
                Error::invalid(
                    "schema changed in the middle of the stream; every batch of a flight must have the same schema",
                )
            })?
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if self.compact {
            compact_if_wasteful(batch)?
        } else {
            batch
        };
        let bytes = batch_bytes(&batch);
        self.rows += batch.num_rows() as u64;
        self.bytes += bytes as u64;
        if let Some(log) = &self.log {
            self.store.check_disk(log.bytes()).await?;
        }
        if self.disk.is_none() && !self.memory_dropped {
            if self.store.reserve(&mut self.reservation, bytes, self.ceiling).await {
                self.batches.push(batch);
                return Ok(());
            }
            self.store.shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
            if self.log.is_some() {
                self.memory_dropped = true;
                self.batches.clear();
                self.reservation.free();
                return Ok(());
            }
            self.switch_to_disk().await?;
        }
        if let Some(mut disk) = self.disk.take() {
            self.store.check_disk(self.bytes).await?;
            let disk = tokio::task::spawn_blocking(move || disk.write(&batch).map(|()| disk))
                .await
                .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
            self.disk = Some(disk);
        }
        Ok(())
    }

    /// Moves what was buffered to a new segment file and releases its memory.
    async fn switch_to_disk(&mut self) -> Result<()> {
        let dir = self.store.shared.spill_dir.clone();
        let schema = Arc::clone(&self.schema);
        let batches = std::mem::take(&mut self.batches);
        self.store.check_disk(self.bytes).await?;
        let writer = tokio::task::spawn_blocking(move || -> Result<SpillWriter> {
            let mut w = SpillWriter::create(&dir, schema, Format::Ipc)?;
            for b in &batches {
                w.write(b)?;
            }
            Ok(w)
        })
        .await
        .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
        self.disk = Some(writer);
        self.reservation.free();
        Ok(())
    }

    /// Rows pushed so far.
    pub fn num_rows(&self) -> u64 {
        self.rows
    }

    /// Closes the writer: the new segment's file (if it went to disk, or has a log) is complete and fsynced.
    pub async fn finish(mut self) -> Result<PendingFlight> {
        let went_to_disk = self.disk.is_some();
        let file = match (self.disk.take(), self.log.take()) {
            (Some(disk), _) => {
                let file = tokio::task::spawn_blocking(move || disk.finish())
                    .await
                    .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
                self.store.shared.counters.spills.fetch_add(1, Ordering::Relaxed);
                Some(file)
            }
            (None, Some(log)) => Some(log.finish().await?),
            (None, None) => None,
        };
        let memory = (!went_to_disk && !self.memory_dropped).then(|| {
            let batches = std::mem::take(&mut self.batches);
            let reservation = std::mem::replace(&mut self.reservation, self.store.budget().reservation());
            Resident::new(batches, reservation)
        });
        let (memory, file) = if self.rows == 0 {
            // No rows: the flight has no segment; a log holding only the schema is not kept.
            if let Some(f) = file {
                f.retire();
            }
            (None, None)
        } else {
            (memory, file)
        };
        Ok(PendingFlight {
            schema: Arc::clone(&self.schema),
            memory,
            file,
            num_rows: self.rows,
            num_bytes: self.bytes,
        })
    }
}
