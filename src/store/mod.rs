//! The store: flight ids, names and namespaces, segments, residency under the memory budget, and the catalog on
//! disk. No tonic, no SQL.
//!
//! [`FlightStore`] is a cheap-clone handle over shared state. Every state transition of a flight (publish, drop,
//! rename, write-behind, eviction, reload, pin) happens here, under one lock, so readers never see a half-made
//! flight or a name pointing nowhere.
//!
//! # Model
//!
//! A flight is an ordered list of **segments** (rows that arrived or were computed together). A segment is in
//! memory, in a file, or both; an `append` makes a new flight of its parent's segments plus one new segment, so
//! neither memory nor files are ever copied for it. Readers take a [`Flight`] handle, which keeps what it points at
//! alive, and stream it with [`FlightStore::read`] (memory or disk, whole or a row range, projected); nothing
//! outside the store knows where rows live.
//!
//! # Memory: write-behind
//!
//! Resident bytes are counted against the [`MemoryBudget`]. A background writer ([`background`]) keeps cold data on
//! disk ahead of need: once what could not be freed instantly passes the high-water mark (`--spill-high-water`,
//! 80 % of the budget by default), it writes segments of the least recently used unpinned flights to files —
//! superseded flights (ones that lost their last name, like the old flight of a `replace`) first. Making room is
//! then only dropping the memory of segments that already have a file. A writer that needs memory waits for the
//! background writer only when nothing written is left to drop (back-pressure), never past the budget, and goes
//! to disk itself when waiting cannot help (a flight larger than what can be freed).
//!
//! # Durability
//!
//! The catalog ([`catalog`]) is a snapshot plus an append-only journal with group commit, so each change costs one
//! short line whatever the number of flights. With `--durable`, an upload's IPC messages are logged as they arrive
//! ([`log`]), fsynced once before the answer, and the log is the segment's file until the background writer has
//! converted it to Parquet. Recovery ([`persist`]) keeps every flight the catalog lists, deletes files it does not
//! (torn uploads, unfinished writes), and never lists a half flight.

mod background;
mod budget;
mod catalog;
mod flight;
mod id;
mod log;
mod name;
mod persist;
mod publish;
mod read;
mod residency;
mod spill;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::datatypes::SchemaRef;
use lru::LruCache;
use serde::{Deserialize, Serialize};

pub use budget::{MemoryBudget, Reservation};
pub use flight::{Flight, FlightMeta, Lineage, Resident, batch_bytes, compact_if_wasteful, slice_batches};
pub use id::{FlightId, SegmentId};
pub use log::UploadLog;
pub use name::{DEFAULT_NAMESPACE, MAX_NAME_LEN, NameTable, QualifiedName, validate_identifier};
pub use read::{Loaded, RowStream};
pub use spill::{Format, parquet_holds};
pub use writer::{FlightWriter, PendingFlight};

use crate::error::{Error, Result};
use catalog::{Journal, Record};
use flight::Part;
use spill::SegmentFile;

/// What an upload does when its name already exists.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PutMode {
    /// Refuse with ALREADY_EXISTS.
    Error,
    /// Move the name to the new flight; the old flight stays reachable by id.
    Replace,
    /// Make a new flight holding the old rows followed by the new ones (same schema required; no copy).
    Append,
}

impl PutMode {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PutMode::Error => "error",
            PutMode::Replace => "replace",
            PutMode::Append => "append",
        }
    }
}

/// A reference to a flight as a client gives it: an id or a (namespace-qualified) name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FlightRef {
    /// Flight id.
    Id(FlightId),
    /// A name, resolved to an id when the request arrives.
    Name(QualifiedName),
}

