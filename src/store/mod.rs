//! The store: flight ids, names and namespaces, residency and the memory budget. No tonic, no SQL.
//!
//! [`FlightStore`] is a cheap-clone handle over shared state. Every state transition of a flight (publish, drop,
//! rename, spill, reload, pin) happens here, under one lock, so readers never see a half-made flight or a name
//! pointing nowhere.
//!
//! Residency: resident bytes never exceed the memory budget. When a new batch does not fit, the least recently used
//! unpinned flights are written to Parquet (`<data-dir>/flights/<uuid>.parquet`) and their memory released; a
//! flight that cannot fit at all is written straight to disk. Spilled flights stay readable (DoGet streams the file,
//! SQL scans it, ops read it) and come back into memory when a read finds room. The catalog (`catalog.json`) lists
//! every flight with a file, so a restart finds them all.
//!
//! Here: the state, lookups and listings. [`publish`] makes flights visible, names them and drops them;
//! [`residency`] pins and spills them under the budget and the disk limit; [`persist`] writes the catalog and
//! rebuilds the state at startup; [`writer`] receives uploads and results batch by batch.

mod budget;
mod catalog;
mod flight;
mod id;
mod name;
mod persist;
mod publish;
mod residency;
pub mod spill;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use lru::LruCache;
use serde::{Deserialize, Serialize};

pub use budget::{MemoryBudget, Reservation};
pub use flight::{Flight, FlightData, FlightMeta, Lineage, Segment, batch_bytes, compact_if_wasteful, slice_batches};
pub use id::FlightId;
pub use name::{DEFAULT_NAMESPACE, MAX_NAME_LEN, NameTable, QualifiedName, validate_identifier};

use crate::error::{Error, Result};
use spill::SpillFile;
pub use writer::{FlightWriter, PendingFlight};

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
    /// Where spill files and the catalog live.
    pub data_dir: PathBuf,
    /// Bytes of spill files allowed on disk (`None`: unlimited).
    pub disk_limit: Option<u64>,
    /// Acknowledge uploads only once they are on disk.
    pub durable: bool,
    /// Keep nothing across restarts: no catalog, spill files removed at exit.
    pub ephemeral: bool,
}

impl StoreConfig {
    /// Memory-only defaults for tests and embedding: `memory_limit` bytes, an ephemeral store in `data_dir`.
    pub fn ephemeral(memory_limit: usize, data_dir: PathBuf) -> Self {
        Self {
            memory_limit,
            data_dir,
            disk_limit: None,
            durable: false,
            ephemeral: true,
        }
    }
}

/// Counters reported by the `stats` action.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStats {
    /// Flights that exist.
    pub flights: usize,
    /// Flights whose data is in memory.
    pub flights_in_memory: usize,
    /// Flights whose data is only on disk.
    pub flights_spilled: usize,
    /// Pinned flights.
    pub flights_pinned: usize,
    /// Names in all namespaces.
    pub names: usize,
    /// Namespaces, including `default`.
    pub namespaces: usize,
    /// Bytes of resident flight data.
    pub resident_bytes: usize,
    /// Highest resident bytes seen.
    pub peak_resident_bytes: usize,
    /// The memory budget.
    pub memory_limit: usize,
    /// Bytes of spill files on disk.
    pub spilled_bytes: u64,
    /// The disk limit, if any.
    pub disk_limit: Option<u64>,
    /// Flights written to disk (for any reason).
    pub spills: u64,
    /// Spilled flights brought back into memory.
    pub reloads: u64,
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
    reloads: AtomicU64,
    memory: AtomicU64,
    forced: AtomicU64,
    too_large: AtomicU64,
    disk_limit_drops: AtomicU64,
}

/// Handle to the flight store; clones share the same state.
#[derive(Clone, Debug)]
pub struct FlightStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// One lock for the id map, the LRU order, the names and the disk total: a publish moves a name and inserts a
    /// flight atomically, and an eviction must see the same LRU order that lookups update. Critical sections are
    /// map operations; file I/O and `.await` happen outside it.
    state: Mutex<State>,
    budget: MemoryBudget,
    config: StoreConfig,
    /// Where spill files go (`<data-dir>/flights`, or a per-run directory when ephemeral).
    spill_dir: PathBuf,
    /// Serializes catalog writes so a newer snapshot is never overwritten by an older one.
    catalog_lock: tokio::sync::Mutex<()>,
    counters: Counters,
}

#[derive(Debug)]
struct State {
    /// Every flight by id, in least-recently-used order (unbounded: the budget, not a count, limits it).
    flights: LruCache<FlightId, Entry>,
    names: NameTable,
    next_id: u64,
    /// Ids below this are reserved in the catalog on disk; reaching it means the catalog must be rewritten.
    reserved_id: u64,
    /// Bytes of all spill files.
    disk_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    meta: Arc<FlightMeta>,
    /// The batches, when resident.
    memory: Option<Arc<[Arc<Segment>]>>,
    /// The spill file, once written (a resident flight may have one too: spilling it again is free).
    file: Option<Arc<SpillFile>>,
    pinned: bool,
    /// A spill of this flight is being written; it must not be picked again.
    spilling: bool,
}

