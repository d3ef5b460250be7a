//! Where a flight's rows live: reserving memory under the budget (dropping what is already on disk, waiting for the
//! background writer), pinning, the `spill` action, and the disk limit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{FlightId, FlightStore, Reservation, Resident, State, retire};
use crate::error::{Error, Result};

/// Longest single wait for the background writer before looking again.
const WAIT_SLICE: Duration = Duration::from_millis(250);

impl FlightStore {
    /// Grows `reservation` by `bytes`: from free budget, else by dropping the memory of segments already on disk
    /// (least recently used first), else by waiting for the background writer to put more on disk. Returns false
    /// when none of that can help (what is resident is pinned, still being written by its uploader, or held by
    /// queries): the caller goes to disk or gives up. Never takes the budget past `ceiling` (at most its limit).
    pub(super) async fn reserve(&self, reservation: &mut Reservation, bytes: usize, ceiling: usize) -> bool {
        let ceiling = ceiling.min(self.budget().limit());
        if bytes > ceiling {
            return false;
        }
        let mut waiting = None;
        loop {
            let released = self.budget().released();
            tokio::pin!(released);
            // Registered before looking, so a release in between still wakes us.
            released.as_mut().enable();
            if reservation.try_grow_below(bytes, ceiling) {
                return true;
            }
            if self.evict(bytes, ceiling) && reservation.try_grow_below(bytes, ceiling) {
                return true;
            }
            if !self.writer_can_help() {
                return false;
            }
            if waiting.is_none() {
                self.shared.counters.waits.fetch_add(1, Ordering::Relaxed);
                waiting = Some(self.waiting());
            }
            // Err: the slice passed; look again.
            let _ = tokio::time::timeout(WAIT_SLICE, released).await;
        }
    }

    /// Memory a computation needs for a while (a sort's keys, a permutation), reserved like stored data: made room
    /// for, waited for, or refused with RESOURCE_EXHAUSTED.
    pub async fn scratch(&self, bytes: usize) -> Result<Reservation> {
        let mut reservation = self.budget().reservation();
        if self.reserve(&mut reservation, bytes, usize::MAX).await {
            return Ok(reservation);
        }
        Err(Error::ResourceExhausted(format!(
            "this computation needs {bytes} bytes of working memory and the budget ({} bytes) cannot make room; \
             raise --memory-limit, or use SQL (whose operators spill to disk)",
            self.budget().limit()
        )))
    }

    /// [`Self::scratch`] if the budget has the room now (free, or by dropping the memory of flights already on
    /// disk); never waits for the background writer.
    pub fn scratch_now(&self, bytes: usize) -> Option<Reservation> {
        let limit = self.budget().limit();
        let mut reservation = self.budget().reservation();
        let reserved = reservation.try_grow(bytes) || (self.evict(bytes, limit) && reservation.try_grow(bytes));
        reserved.then_some(reservation)
    }

    /// Bytes of the budget that dropping what is on disk would give back now: resident segments with a file, not
    /// pinned, and not held by a reader.
    pub(crate) fn freeable_bytes(&self) -> usize {
        let st = self.state();
        st.segments
            .values()
            .filter(|s| s.evictable() && s.memory.as_ref().is_some_and(|m| Arc::strong_count(m) == 1))
            .map(|s| s.bytes as usize)
            .sum()
    }

    /// Adds `bytes` to the budget outside a reservation if there is room, dropping the memory of segments already
    /// on disk to make it; never waits. For DataFusion's memory pool, which must answer at once.
    pub(crate) fn try_reserve_now(&self, bytes: usize) -> bool {
        let limit = self.budget().limit();
        self.budget().try_add(bytes) || (self.evict(bytes, limit) && self.budget().try_add(bytes))
    }