impl std::fmt::Display for FlightRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlightRef::Id(id) => write!(f, "flight {id}"),
            FlightRef::Name(name) => write!(f, "name {name}"),
        }
    }
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Bytes of flight data kept in memory.
    pub memory_limit: usize,
    /// Share of `memory_limit` (0–1) that data not yet on disk may occupy before the background writer starts.
    pub high_water: f64,
    /// Where segment files and the catalog live.
    pub data_dir: PathBuf,
    /// Bytes of files allowed on disk (`None`: unlimited).
    pub disk_limit: Option<u64>,
    /// Acknowledge uploads only once they are on disk.
    pub durable: bool,
    /// Keep nothing across restarts: no catalog, files removed at exit.
    pub ephemeral: bool,
}

impl StoreConfig {
    /// Memory-only defaults for tests and embedding: `memory_limit` bytes, an ephemeral store in `data_dir`.
    pub fn ephemeral(memory_limit: usize, data_dir: PathBuf) -> Self {
        Self {
            memory_limit,
            high_water: DEFAULT_HIGH_WATER,
            data_dir,
            disk_limit: None,
            durable: false,
            ephemeral: true,
        }
    }
}

/// The default `high_water`.
pub const DEFAULT_HIGH_WATER: f64 = 0.8;

/// Counters reported by the `stats` action.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStats {
    /// Flights that exist.
    pub flights: usize,
    /// Flights whose every row is in memory.
    pub flights_in_memory: usize,
    /// Flights with rows only on disk.
    pub flights_spilled: usize,
    /// Pinned flights.
    pub flights_pinned: usize,
    /// Segments (shared by appended flights).
    pub segments: usize,
    /// Names in all namespaces.
    pub names: usize,
    /// Namespaces, including `default`.
    pub namespaces: usize,
    /// Bytes counted against the budget: resident segments, uploads and results being written, reads and queries.
    pub resident_bytes: usize,
    /// Bytes of resident segments that have no file yet (what the background writer works on).
    pub unwritten_bytes: u64,
    /// Highest resident bytes seen.
    pub peak_resident_bytes: usize,
    /// The memory budget.
    pub memory_limit: usize,
    /// Resident bytes above which the background writer starts.
    pub high_water_bytes: usize,
    /// Bytes of segment files on disk.
    pub spilled_bytes: u64,
    /// The disk limit, if any.
    pub disk_limit: Option<u64>,
    /// Segment files written (for any reason).
    pub spills: u64,
    /// Durable upload logs converted to Parquet.
    pub conversions: u64,
    /// Spilled segments brought back into memory.
    pub reloads: u64,
    /// Times a writer waited for the background writer (back-pressure).
    pub writer_waits: u64,
    /// Flights moved out of memory, by reason.
    pub evictions: Evictions,
    /// The id the next flight will get.
    pub next_id: u64,
}

/// Eviction counters by reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evictions {
    /// To make room under the memory budget.
    pub memory: u64,
    /// By the `spill` action.
    pub forced: u64,
    /// Written straight to disk because they could not fit in memory at all.
    pub too_large: u64,
    /// Derived flights deleted to stay under the disk limit (recomputable from their inputs).
    pub disk_limit_drops: u64,
}

#[derive(Debug, Default)]
struct Counters {
    spills: AtomicU64,
    conversions: AtomicU64,
    reloads: AtomicU64,
    waits: AtomicU64,
    memory: AtomicU64,
    forced: AtomicU64,
    too_large: AtomicU64,
    disk_limit_drops: AtomicU64,
}