impl Entry {
    fn flight(&self) -> Flight {
        let data = match (&self.memory, &self.file) {
            (Some(m), _) => FlightData::Memory(Arc::clone(m)),
            (None, Some(f)) => FlightData::Spilled(Arc::clone(f)),
            (None, None) => FlightData::Memory(Arc::from(Vec::new())),
        };
        Flight {
            meta: Arc::clone(&self.meta),
            data,
        }
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
    /// Opens the store in `config.data_dir`: removes leftovers of interrupted writes and loads the catalog.
    pub async fn open(mut config: StoreConfig) -> Result<Self> {
        config.data_dir = std::path::absolute(&config.data_dir)?;
        let config2 = config.clone();
        let loaded = tokio::task::spawn_blocking(move || persist::load(&config2))
            .await
            .map_err(|e| Error::internal(format!("catalog task failed: {e}")))??;
        let budget = MemoryBudget::new(config.memory_limit);
        let store = Self {
            shared: Arc::new(Shared {
                state: Mutex::new(loaded.state),
                budget,
                spill_dir: loaded.spill_dir,
                config,
                catalog_lock: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
            }),
        };
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

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is a single map call),
        // so a poisoned lock is still consistent.
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
        st.flights.get(&id).map(Entry::flight).ok_or_else(|| no_such_flight(id))
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

    /// All batches of `flight`, from memory or from its spill file (which is brought back into memory when the
    /// budget has room for it).
    pub async fn batches(&self, flight: &Flight) -> Result<Vec<RecordBatch>> {
        let file = match &flight.data {
            FlightData::Memory(segments) => {
                return Ok(segments.iter().flat_map(|s| s.batches().iter().cloned()).collect());
            }
            FlightData::Spilled(file) => Arc::clone(file),
        };
        let path = file.path.clone();
        let batches = tokio::task::spawn_blocking(move || spill::read_all(&path))
            .await
            .map_err(|e| Error::internal(format!("reload task failed: {e}")))??;
        let mut reservation = self.budget().reservation();
        if reservation.try_grow(batches.iter().map(batch_bytes).sum()) {
            let mut st = self.state();
            if let Some(entry) = st.flights.peek_mut(&flight.id())
                && entry.memory.is_none()
            {
                entry.memory = Some(Arc::from(vec![Arc::new(Segment::new(batches.clone(), reservation))]));
                self.shared.counters.reloads.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(batches)
    }

    /// Fails early when an upload to `target` could not be published (saves streaming a doomed upload).
    pub fn check_put(&self, target: &PutTarget) -> Result<()> {
        let st = self.state();
        match (target.mode, st.names.get(&target.name)) {
            (PutMode::Error, Some(id)) => Err(publish::already_exists(&target.name, id)),
            _ => Ok(()),
        }
    }

    /// Starts an upload with `schema`; batches are pushed as they arrive and nothing is visible until publish.
    pub fn writer(&self, schema: SchemaRef) -> FlightWriter {
        FlightWriter {
            store: self.clone(),
            schema,
            batches: Vec::new(),
            reservation: self.shared.budget.reservation(),
            compact: false,
            disk: None,
            disk_rows: 0,
            disk_bytes: 0,
        }
    }

    /// Starts a computed flight; batches that are small views of larger buffers are copied on push.
    pub fn derived_writer(&self, schema: SchemaRef) -> FlightWriter {
        let mut writer = self.writer(schema);
        writer.compact = true;
        writer
    }

    /// Flags and counters for `pin`/`spill` tests and the `stats` action.
    pub fn is_pinned(&self, id: FlightId) -> bool {
        self.state().flights.peek(&id).is_some_and(|e| e.pinned)
    }

    /// Every flight with its names, by id.
    pub fn list(&self) -> Vec<(Flight, Vec<QualifiedName>)> {
        let st = self.state();
        let mut out: Vec<_> = st
            .flights
            .iter()
            .map(|(id, e)| (e.flight(), st.names.names_of(*id)))
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
        let in_memory = st.flights.iter().filter(|(_, e)| e.memory.is_some()).count();
        StoreStats {
            flights: st.flights.len(),
            flights_in_memory: in_memory,
            flights_spilled: st.flights.len() - in_memory,
            flights_pinned: st.flights.iter().filter(|(_, e)| e.pinned).count(),
            names: st.names.len(),
            namespaces: st.names.namespaces().len(),
            resident_bytes: self.shared.budget.used(),
            peak_resident_bytes: self.shared.budget.peak(),
            memory_limit: self.shared.budget.limit(),
            spilled_bytes: st.disk_bytes,
            disk_limit: self.shared.config.disk_limit,
            spills: c.spills.load(Ordering::Relaxed),
            reloads: c.reloads.load(Ordering::Relaxed),
            evictions: Evictions {
                memory: c.memory.load(Ordering::Relaxed),
                forced: c.forced.load(Ordering::Relaxed),
                too_large: c.too_large.load(Ordering::Relaxed),
                disk_limit_drops: c.disk_limit_drops.load(Ordering::Relaxed),
            },
            next_id: st.next_id,
        }
    }
}

/// NOT_FOUND for an id that names no flight.
fn no_such_flight(id: FlightId) -> Error {
    Error::not_found(format!("flight {id} does not exist"))
}

impl State {
    /// The entry of flight `id`, without marking it used; NOT_FOUND when there is none.
    fn entry_mut(&mut self, id: FlightId) -> Result<&mut Entry> {
        self.flights.peek_mut(&id).ok_or_else(|| no_such_flight(id))
    }
}

fn flight_has_file(st: &State, id: FlightId) -> bool {
    st.flights.peek(&id).is_some_and(|e| e.file.is_some())
}

fn delete_files(files: impl IntoIterator<Item = Option<Arc<SpillFile>>>) {
    for f in files.into_iter().flatten() {
        // Err means it is already gone; a leftover is removed at the next start as an orphan.
        let _ = std::fs::remove_file(&f.path);
    }
}
