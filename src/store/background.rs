//! The background writer: write-behind of cold segments and conversion of durable upload logs to Parquet.
//!
//! One task, one job at a time (so at most one blocking thread encodes files, and request handling keeps the other
//! cores). Priority, highest first:
//!
//! 1. **Write-behind** — when the bytes that cannot be freed at once (budget in use minus resident segments that
//!    already have a file) pass the high-water mark, or a writer is waiting for room: write the segments of the least
//!    recently used unpinned flight that lack a file, superseded flights first, as Arrow IPC (the fast format). The
//!    segment keeps its memory; it is only dropped when room is needed.
//! 2. **Conversion** — once nothing has been uploaded, computed or read for [`IDLE_BEFORE_CONVERSION`]: re-encode a
//!    segment whose file is Arrow IPC (written behind, written because it was too large, or a durable upload's log)
//!    as Parquet, then retire the IPC file. A conversion stops as soon as an upload, a computation, a reader or a
//!    writer waiting for room shows up, and is tried again at the next idle moment.
//!
//! A write that fails (disk full, disk limit) leaves the segment resident and is not retried for a while, so one
//! flight never blocks the others.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use tokio::sync::Notify;

use super::catalog::Record;
use super::spill::{self, Format, SegmentFile};
use super::{FlightStore, Resident, SegmentId, Shared, State, persist, retire};
use crate::error::{Error, Result};

/// How long a segment whose write failed is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How often the writer looks for work without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long nothing must have been uploaded, computed or read before IPC files are converted to Parquet.
pub(super) const IDLE_BEFORE_CONVERSION: Duration = Duration::from_secs(1);

/// The background writer's shared flags.
#[derive(Debug, Default)]
pub(super) struct Background {
    /// Wakes the writer (a permit is stored if it is busy, so no request is lost).
    kick: Notify,
    /// Set by `close`: the writer stops after its current job.
    stop: AtomicBool,
    /// Uploads, computations and readers in progress: conversions wait until there are none.
    active: AtomicUsize,
    /// Writers waiting for room: write-behind runs even below the high-water mark.
    waiting: AtomicUsize,
    /// When the last upload or computation ended (or began).
    last_active: std::sync::Mutex<Option<Instant>>,
    /// The writer's task, joined by `close`.
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Counts an upload or computation in progress while alive.
#[derive(Debug)]
pub(super) struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.background.touch();
        if self.0.background.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.background.kick.notify_one();
        }
    }
}

impl Background {
    fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether nothing has been uploaded, computed or read for `quiet`, and nobody waits for room.
    fn idle_for(&self, quiet: Duration) -> bool {
        self.active.load(Ordering::Relaxed) == 0
            && self.waiting.load(Ordering::Relaxed) == 0
            && self
                .last_active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| t.elapsed() >= quiet)
    }

    /// Whether work that conversions must give way to has shown up.
    fn busy(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
            || self.waiting.load(Ordering::Relaxed) > 0
            || self.stop.load(Ordering::Relaxed)
    }
}

/// Counts a writer waiting for room while alive.
pub(super) struct WaitGuard<'a>(&'a Background);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a background job did not finish.
enum Interrupted {
    /// A conversion stopped for foreground work; it is tried again later.
    GaveWay,
    /// A real failure (disk full, I/O): the segment is left alone for a while.
    Failed(Error),
}

impl From<Error> for Interrupted {
    fn from(e: Error) -> Self {
        Interrupted::Failed(e)
    }
}

/// One unit of background work.
enum Job {
    /// Write a resident segment's file.
    Write(SegmentId, SchemaRef, Arc<Resident>),
    /// Re-encode an IPC segment file as Parquet.
    Convert(SegmentId, SchemaRef, Arc<SegmentFile>),
}

impl FlightStore {
    pub(super) fn start_background(&self) {
        let weak = Arc::downgrade(&self.shared);
        let task = tokio::spawn(run(weak));
        *self.shared.background.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the background writer and waits for its current job.
    pub(super) async fn stop_background(&self) {
        self.shared.background.stop.store(true, Ordering::Relaxed);
        self.shared.background.kick.notify_one();
        let task = self
            .shared
            .background
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            // Err: the task panicked or was cancelled; there is nothing left to wait for either way.
            let _ = task.await;
        }
    }