/// Bytes of files outside the store that count against the disk limit (DataFusion's spill files).
pub type DiskUsage = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Handle to the flight store; clones share the same state.
#[derive(Clone, Debug)]
pub struct FlightStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// One lock for the flights (in LRU order), the segments, the names and the disk total: a publish moves a name
    /// and inserts a flight atomically, and eviction must see the same LRU order that lookups update. Critical
    /// sections are map operations (and queuing journal lines, so the journal's order is the state's order); file
    /// I/O and `.await` happen outside it.
    state: Mutex<State>,
    budget: MemoryBudget,
    config: StoreConfig,
    /// Where segment files go (`<data-dir>/flights`, or a per-run directory when ephemeral).
    spill_dir: PathBuf,
    /// The catalog journal; `None` when ephemeral.
    journal: Option<Journal>,
    counters: Counters,
    background: background::Background,
    /// DataFusion's spill files, counted against the disk limit with the store's own.
    external_disk: Mutex<Option<DiskUsage>>,
    /// Held for the life of the store: no second server may use the same data directory.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("spill_dir", &self.spill_dir)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    /// Every flight by id, in least-recently-used order (unbounded: the budget, not a count, limits it).
    flights: LruCache<FlightId, Entry>,
    /// Every segment some flight holds.
    segments: HashMap<SegmentId, SegmentEntry>,
    names: NameTable,
    next_id: u64,
    /// Ids below this are reserved in the catalog; reaching it means a new block must be recorded.
    reserved_id: u64,
    /// Bytes of all segment files.
    disk_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    meta: Arc<FlightMeta>,
    segments: Arc<[SegmentId]>,
    pinned: bool,
    /// The catalog lists this flight (every segment has a file and its record was written).
    persisted: bool,
    /// It lost its last name (e.g. the old flight of a `replace`): written out before other flights.
    superseded: bool,
}

#[derive(Debug)]
struct SegmentEntry {
    schema: SchemaRef,
    rows: u64,
    /// In-memory size of the rows.
    bytes: u64,
    memory: Option<Arc<Resident>>,
    file: Option<Arc<SegmentFile>>,
    /// Flights that contain this segment.
    owners: u32,
    /// Pinned flights that contain it: its memory stays.
    pins: u32,
    /// The background writer is writing or converting its file.
    busy: bool,
    /// Writing failed (disk full): not tried again before this.
    retry_after: Option<std::time::Instant>,
}

impl SegmentEntry {
    fn part(&self, id: SegmentId) -> Part {
        Part {
            segment: id,
            rows: self.rows,
            bytes: self.bytes,
            memory: self.memory.clone(),
            file: self.file.clone(),
        }
    }

    /// Resident and without a file: what the background writer works on.
    fn unwritten(&self) -> bool {
        self.memory.is_some() && self.file.is_none()
    }

    /// Resident with a file and not pinned: its memory can be dropped at once.
    fn evictable(&self) -> bool {
        self.memory.is_some() && self.file.is_some() && self.pins == 0
    }
}

impl State {
    /// A reader's handle on flight `id`.
    fn flight(&self, id: FlightId, entry: &Entry) -> Flight {
        let parts: Vec<Part> = entry
            .segments
            .iter()
            .filter_map(|s| match self.segments.get(s) {
                Some(seg) => Some(seg.part(*s)),
                None => {
                    tracing::error!(flight = %id, segment = %s, "flight refers to a missing segment");
                    None
                }
            })
            .collect();
        Flight {
            meta: Arc::clone(&entry.meta),
            parts: Arc::from(parts),
        }
    }

    /// The entry of flight `id`, without marking it used; NOT_FOUND when there is none.
    fn entry_mut(&mut self, id: FlightId) -> Result<&mut Entry> {
        self.flights.peek_mut(&id).ok_or_else(|| no_such_flight(id))
    }

    /// Whether every segment of `segments` has a file.
    fn on_disk(&self, segments: &[SegmentId]) -> bool {
        segments
            .iter()
            .all(|s| self.segments.get(s).is_some_and(|e| e.file.is_some()))
    }

    /// Bytes of resident segments without a file.
    fn unwritten_bytes(&self) -> u64 {
        self.segments.values().filter(|s| s.unwritten()).map(|s| s.bytes).sum()
    }
}

/// Where a published flight's name goes, if it has one.
#[derive(Clone, Debug)]
pub struct PutTarget {
    /// The name to point at the new flight.
    pub name: QualifiedName,
    /// What to do when the name exists.
    pub mode: PutMode,
}

