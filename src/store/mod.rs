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

mod budget;
mod catalog;
mod flight;
mod id;
mod name;
pub mod spill;
mod writer;

use std::path::{Path, PathBuf};
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
        let loaded = tokio::task::spawn_blocking(move || load(&config2))
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
            FlightRef::Id(id) => Err(Error::not_found(format!("flight {id} does not exist"))),
            FlightRef::Name(name) => st
                .names
                .get(name)
                .ok_or_else(|| Error::not_found(format!("no flight is named {name}"))),
        }
    }

    /// The flight with `id`, marking it recently used.
    pub fn get(&self, id: FlightId) -> Result<Flight> {
        let mut st = self.state();
        st.flights
            .get(&id)
            .map(Entry::flight)
            .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))
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
            (PutMode::Error, Some(id)) => Err(already_exists(&target.name, id)),
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

    /// Makes an uploaded flight visible: assigns its id and moves its name, atomically. Durable uploads and
    /// uploads that went to disk are recorded in the catalog before this returns.
    pub async fn publish_upload(&self, pending: PendingFlight, target: Option<&PutTarget>) -> Result<Flight> {
        let mode = target.map_or(PutMode::Replace, |t| t.mode);
        // An append whose parent is spilled, or whose new rows went to disk, is written as one new file holding
        // the parent's rows then the new ones; otherwise the new flight shares the parent's segments.
        let parent = {
            let st = self.state();
            match target.map(|t| (t.mode, st.names.get(&t.name))) {
                Some((PutMode::Append, Some(old))) => st.flights.peek(&old).map(Entry::flight),
                _ => None,
            }
        };
        let pending = match parent {
            Some(p) if matches!(p.data, FlightData::Spilled(_)) || pending.file.is_some() => {
                if p.meta.schema.fields() != pending.schema.fields() {
                    return Err(Error::invalid(format!(
                        "append needs the same schema; existing: {}, uploaded: {}",
                        p.meta.schema, pending.schema
                    )));
                }
                let rows = self.batches(&p).await?;
                self.append_on_disk(rows, pending).await?
            }
            _ => pending,
        };
        let (flight, extended) = {
            let mut st = self.state();
            let mut segments: Vec<Arc<Segment>> = Vec::new();
            let mut inputs = Vec::new();
            if let Some(t) = target {
                match (t.mode, st.names.get(&t.name)) {
                    (PutMode::Error, Some(id)) => return Err(already_exists(&t.name, id)),
                    (PutMode::Append, Some(old)) => {
                        let parent = st.flights.peek(&old).ok_or_else(|| {
                            Error::internal(format!("name {} points at missing flight {old}", t.name))
                        })?;
                        if parent.meta.schema.fields() != pending.schema.fields() {
                            return Err(Error::invalid(format!(
                                "append to {} needs the same schema; existing: {}, uploaded: {}",
                                t.name, parent.meta.schema, pending.schema
                            )));
                        }
                        if pending.segment.is_some() {
                            match &parent.memory {
                                Some(m) => segments.extend(m.iter().cloned()),
                                None => {
                                    return Err(Error::internal(
                                        "the flight appended to was spilled during the upload; retry",
                                    ));
                                }
                            }
                        }
                        inputs.push(old);
                    }
                    _ => {}
                }
            }
            let lineage = Lineage::upload(mode.as_str(), inputs);
            insert_locked(&mut st, pending, segments, lineage, target.map(|t| &t.name))
        };
        if extended || flight_has_file(&self.state(), flight.id()) {
            self.persist_catalog().await?;
        }
        Ok(flight)
    }

    /// Writes the parent's rows followed by the new rows as one new spill file (append when rows are on disk).
    async fn append_on_disk(&self, rows: Vec<RecordBatch>, pending: PendingFlight) -> Result<PendingFlight> {
        let new_rows: Vec<RecordBatch> = match (&pending.segment, &pending.file) {
            (Some(seg), _) => seg.batches().to_vec(),
            (None, Some(file)) => {
                let path = file.path.clone();
                tokio::task::spawn_blocking(move || spill::read_all(&path))
                    .await
                    .map_err(|e| Error::internal(format!("spill task failed: {e}")))??
            }
            (None, None) => Vec::new(),
        };
        let schema = Arc::clone(&pending.schema);
        let num_rows = rows.iter().chain(&new_rows).map(|b| b.num_rows() as u64).sum();
        let num_bytes = rows.iter().chain(&new_rows).map(|b| batch_bytes(b) as u64).sum();
        if let Some(old) = pending.file {
            delete_files([Some(Arc::new(old))]);
        }
        let all: Vec<RecordBatch> = rows.into_iter().chain(new_rows).collect();
        let file = self.write_file(Arc::clone(&schema), all).await?;
        Ok(PendingFlight {
            schema,
            segment: None,
            file: Some(file),
            num_rows,
            num_bytes,
        })
    }

    /// Makes a computed flight visible, optionally pointing `name` at it (replacing what it pointed at).
    pub async fn publish_derived(
        &self,
        pending: PendingFlight,
        lineage: Lineage,
        name: Option<&QualifiedName>,
    ) -> Result<Flight> {
        let (flight, extended) = {
            let mut st = self.state();
            insert_locked(&mut st, pending, Vec::new(), lineage, name)
        };
        if extended || flight_has_file(&self.state(), flight.id()) {
            self.persist_catalog().await?;
        }
        Ok(flight)
    }

    /// Points `name` at an existing flight (replacing what it pointed at). Returns the previous target.
    pub async fn set_name(&self, name: &QualifiedName, id: FlightId) -> Result<Option<FlightId>> {
        let (previous, persisted) = {
            let mut st = self.state();
            if !st.flights.contains(&id) {
                return Err(Error::not_found(format!("flight {id} does not exist")));
            }
            let previous = st.names.set(name, id);
            let persisted = previous.is_some_and(|p| flight_has_file(&st, p)) || flight_has_file(&st, id);
            (previous, persisted)
        };
        // The catalog only lists names of flights on disk; a name that moved between memory-only flights (or did
        // not move) changes nothing there.
        if persisted && previous != Some(id) {
            self.persist_catalog().await?;
        }
        Ok(previous)
    }

    /// Drops a flight and every name pointing at it. Readers holding it finish their streams.
    pub async fn drop_flight(&self, id: FlightId) -> Result<Flight> {
        let entry = {
            let mut st = self.state();
            let entry = st
                .flights
                .pop(&id)
                .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
            st.names.remove_id(id);
            if let Some(f) = &entry.file {
                st.disk_bytes = st.disk_bytes.saturating_sub(f.bytes);
            }
            entry
        };
        self.persist_catalog().await?;
        delete_files([entry.file.clone()]);
        Ok(entry.flight())
    }

    /// Deletes a namespace. Without `force` it must be empty; with `force` the flights it names are dropped.
    /// Returns the ids dropped.
    pub async fn delete_namespace(&self, namespace: &str, force: bool) -> Result<Vec<FlightId>> {
        let mut files = Vec::new();
        let mut dropped = Vec::new();
        {
            let mut st = self.state();
            if !st.names.has_namespace(namespace) {
                return Err(Error::not_found(format!("namespace {namespace} does not exist")));
            }
            let entries = st.names.entries(namespace);
            if !entries.is_empty() && !force {
                return Err(Error::invalid(format!(
                    "namespace {namespace} holds {} names; pass \"force\": true to drop them and their flights",
                    entries.len()
                )));
            }
            for (_, id) in entries {
                if let Some(entry) = st.flights.pop(&id) {
                    st.names.remove_id(id);
                    if let Some(f) = &entry.file {
                        st.disk_bytes = st.disk_bytes.saturating_sub(f.bytes);
                    }
                    files.push(entry.file);
                    dropped.push(id);
                }
            }
            st.names.remove_namespace(namespace);
        }
        self.persist_catalog().await?;
        delete_files(files);
        Ok(dropped)
    }

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
            let entry = st
                .flights
                .peek_mut(&id)
                .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
            if entry.memory.is_none() {
                entry.memory = Some(Arc::from(vec![Arc::new(Segment::new(batches, reservation))]));
                self.shared.counters.reloads.fetch_add(1, Ordering::Relaxed);
            }
            entry.pinned = true;
            return Ok(());
        }
        let mut st = self.state();
        let entry = st
            .flights
            .peek_mut(&id)
            .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
        entry.pinned = true;
        Ok(())
    }

    /// Lets a pinned flight be spilled again.
    pub fn unpin(&self, id: FlightId) -> Result<()> {
        let mut st = self.state();
        let entry = st
            .flights
            .peek_mut(&id)
            .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
        entry.pinned = false;
        Ok(())
    }

    /// Writes a flight to disk and releases its memory now.
    pub async fn spill(&self, id: FlightId) -> Result<()> {
        {
            let mut st = self.state();
            let entry = st
                .flights
                .peek_mut(&id)
                .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
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
    async fn make_room(&self, needed: usize) -> Result<()> {
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
    async fn spill_entry(&self, id: FlightId, release: bool) -> Result<()> {
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
    async fn check_disk(&self, bytes: u64) -> Result<()> {
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
    fn free_disk(&self, bytes: u64, limit: u64) -> (Vec<Option<Arc<SpillFile>>>, Option<u64>) {
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
    async fn write_file(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<SpillFile> {
        let estimate: u64 = batches.iter().map(|b| batch_bytes(b) as u64).sum();
        self.check_disk(estimate).await?;
        let dir = self.shared.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || spill::write_all(&dir, schema, &batches))
            .await
            .map_err(|e| Error::internal(format!("spill task failed: {e}")))??;
        self.shared.counters.spills.fetch_add(1, Ordering::Relaxed);
        Ok(file)
    }

    /// Writes the catalog (no-op when ephemeral).
    pub async fn persist_catalog(&self) -> Result<()> {
        if self.shared.config.ephemeral {
            return Ok(());
        }
        let _guard = self.shared.catalog_lock.lock().await;
        let snapshot = {
            let st = self.state();
            snapshot(&st, &self.shared.config.data_dir)
        };
        let dir = self.shared.config.data_dir.clone();
        tokio::task::spawn_blocking(move || catalog::store(&dir, &snapshot))
            .await
            .map_err(|e| Error::internal(format!("catalog task failed: {e}")))?
    }

    /// On graceful shutdown: writes every resident flight without a file to disk and the catalog (unless
    /// ephemeral, in which case the per-run spill directory is removed).
    pub async fn close(&self) -> Result<()> {
        if self.shared.config.ephemeral {
            // Err means the directory was never created.
            let _ = std::fs::remove_dir_all(&self.shared.spill_dir);
            return Ok(());
        }
        let pending: Vec<FlightId> = {
            let mut st = self.state();
            let ids: Vec<FlightId> = st
                .flights
                .iter()
                .filter(|(_, e)| e.file.is_none() && !e.spilling)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                if let Some(e) = st.flights.peek_mut(id) {
                    e.spilling = true;
                }
            }
            ids
        };
        for id in pending {
            if let Err(e) = self.spill_entry(id, false).await {
                tracing::warn!(%id, error = %e, "could not write flight to disk at shutdown; it will be gone after restart");
            }
        }
        self.persist_catalog().await
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

fn flight_has_file(st: &State, id: FlightId) -> bool {
    st.flights.peek(&id).is_some_and(|e| e.file.is_some())
}

fn delete_files(files: impl IntoIterator<Item = Option<Arc<SpillFile>>>) {
    for f in files.into_iter().flatten() {
        // Err means it is already gone; a leftover is removed at the next start as an orphan.
        let _ = std::fs::remove_file(&f.path);
    }
}

/// The catalog as it should be on disk: flights with files and the names pointing at them.
fn snapshot(st: &State, data_dir: &Path) -> catalog::CatalogFile {
    let mut flights: Vec<catalog::CatalogFlight> = st
        .flights
        .iter()
        .filter_map(|(id, e)| {
            let file = e.file.as_ref()?;
            Some(catalog::CatalogFlight {
                id: *id,
                file: file.path.strip_prefix(data_dir).unwrap_or(&file.path).to_path_buf(),
                num_rows: e.meta.num_rows,
                num_bytes: e.meta.num_bytes,
                lineage: e.meta.lineage.clone(),
                created_at: e.meta.created_at.clone(),
                namespace: e.meta.namespace.clone(),
            })
        })
        .collect();
    flights.sort_by_key(|f| f.id);
    let mut namespaces = std::collections::BTreeMap::new();
    for ns in st.names.namespaces() {
        let names: std::collections::BTreeMap<String, FlightId> = st
            .names
            .entries(&ns)
            .into_iter()
            .filter(|(_, id)| flight_has_file(st, *id))
            .collect();
        namespaces.insert(ns, names);
    }
    catalog::CatalogFile {
        version: catalog::CATALOG_VERSION,
        next_id: st.reserved_id.max(st.next_id),
        namespaces,
        flights,
    }
}

struct Loaded {
    state: State,
    spill_dir: PathBuf,
}

/// Reads the catalog and the spill directory: temp files of interrupted writes and files no catalog entry
/// references are deleted; flights whose file is missing or unreadable are skipped with a warning.
fn load(config: &StoreConfig) -> Result<Loaded> {
    let mut state = State {
        flights: LruCache::unbounded(),
        names: NameTable::new(),
        next_id: 1,
        reserved_id: 1,
        disk_bytes: 0,
    };
    if config.ephemeral {
        let spill_dir = config.data_dir.join(format!("ephemeral-{}", uuid::Uuid::new_v4()));
        return Ok(Loaded { state, spill_dir });
    }
    let spill_dir = config.data_dir.join("flights");
    let catalog = catalog::load(&config.data_dir)?.unwrap_or_default();
    let mut known = std::collections::HashSet::new();
    for f in catalog.flights {
        let path = config.data_dir.join(&f.file);
        let schema = match spill::read_schema(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = %f.id, file = %path.display(), error = %e, "skipping flight whose file is unreadable");
                continue;
            }
        };
        let bytes = std::fs::metadata(&path)?.len();
        state.disk_bytes += bytes;
        known.insert(path.clone());
        state.flights.put(
            f.id,
            Entry {
                meta: Arc::new(FlightMeta {
                    id: f.id,
                    schema,
                    num_rows: f.num_rows,
                    num_bytes: f.num_bytes,
                    lineage: f.lineage,
                    created_at: f.created_at,
                    namespace: f.namespace,
                }),
                memory: None,
                file: Some(Arc::new(SpillFile { path, bytes })),
                pinned: false,
                spilling: false,
            },
        );
        state.next_id = state.next_id.max(f.id.0 + 1);
    }
    for (ns, names) in catalog.namespaces {
        state.names.create_namespace(&ns);
        for (name, id) in names {
            if state.flights.contains(&id) {
                state.names.set(
                    &QualifiedName {
                        namespace: ns.clone(),
                        name,
                    },
                    id,
                );
            }
        }
    }
    state.next_id = state.next_id.max(catalog.next_id);
    // Force a catalog write (a new id block) before the first new id is handed out.
    state.reserved_id = state.next_id;
    if let Ok(entries) = std::fs::read_dir(&spill_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if !known.contains(&path) {
                tracing::info!(file = %path.display(), "removing leftover spill file");
                // Err: it vanished meanwhile, which is the goal anyway.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    // A catalog temp file is a write that never finished; the renamed catalog is the truth.
    let _ = std::fs::remove_file(catalog::path(&config.data_dir).with_extension("json.tmp"));
    Ok(Loaded { state, spill_dir })
}

fn already_exists(name: &QualifiedName, id: FlightId) -> Error {
    Error::AlreadyExists(format!(
        "name {name} already points at flight {id}; upload with mode \"replace\" or \"append\""
    ))
}

/// Inserts a published flight: `shared` are segments of a parent it appends to. Returns the flight and whether the
/// id block was extended (so the catalog must be written).
fn insert_locked(
    st: &mut State,
    pending: PendingFlight,
    shared: Vec<Arc<Segment>>,
    lineage: Lineage,
    name: Option<&QualifiedName>,
) -> (Flight, bool) {
    let id = FlightId(st.next_id);
    st.next_id += 1;
    let extended = st.next_id > st.reserved_id;
    if extended {
        st.reserved_id = st.next_id + catalog::ID_BLOCK;
    }
    let (num_rows, num_bytes) = (
        pending.num_rows + shared.iter().map(|s| s.num_rows()).sum::<u64>(),
        pending.num_bytes + shared.iter().map(|s| s.num_bytes()).sum::<u64>(),
    );
    let memory = pending.segment.map(|seg| {
        let mut all = shared;
        all.push(Arc::new(seg));
        Arc::from(all)
    });
    let file = pending.file.map(Arc::new);
    if let Some(f) = &file {
        st.disk_bytes += f.bytes;
    }
    let namespace = match (lineage.op.as_str(), name) {
        ("upload", Some(n)) => Some(n.namespace.clone()),
        _ => None,
    };
    let entry = Entry {
        meta: Arc::new(FlightMeta {
            id,
            schema: pending.schema,
            num_rows,
            num_bytes,
            namespace,
            lineage,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }),
        memory,
        file,
        pinned: false,
        spilling: false,
    };
    let flight = entry.flight();
    st.flights.put(id, entry);
    if let Some(name) = name {
        st.names.set(name, id);
    }
    (flight, extended)
}
