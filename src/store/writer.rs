//! [`FlightWriter`]: a flight being written (an upload or a computed result) until it is published.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::store::spill::{SpillFile, SpillWriter};
use crate::store::{FlightStore, Reservation, Segment, batch_bytes, compact_if_wasteful};

/// Batches of a flight that is still arriving; nothing is visible until it is published.
///
/// Batches are kept in memory while the budget has room (spilling colder flights to make room); when even that
/// fails, the writer switches to a spill file and streams the rest to disk. Dropping a writer (a failed or
/// abandoned upload) releases its memory and deletes its temp file.
#[derive(Debug)]
pub struct FlightWriter {
    pub(super) store: FlightStore,
    pub(super) schema: SchemaRef,
    pub(super) batches: Vec<RecordBatch>,
    pub(super) reservation: Reservation,
    /// Copy batches that are small views of large buffers (derived results), so a result never keeps more
    /// memory alive than it accounts for.
    pub(super) compact: bool,
    pub(super) disk: Option<SpillWriter>,
    pub(super) disk_rows: u64,
    pub(super) disk_bytes: u64,
}

/// A finished writer, ready to publish.
#[derive(Debug)]
pub struct PendingFlight {
    pub(super) schema: SchemaRef,
    pub(super) segment: Option<Segment>,
    pub(super) file: Option<SpillFile>,
    pub(super) num_rows: u64,
    pub(super) num_bytes: u64,
}

impl Drop for FlightWriter {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.take() {
            disk.abort();
        }
    }
}

impl FlightWriter {
    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds one batch, accounting its bytes and making room (or going to disk) when the budget is full.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = if batch.schema().fields() == self.schema.fields() {
            batch
        } else {
            // Same column types under a differently annotated schema (nullability, metadata) are fine; anything
            // else is a schema change.
            RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec()).map_err(|_| {
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
        if self.disk.is_none() && !self.reservation.try_grow(bytes) {
            self.store.make_room(bytes).await?;
            if !self.reservation.try_grow(bytes) {
                self.switch_to_disk().await?;
            }
        }
        if self.disk.is_some() {
            self.store.check_disk(self.disk_bytes + bytes as u64).await?;
            self.disk_rows += batch.num_rows() as u64;
            self.disk_bytes += bytes as u64;
            let mut disk = self
                .disk
                .take()
                .ok_or_else(|| Error::internal("spill writer missing"))?;
            let disk = tokio::task::spawn_blocking(move || disk.write(&batch).map(|()| disk))
                .await
                .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
            self.disk = Some(disk);
        } else {
            self.batches.push(batch);
        }
        Ok(())
    }

    /// Moves what was buffered to a new spill file and releases its memory.
    async fn switch_to_disk(&mut self) -> Result<()> {
        let dir = self.store.shared.spill_dir.clone();
        let schema = Arc::clone(&self.schema);
        let batches = std::mem::take(&mut self.batches);
        self.disk_rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        self.disk_bytes = self.reservation.size() as u64;
        self.store.check_disk(self.disk_bytes).await?;
        let writer = tokio::task::spawn_blocking(move || -> Result<SpillWriter> {
            let mut w = SpillWriter::create(&dir, schema)?;
            for b in &batches {
                w.write(b)?;
            }
            Ok(w)
        })
        .await
        .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
        self.disk = Some(writer);
        self.reservation.free();
        self.store.shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rows pushed so far.
    pub fn num_rows(&self) -> u64 {
        self.disk_rows + self.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    }

    /// Closes the writer; with `durable`, a resident flight is also written to disk before it can be published.
    pub async fn finish(mut self, durable: bool) -> Result<PendingFlight> {
        let schema = Arc::clone(&self.schema);
        if let Some(disk) = self.disk.take() {
            let file = tokio::task::spawn_blocking(move || disk.finish())
                .await
                .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
            self.store.shared.counters.spills.fetch_add(1, Ordering::Relaxed);
            return Ok(PendingFlight {
                schema,
                segment: None,
                file: Some(file),
                num_rows: self.disk_rows,
                num_bytes: self.disk_bytes,
            });
        }
        let batches = std::mem::take(&mut self.batches);
        let reservation = std::mem::replace(&mut self.reservation, self.store.budget().reservation());
        let segment = Segment::new(batches, reservation);
        let file = if durable && !self.store.shared.config.ephemeral {
            Some(
                self.store
                    .write_file(Arc::clone(&schema), segment.batches().to_vec())
                    .await?,
            )
        } else {
            None
        };
        Ok(PendingFlight {
            schema,
            num_rows: segment.num_rows(),
            num_bytes: segment.num_bytes(),
            segment: Some(segment),
            file,
        })
    }
}