impl FlightStore {
    /// Opens the store in `config.data_dir`: takes the directory's lock, recovers the catalog (removing leftovers
    /// of interrupted writes) and starts the background writer.
    pub async fn open(mut config: StoreConfig) -> Result<Self> {
        config.data_dir = std::path::absolute(&config.data_dir)?;
        config.high_water = config.high_water.clamp(0.0, 1.0);
        let budget = MemoryBudget::new(config.memory_limit);
        let config2 = config.clone();
        let loaded = tokio::task::spawn_blocking(move || persist::load(&config2))
            .await
            .map_err(|e| Error::internal(format!("catalog task failed: {e}")))??;
        let store = Self {
            shared: Arc::new(Shared {
                state: Mutex::new(loaded.state),
                budget,
                spill_dir: loaded.spill_dir,
                journal: loaded.journal,
                config,
                counters: Counters::default(),
                background: background::Background::default(),
                external_disk: Mutex::new(None),
                _lock: loaded.lock,
            }),
        };
        store.start_background();
        Ok(store)
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// The memory budget resident data is counted against.
    pub fn budget(&self) -> &MemoryBudget {
        &self.shared.budget
    }

    /// A directory for other components' temporary files (DataFusion's spills), inside the data directory and
    /// emptied at every start.
    pub fn temp_dir(&self) -> PathBuf {
        self.shared.spill_dir.join("tmp")
    }

    /// Counts `usage` (bytes of files outside the store) against the disk limit.
    pub fn set_external_disk_usage(&self, usage: DiskUsage) {
        *self.shared.external_disk.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each update under the lock is a handful of map calls that do not panic midway, so a lock poisoned by a
        // panic elsewhere still guards consistent maps.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id a reference points at right now.
    pub fn resolve(&self, r: &FlightRef) -> Result<FlightId> {
        let st = self.state();
        match r {
            FlightRef::Id(id) if st.flights.contains(id) => Ok(*id),
            FlightRef::Id(id) => Err(no_such_flight(*id)),
            FlightRef::Name(name) => st
                .names
                .get(name)
                .ok_or_else(|| Error::not_found(format!("no flight is named {name}"))),
        }
    }

    /// The flight with `id`, marking it recently used.
    pub fn get(&self, id: FlightId) -> Result<Flight> {
        let mut st = self.state();
        st.flights.promote(&id);
        let entry = st.flights.peek(&id).ok_or_else(|| no_such_flight(id))?;
        Ok(st.flight(id, entry))
    }

    /// Resolves and fetches in one step.
    pub fn lookup(&self, r: &FlightRef) -> Result<Flight> {
        self.get(self.resolve(r)?)
    }

    /// Whether flight `id` exists (without touching the LRU order).
    pub fn contains(&self, id: FlightId) -> bool {
        self.state().flights.contains(&id)
    }

    /// The metadata of flight `id` without touching the LRU order (for checks that must not count as a use).
    pub fn peek_meta(&self, id: FlightId) -> Option<Arc<FlightMeta>> {
        self.state().flights.peek(&id).map(|e| Arc::clone(&e.meta))
    }

    /// Names pointing at `id`.
    pub fn names_of(&self, id: FlightId) -> Vec<QualifiedName> {
        self.state().names.names_of(id)
    }

    /// Fails early when an upload to `target` could not be published (saves streaming a doomed upload).
    pub fn check_put(&self, target: &PutTarget) -> Result<()> {
        let st = self.state();
        match (target.mode, st.names.get(&target.name)) {
            (PutMode::Error, Some(id)) => Err(publish::already_exists(&target.name, id)),
            _ => Ok(()),
        }
    }

    /// Whether flight `id` is pinned.
    pub fn is_pinned(&self, id: FlightId) -> bool {
        self.state().flights.peek(&id).is_some_and(|e| e.pinned)
    }

    /// Every flight with its names, by id.
    pub fn list(&self) -> Vec<(Flight, Vec<QualifiedName>)> {
        let st = self.state();
        let mut out: Vec<_> = st
            .flights
            .iter()
            .map(|(id, e)| (st.flight(*id, e), st.names.names_of(*id)))
            .collect();
        out.sort_by_key(|(f, _)| f.id());
        out
    }

    /// Namespaces and the names in them.
    pub fn namespaces(&self) -> Vec<(String, Vec<(String, FlightId)>)> {
        let st = self.state();
        st.names
            .namespaces()
            .into_iter()
            .map(|ns| {
                let entries = st.names.entries(&ns);
                (ns, entries)
            })
            .collect()
    }

    /// Counters for the `stats` action.
    pub fn stats(&self) -> StoreStats {
        let st = self.state();
        let c = &self.shared.counters;
        let in_memory = st
            .flights
            .iter()
            .filter(|(_, e)| {
                e.segments
                    .iter()
                    .all(|s| st.segments.get(s).is_some_and(|s| s.memory.is_some()))
            })
            .count();
        StoreStats {
            flights: st.flights.len(),
            flights_in_memory: in_memory,
            flights_spilled: st.flights.len() - in_memory,
            flights_pinned: st.flights.iter().filter(|(_, e)| e.pinned).count(),
            segments: st.segments.len(),
            names: st.names.len(),
            namespaces: st.names.namespaces().len(),
            resident_bytes: self.shared.budget.used(),
            unwritten_bytes: st.unwritten_bytes(),
            peak_resident_bytes: self.shared.budget.peak(),
            memory_limit: self.shared.budget.limit(),
            high_water_bytes: self.high_water_bytes(),
            spilled_bytes: st.disk_bytes,
            disk_limit: self.shared.config.disk_limit,
            spills: c.spills.load(Ordering::Relaxed),
            conversions: c.conversions.load(Ordering::Relaxed),
            reloads: c.reloads.load(Ordering::Relaxed),
            writer_waits: c.waits.load(Ordering::Relaxed),
            evictions: Evictions {
                memory: c.memory.load(Ordering::Relaxed),
                forced: c.forced.load(Ordering::Relaxed),
                too_large: c.too_large.load(Ordering::Relaxed),
                disk_limit_drops: c.disk_limit_drops.load(Ordering::Relaxed),
            },
            next_id: st.next_id,
        }
    }

    fn high_water_bytes(&self) -> usize {
        (self.shared.budget.limit() as f64 * self.shared.config.high_water) as usize
    }

    /// Queues `records` in the journal (call with the state lock held, so the journal's order is the state's).
    /// Takes a new snapshot first when the journal asks for one. Returns what to wait for with [`Self::synced`].
    fn journal(&self, st: &State, records: Vec<Record>) -> Result<Option<u64>> {
        let Some(journal) = &self.shared.journal else {
            return Ok(None);
        };
        let mut last = None;
        if journal.wants_snapshot() {
            last = Some(journal.snapshot(persist::catalog_of(st)?)?);
        }
        for r in &records {
            last = Some(journal.append(r)?);
        }
        Ok(last)
    }

    /// Waits until journal line `seq` is on disk.
    async fn synced(&self, seq: Option<u64>) -> Result<()> {
        match (&self.shared.journal, seq) {
            (Some(journal), Some(seq)) => journal.synced(seq).await,
            _ => Ok(()),
        }
    }
}

/// NOT_FOUND for an id that names no flight.
fn no_such_flight(id: FlightId) -> Error {
    Error::not_found(format!("flight {id} does not exist"))
}

/// Marks files no catalog entry references any more, so each is deleted when its last reader finishes.
fn retire(files: impl IntoIterator<Item = Arc<SegmentFile>>) {
    for f in files {
        f.retire();
    }
}
