//! Where a flight's data lives: pinning, spilling the least recently used flights to Parquet when a batch does not
//! fit the memory budget, and the disk limit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::spill::{self, SpillFile};
use super::{FlightData, FlightId, FlightStore, Segment, State, batch_bytes, delete_files};
use crate::error::{Error, Result};

impl FlightStore {
    /// Keeps a flight in memory (reloading it if spilled) until unpinned.
    pub async fn pin(&self, id: FlightId) -> Result<()> {
        let flight = self.get(id)?;
        if let FlightData::Spilled(file) = &flight.data {
            self.make_room(flight.meta.num_bytes as usize).await?;
            let path = file.path.clone();
            let batches = tokio::task::spawn_blocking(move || spill::read_all(&path))
                .await
                .map_err(|e| Error::internal(format!("reload task failed: {e}")))??;
            let mut reservation = self.budget().reservation();
            if !reservation.try_grow(batches.iter().map(batch_bytes).sum()) {
                return Err(Error::ResourceExhausted(format!(
                    "flight {id} ({} bytes) does not fit in the memory budget next to the pinned flights",
                    flight.meta.num_bytes
                )));
            }
            let mut st = self.state();
            let entry = st.entry_mut(id)?;
            if entry.memory.is_none() {
                entry.memory = Some(Arc::from(vec![Arc::new(Segment::new(batches, reservation))]));
                self.shared.counters.reloads.fetch_add(1, Ordering::Relaxed);
            }
            entry.pinned = true;
            return Ok(());
        }
        let mut st = self.state();
        let entry = st.entry_mut(id)?;
        entry.pinned = true;
        Ok(())
    }

    /// Lets a pinned flight be spilled again.
    pub fn unpin(&self, id: FlightId) -> Result<()> {
        let mut st = self.state();
        let entry = st.entry_mut(id)?;
        entry.pinned = false;
        Ok(())
    }

    /// Writes a flight to disk and releases its memory now.
    pub async fn spill(&self, id: FlightId) -> Result<()> {
        {
            let mut st = self.state();
            let entry = st.entry_mut(id)?;
            if entry.pinned {
                return Err(Error::invalid(format!("flight {id} is pinned; unpin it first")));
            }
            if entry.memory.is_none() || entry.spilling {
                return Ok(());
            }
            entry.spilling = true;
        }
        self.shared.counters.forced.fetch_add(1, Ordering::Relaxed);
        self.spill_entry(id, true).await
    }

    /// Spills least-recently-used unpinned flights until `needed` bytes are free or none is left to spill.
    pub(super) async fn make_room(&self, needed: usize) -> Result<()> {
        while self.budget().available() < needed {
            let victim = {
                let mut st = self.state();
                let id = st
                    .flights
                    .iter()
                    .rev()
                    .find(|(_, e)| e.memory.is_some() && !e.pinned && !e.spilling)
                    .map(|(id, _)| *id);
                if let Some(id) = id
                    && let Some(e) = st.flights.peek_mut(&id)
                {
                    e.spilling = true;
                }
                id
            };
            let Some(id) = victim else { return Ok(()) };
            self.shared.counters.memory.fetch_add(1, Ordering::Relaxed);
            self.spill_entry(id, true).await?;
        }
        Ok(())
    }

    /// Writes the file of a flight marked `spilling` (unless it has one) and, with `release`, drops its memory.
    pub(super) async fn spill_entry(&self, id: FlightId, release: bool) -> Result<()> {
        let (schema, memory, has_file) = {
            let st = self.state();
            match st.flights.peek(&id) {
                Some(e) => (Arc::clone(&e.meta.schema), e.memory.clone(), e.file.is_some()),
                None => return Ok(()),
            }
        };
        let clear_flag = |store: &FlightStore| {
            if let Some(e) = store.state().flights.peek_mut(&id) {
                e.spilling = false;
            }
        };
        let file = match (has_file, memory) {
            (false, Some(segments)) => {
                let batches: Vec<RecordBatch> = segments.iter().flat_map(|s| s.batches().iter().cloned()).collect();
                match self.write_file(schema, batches).await {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        clear_flag(self);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let orphan = {
            let mut st = self.state();
            let State {
                flights, disk_bytes, ..
            } = &mut *st;
            match flights.peek_mut(&id) {
                Some(e) => {
                    if let Some(f) = &file {
                        *disk_bytes += f.bytes;
                        e.file = Some(Arc::clone(f));
                    }
                    if release && !e.pinned {
                        e.memory = None;
                    }
                    e.spilling = false;
                    None
                }
                // Dropped while we wrote: the file belongs to nobody.
                None => file,
            }
        };
        match orphan {
            Some(f) => delete_files([Some(f)]),
            None => self.persist_catalog().await?,
        }
        Ok(())
    }

    /// Checks that `bytes` more on disk fit the disk limit, dropping recomputable derived flights to make room.
    pub(super) async fn check_disk(&self, bytes: u64) -> Result<()> {
        let Some(limit) = self.shared.config.disk_limit else {
            return Ok(());
        };
        let (files, shortfall) = self.free_disk(bytes, limit);
        if !files.is_empty() {
            self.persist_catalog().await?;
            delete_files(files);
        }
        match shortfall {
            None => Ok(()),
            Some(used) => Err(Error::ResourceExhausted(format!(
                "memory budget and disk limit both reached: {used} of {limit} disk bytes in use and {bytes} more \
                 needed; drop flights or raise --memory-limit / --disk-limit"
            ))),
        }
    }

    /// Drops spilled, unnamed, unpinned derived flights whose inputs exist (oldest first) until `bytes` more fit
    /// under `limit`. Returns their files and, if that was not enough, the bytes in use.
    pub(super) fn free_disk(&self, bytes: u64, limit: u64) -> (Vec<Option<Arc<SpillFile>>>, Option<u64>) {
        let mut st = self.state();
        let mut files = Vec::new();
        while st.disk_bytes + bytes > limit {
            let victim = st
                .flights
                .iter()
                .filter(|(id, e)| {
                    e.memory.is_none()
                        && e.file.is_some()
                        && !e.pinned
                        && !e.spilling
                        && e.meta.lineage.op != "upload"
                        && st.names.names_of(**id).is_empty()
                        && e.meta.lineage.inputs.iter().all(|i| st.flights.contains(i))
                })
                .map(|(id, _)| *id)
                .min();
            let Some(id) = victim else { break };
            if let Some(e) = st.flights.pop(&id) {
                if let Some(f) = &e.file {
                    st.disk_bytes = st.disk_bytes.saturating_sub(f.bytes);
                }
                files.push(e.file);
                self.shared.counters.disk_limit_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        let shortfall = (st.disk_bytes + bytes > limit).then_some(st.disk_bytes);
        (files, shortfall)
    }

    /// Writes `batches` to a new spill file (checking the disk limit first).
    pub(super) async fn write_file(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<SpillFile> {
        let estimate: u64 = batches.iter().map(|b| batch_bytes(b) as u64).sum();
        self.check_disk(estimate).await?;
        let dir = self.shared.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || spill::write_all(&dir, schema, &batches))
            .await
            .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
        self.shared.counters.spills.fetch_add(1, Ordering::Relaxed);
        Ok(file)
    }
}