    /// Wakes the background writer.
    pub(super) fn kick_writer(&self) {
        self.shared.background.kick.notify_one();
    }

    /// Marks an upload, computation or reader in progress until the guard drops.
    pub(super) fn active(&self) -> ActiveGuard {
        self.shared.background.active.fetch_add(1, Ordering::Relaxed);
        self.shared.background.touch();
        ActiveGuard(Arc::clone(&self.shared))
    }

    /// Marks a writer waiting for room until the guard drops, and wakes the background writer.
    pub(super) fn waiting(&self) -> WaitGuard<'_> {
        self.shared.background.waiting.fetch_add(1, Ordering::Relaxed);
        self.kick_writer();
        WaitGuard(&self.shared.background)
    }

    /// Whether waiting can produce room: some published, unpinned segment is resident without a file and can be
    /// written (now or once a failed write may be retried), or is being written.
    pub(super) fn writer_can_help(&self) -> bool {
        let st = self.state();
        st.segments
            .values()
            .any(|s| s.unwritten() && s.pins == 0 && (s.busy || s.retry_after.is_none()))
    }

    /// The next job, marked busy; `None` when there is nothing to do.
    fn next_job(&self) -> Option<Job> {
        let mut st = self.state();
        let budget = &self.shared.budget;
        let clean: u64 = st.segments.values().filter(|s| s.evictable()).map(|s| s.bytes).sum();
        let pinned_down = (budget.used() as u64).saturating_sub(clean);
        let pressure =
            pinned_down > self.high_water_bytes() as u64 || self.shared.background.waiting.load(Ordering::Relaxed) > 0;
        let now = Instant::now();
        if pressure && let Some(id) = write_candidate(&st, now) {
            let seg = st.segments.get_mut(&id)?;
            seg.busy = true;
            let memory = Arc::clone(seg.memory.as_ref()?);
            return Some(Job::Write(id, Arc::clone(&seg.schema), memory));
        }
        if self.shared.background.idle_for(IDLE_BEFORE_CONVERSION) {
            let id = st
                .segments
                .iter()
                .find(|(_, s)| {
                    !s.busy
                        && s.retry_after.is_none_or(|t| t <= now)
                        && s.file.as_ref().is_some_and(|f| f.format == Format::Ipc)
                        && Format::at_rest(&s.schema) == Format::Parquet
                })
                .map(|(id, _)| *id)?;
            let seg = st.segments.get_mut(&id)?;
            seg.busy = true;
            let file = Arc::clone(seg.file.as_ref()?);
            return Some(Job::Convert(id, Arc::clone(&seg.schema), file));
        }
        None
    }

    async fn run_job(&self, job: Job) {
        let (id, result) = match job {
            Job::Write(id, schema, memory) => (
                id,
                self.write_segment(id, schema, memory, true)
                    .await
                    .map_err(Interrupted::Failed),
            ),
            Job::Convert(id, schema, file) => (id, self.convert_segment(id, schema, file).await),
        };
        match result {
            Ok(()) => {}
            Err(Interrupted::GaveWay) => {
                if let Some(seg) = self.state().segments.get_mut(&id) {
                    seg.busy = false;
                }
            }
            Err(Interrupted::Failed(e)) => {
                tracing::warn!(segment = %id, error = %e, "background write failed; will retry later");
                let mut st = self.state();
                if let Some(seg) = st.segments.get_mut(&id) {
                    seg.busy = false;
                    seg.retry_after = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
    }

    /// Writes a resident segment's file and records it (the segment stays resident). With `limit`, the disk limit
    /// applies.
    pub(super) async fn write_segment(
        &self,
        id: SegmentId,
        schema: SchemaRef,
        memory: Arc<Resident>,
        limit: bool,
    ) -> Result<()> {
        if limit {
            self.check_disk(memory.num_bytes()).await?;
        }
        let dir = self.shared.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || spill::write_all(&dir, schema, Format::Ipc, memory.batches()))
            .await
            .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
        self.shared.counters.spills.fetch_add(1, Ordering::Relaxed);
        self.install_file(id, Arc::new(file), false).await
    }

    /// Re-encodes an IPC segment file as Parquet, batch by batch, giving way to any foreground work.
    async fn convert_segment(
        &self,
        id: SegmentId,
        schema: SchemaRef,
        file: Arc<SegmentFile>,
    ) -> std::result::Result<(), Interrupted> {
        self.check_disk(file.bytes).await?;
        let dir = self.shared.spill_dir.clone();
        let source = Arc::clone(&file);
        let shared = Arc::clone(&self.shared);
        let parquet = tokio::task::spawn_blocking(move || -> std::result::Result<SegmentFile, Interrupted> {
            let mut w = spill::SpillWriter::create(&dir, schema, Format::Parquet)?;
            for batch in spill::reader(&source.path, source.format, None, None)? {
                if shared.background.busy() {
                    // Dropping the writer deletes its temp file.
                    return Err(Interrupted::GaveWay);
                }
                w.write(&batch?)?;
            }
            Ok(w.finish()?)
        })
        .await
        .map_err(|e| Error::internal(format!("conversion task failed: {e}")))??;
        self.shared.counters.conversions.fetch_add(1, Ordering::Relaxed);
        Ok(self.install_file(id, Arc::new(parquet), true).await?)
    }

    /// Gives segment `id` its (new) file, records it, and records every flight now wholly on disk. The replaced
    /// file, if any, is retired once the record is on disk. A segment dropped meanwhile leaves an orphan, retired.
    pub(super) async fn install_file(&self, id: SegmentId, file: Arc<SegmentFile>, replace: bool) -> Result<()> {
        let (seq, old) = {
            let mut st = self.state();
            let Some(seg) = st.segments.get_mut(&id) else {
                retire([file]);
                return Ok(());
            };
            seg.busy = false;
            seg.retry_after = None;
            if seg.file.is_some() && !replace {
                retire([file]);
                return Ok(());
            }
            let old = seg.file.replace(Arc::clone(&file));
            let record = Record::Segment(persist::segment_record(id, seg)?);
            st.disk_bytes += file.bytes;
            if let Some(old) = &old {
                st.disk_bytes = st.disk_bytes.saturating_sub(old.bytes);
            }
            let mut records = vec![record];
            records.extend(newly_on_disk(&mut st)?);
            (self.journal(&st, records)?, old)
        };
        self.synced(seq).await?;
        retire(old);
        // Writers waiting for room can now drop this segment's memory.
        self.shared.budget.wake_waiters();
        Ok(())
    }
}

/// The flights that just became wholly on disk: marked persisted, with their catalog records.
pub(super) fn newly_on_disk(st: &mut State) -> Result<Vec<Record>> {
    let ready: Vec<_> = st
        .flights
        .iter()
        .filter(|(_, e)| !e.persisted && st.on_disk(&e.segments))
        .map(|(id, _)| *id)
        .collect();
    let mut records = Vec::with_capacity(ready.len());
    for id in ready {
        if let Some(e) = st.flights.peek_mut(&id) {
            e.persisted = true;
            records.push(Record::Flight(persist::flight_record(e)?));
        }
    }
    Ok(records)
}

/// The segment the writer should write next: of the least recently used unpinned flights, superseded ones first,
/// the first segment that is resident without a file.
fn write_candidate(st: &State, now: Instant) -> Option<SegmentId> {
    let writable = |id: &SegmentId| {
        st.segments
            .get(id)
            .is_some_and(|s| s.unwritten() && !s.busy && s.pins == 0 && s.retry_after.is_none_or(|t| t <= now))
    };
    let mut fallback = None;
    for (_, e) in st.flights.iter().rev() {
        if e.pinned {
            continue;
        }
        if let Some(seg) = e.segments.iter().find(|s| writable(s)) {
            if e.superseded {
                return Some(*seg);
            }
            fallback.get_or_insert(*seg);
        }
    }
    fallback
}

async fn run(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let store = FlightStore { shared };
        if store.shared.background.stop.load(Ordering::Relaxed) {
            return;
        }
        match store.next_job() {
            Some(job) => store.run_job(job).await,
            None => {
                // Err: the poll interval passed without a kick; look again anyway.
                let _ = tokio::time::timeout(IDLE_POLL, store.shared.background.kick.notified()).await;
            }
        }
    }
}