    /// [`FlightStore::try_reserve_now`], else, when the background writer can make room and this thread may block
    /// (a worker of a multi-threaded runtime, such as the compute runtime's), waits for it like [`Self::reserve`].
    /// For DataFusion's memory pool, whose `try_grow` must answer synchronously: without the wait a query fails
    /// with RESOURCE_EXHAUSTED whenever the flights it could displace are not on disk yet.
    pub(crate) fn reserve_blocking(&self, bytes: usize) -> bool {
        if self.try_reserve_now(bytes) {
            return true;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread || !self.writer_can_help() {
            return false;
        }
        let mut reservation = self.budget().reservation();
        let reserved =
            tokio::task::block_in_place(|| handle.block_on(self.reserve(&mut reservation, bytes, usize::MAX)));
        if reserved {
            reservation.detach();
        }
        reserved
    }

    /// Grows `reservation` by `bytes` for data a reader holds briefly (a batch read from disk): from free budget or
    /// by dropping what is on disk, and past the budget rather than stall a reader.
    pub(super) fn reserve_transient(&self, reservation: &mut Reservation, bytes: usize) {
        let limit = self.budget().limit();
        let reserved = reservation.try_grow(bytes) || (self.evict(bytes, limit) && reservation.try_grow(bytes));
        if !reserved {
            reservation.grow(bytes);
        }
    }

    /// Drops the memory of unpinned segments that have a file, least recently used flights first, until `bytes`
    /// more fit under `ceiling`. Returns whether it dropped anything.
    fn evict(&self, bytes: usize, ceiling: usize) -> bool {
        let mut dropped: Vec<Arc<Resident>> = Vec::new();
        {
            let mut st = self.state();
            let mut available = ceiling.saturating_sub(self.budget().used());
            let order: Vec<_> = st
                .flights
                .iter()
                .rev()
                .filter(|(_, e)| !e.pinned)
                .map(|(_, e)| Arc::clone(&e.segments))
                .collect();
            for segments in order {
                let mut any = false;
                for s in segments.iter() {
                    if let Some(seg) = st.segments.get_mut(s)
                        && seg.evictable()
                        && let Some(memory) = seg.memory.take()
                    {
                        if Arc::strong_count(&memory) == 1 {
                            available += memory.num_bytes() as usize;
                        }
                        dropped.push(memory);
                        any = true;
                    }
                }
                if any {
                    self.shared.counters.memory.fetch_add(1, Ordering::Relaxed);
                }
                if available >= bytes {
                    break;
                }
            }
        }
        // Released here, outside the lock.
        !dropped.is_empty()
    }

    /// Keeps a flight in memory (reloading what is on disk) until unpinned.
    pub async fn pin(&self, id: FlightId) -> Result<()> {
        let flight = self.get(id)?;
        let loaded = self.load(&flight).await?;
        let mut st = self.state();
        let State { flights, segments, .. } = &mut *st;
        let entry = flights.peek_mut(&id).ok_or_else(|| super::no_such_flight(id))?;
        for (segment, memory) in &loaded.residents {
            if let Some(seg) = segments.get_mut(segment)
                && seg.memory.is_none()
            {
                seg.memory = Some(Arc::clone(memory));
            }
        }
        if !entry.pinned {
            entry.pinned = true;
            for s in entry.segments.iter() {
                if let Some(seg) = segments.get_mut(s) {
                    seg.pins += 1;
                }
            }
        }
        Ok(())
    }

    /// Lets a pinned flight be spilled again.
    pub fn unpin(&self, id: FlightId) -> Result<()> {
        let mut st = self.state();
        let State { flights, segments, .. } = &mut *st;
        let entry = flights.peek_mut(&id).ok_or_else(|| super::no_such_flight(id))?;
        if entry.pinned {
            entry.pinned = false;
            for s in entry.segments.iter() {
                if let Some(seg) = segments.get_mut(s) {
                    seg.pins = seg.pins.saturating_sub(1);
                }
            }
        }
        Ok(())
    }

    /// Writes a flight's rows to disk (what is not there yet) and releases its memory now.
    pub async fn spill(&self, id: FlightId) -> Result<()> {
        if self.state().entry_mut(id)?.pinned {
            return Err(Error::invalid(format!("flight {id} is pinned; unpin it first")));
        }
        self.write_flight(id, false).await?;
        let mut dropped = Vec::new();
        {
            let mut st = self.state();
            let State { flights, segments, .. } = &mut *st;
            let entry = flights.peek(&id).ok_or_else(|| super::no_such_flight(id))?;
            for s in entry.segments.iter() {
                if let Some(seg) = segments.get_mut(s)
                    && seg.evictable()
                {
                    dropped.extend(seg.memory.take());
                }
            }
        }
        drop(dropped);
        self.shared.counters.forced.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives every segment of flight `id` a file, writing those that lack one (or waiting for the background writer
    /// when it is writing them). With `force`, the disk limit does not apply (shutdown keeps what was acknowledged).
    pub(super) async fn write_flight(&self, id: FlightId, force: bool) -> Result<()> {
        loop {
            let (todo, busy) = {
                let mut st = self.state();
                let segments = Arc::clone(&st.entry_mut(id)?.segments);
                let mut todo = Vec::new();
                let mut busy = false;
                for s in segments.iter() {
                    let Some(seg) = st.segments.get_mut(s) else { continue };
                    if seg.file.is_some() {
                        continue;
                    }
                    match (&seg.memory, seg.busy) {
                        (_, true) => busy = true,
                        (Some(memory), false) => {
                            seg.busy = true;
                            todo.push((*s, Arc::clone(&seg.schema), Arc::clone(memory)));
                        }
                        (None, false) => {}
                    }
                }
                (todo, busy)
            };
            if todo.is_empty() && !busy {
                return Ok(());
            }
            for (segment, schema, memory) in todo {
                let result = self.write_segment(segment, schema, memory, !force).await;
                if let Err(e) = result {
                    if let Some(seg) = self.state().segments.get_mut(&segment) {
                        seg.busy = false;
                    }
                    return Err(e);
                }
            }
            if busy {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Bytes on disk that count against the disk limit: segment files and DataFusion's spill files.
    fn disk_in_use(&self, st: &State) -> u64 {
        let external = self
            .shared
            .external_disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |usage| usage());
        st.disk_bytes + external
    }

    /// Checks that `bytes` more on disk fit the disk limit, dropping recomputable derived flights to make room.
    pub(super) async fn check_disk(&self, bytes: u64) -> Result<()> {
        let Some(limit) = self.shared.config.disk_limit else {
            return Ok(());
        };
        let (files, seq, shortfall) = {
            let mut st = self.state();
            let mut records = Vec::new();
            let mut files = Vec::new();
            while self.disk_in_use(&st) + bytes > limit {
                let victim = st
                    .flights
                    .iter()
                    .filter(|(id, e)| {
                        !e.pinned
                            && e.meta.lineage.op != "upload"
                            && st.names.names_of(**id).is_empty()
                            && e.meta.lineage.inputs.iter().all(|i| st.flights.contains(i))
                            && e.segments.iter().all(|s| {
                                st.segments
                                    .get(s)
                                    .is_some_and(|seg| seg.memory.is_none() && seg.file.is_some() && !seg.busy)
                            })
                    })
                    .map(|(id, _)| *id)
                    .min();
                let Some(id) = victim else { break };
                let removed = super::publish::remove_locked(&mut st, id)?;
                records.extend(removed.records);
                files.extend(removed.files);
                self.shared.counters.disk_limit_drops.fetch_add(1, Ordering::Relaxed);
            }
            let used = self.disk_in_use(&st);
            let shortfall = (used + bytes > limit).then_some(used);
            (files, self.journal(&st, records)?, shortfall)
        };
        self.synced(seq).await?;
        retire(files);
        match shortfall {
            None => Ok(()),
            Some(used) => Err(Error::ResourceExhausted(format!(
                "memory budget and disk limit both reached: {used} of {limit} disk bytes in use and {bytes} more \
                 needed; drop flights or raise --memory-limit / --disk-limit"
            ))),
        }
    }
}
