//! The store: flight ids, names and namespaces, residency and the memory budget. No tonic, no SQL.
//!
//! [`FlightStore`] is a cheap-clone handle over shared state. Every state transition of a flight (publish, drop,
//! rename) happens here, under one lock, so readers never see a half-made flight or a name pointing nowhere.

mod budget;
mod flight;
mod id;
mod name;

use std::path::PathBuf;
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
}

/// Counters reported by the `stats` action.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStats {
    /// Flights that exist.
    pub flights: usize,
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
    /// The id the next flight will get.
    pub next_id: u64,
}

/// Handle to the flight store; clones share the same state.
#[derive(Clone, Debug)]
pub struct FlightStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// One lock for the id map, the LRU order and the names: a publish moves a name and inserts a flight
    /// atomically, and an eviction must see the same LRU order that lookups update. Critical sections are short
    /// map operations; no I/O and no `.await` happen under it.
    state: Mutex<State>,
    budget: MemoryBudget,
    config: StoreConfig,
}

#[derive(Debug)]
struct State {
    /// Every flight by id, in least-recently-used order (unbounded: the budget, not a count, limits it).
    flights: LruCache<FlightId, Entry>,
    names: NameTable,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    flight: Flight,
}

/// Batches of a flight that is still arriving; nothing is visible until [`FlightStore::publish`].
///
/// Dropping a writer (a failed or abandoned upload) releases its memory and leaves no trace.
#[derive(Debug)]
pub struct FlightWriter {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    reservation: Reservation,
    /// Copy batches that are small views of large buffers (derived results), so a result never keeps more
    /// memory alive than it accounts for.
    compact: bool,
}

impl FlightWriter {
    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds one batch, accounting its bytes.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
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
        if !self.reservation.try_grow(bytes) {
            let budget = &self.reservation;
            return Err(Error::ResourceExhausted(format!(
                "memory budget exceeded: this flight already holds {} bytes and the next batch needs {bytes} more; \
                 raise --memory-limit or drop flights",
                budget.size()
            )));
        }
        self.batches.push(batch);
        Ok(())
    }

    /// Rows pushed so far.
    pub fn num_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
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
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let budget = MemoryBudget::new(config.memory_limit);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    flights: LruCache::unbounded(),
                    names: NameTable::new(),
                    next_id: 1,
                }),
                budget,
                config,
            }),
        }
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
            .map(|e| e.flight.clone())
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

    /// Names pointing at `id`.
    pub fn names_of(&self, id: FlightId) -> Vec<QualifiedName> {
        self.state().names.names_of(id)
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
            schema,
            batches: Vec::new(),
            reservation: self.shared.budget.reservation(),
            compact: false,
        }
    }

    /// Starts a computed flight; batches that are small views of larger buffers are copied on push.
    pub fn derived_writer(&self, schema: SchemaRef) -> FlightWriter {
        FlightWriter {
            compact: true,
            ..self.writer(schema)
        }
    }

    /// Makes an uploaded flight visible: assigns its id and moves its name, atomically.
    pub fn publish_upload(&self, writer: FlightWriter, target: Option<&PutTarget>) -> Result<Flight> {
        let mode = target.map_or(PutMode::Replace, |t| t.mode);
        let mut st = self.state();
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut inputs = Vec::new();
        if let Some(t) = target {
            match (t.mode, st.names.get(&t.name)) {
                (PutMode::Error, Some(id)) => return Err(already_exists(&t.name, id)),
                (PutMode::Append, Some(old)) => {
                    let parent =
                        st.flights.peek(&old).map(|e| e.flight.clone()).ok_or_else(|| {
                            Error::internal(format!("name {} points at missing flight {old}", t.name))
                        })?;
                    if parent.meta.schema.fields() != writer.schema.fields() {
                        return Err(Error::invalid(format!(
                            "append to {} needs the same schema; existing: {}, uploaded: {}",
                            t.name, parent.meta.schema, writer.schema
                        )));
                    }
                    match &parent.data {
                        FlightData::Memory(parent_segments) => segments.extend(parent_segments.iter().cloned()),
                    }
                    inputs.push(old);
                }
                _ => {}
            }
        }
        let lineage = Lineage::upload(mode.as_str(), inputs);
        let schema = Arc::clone(&writer.schema);
        segments.push(Arc::new(Segment::new(writer.batches, writer.reservation)));
        Ok(insert_locked(
            &mut st,
            schema,
            segments,
            lineage,
            target.map(|t| &t.name),
        ))
    }

    /// Makes a computed flight visible, optionally pointing `name` at it (replacing what it pointed at).
    pub fn publish_derived(&self, writer: FlightWriter, lineage: Lineage, name: Option<&QualifiedName>) -> Flight {
        let schema = Arc::clone(&writer.schema);
        let segments = vec![Arc::new(Segment::new(writer.batches, writer.reservation))];
        let mut st = self.state();
        insert_locked(&mut st, schema, segments, lineage, name)
    }

    /// Points `name` at an existing flight (replacing what it pointed at). Returns the previous target.
    pub fn set_name(&self, name: &QualifiedName, id: FlightId) -> Result<Option<FlightId>> {
        let mut st = self.state();
        if !st.flights.contains(&id) {
            return Err(Error::not_found(format!("flight {id} does not exist")));
        }
        Ok(st.names.set(name, id))
    }

    /// Drops a flight and every name pointing at it. Readers holding it finish their streams.
    pub fn drop_flight(&self, id: FlightId) -> Result<Flight> {
        let mut st = self.state();
        let entry = st
            .flights
            .pop(&id)
            .ok_or_else(|| Error::not_found(format!("flight {id} does not exist")))?;
        st.names.remove_id(id);
        Ok(entry.flight)
    }

    /// Deletes a namespace. Without `force` it must be empty; with `force` the flights it names are dropped.
    /// Returns the ids dropped.
    pub fn delete_namespace(&self, namespace: &str, force: bool) -> Result<Vec<FlightId>> {
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
        let mut dropped = Vec::new();
        for (_, id) in entries {
            if st.flights.pop(&id).is_some() {
                st.names.remove_id(id);
                dropped.push(id);
            }
        }
        st.names.remove_namespace(namespace);
        Ok(dropped)
    }

    /// Every flight with its names, by id.
    pub fn list(&self) -> Vec<(Flight, Vec<QualifiedName>)> {
        let st = self.state();
        let mut out: Vec<_> = st
            .flights
            .iter()
            .map(|(id, e)| (e.flight.clone(), st.names.names_of(*id)))
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
        StoreStats {
            flights: st.flights.len(),
            names: st.names.len(),
            namespaces: st.names.namespaces().len(),
            resident_bytes: self.shared.budget.used(),
            peak_resident_bytes: self.shared.budget.peak(),
            memory_limit: self.shared.budget.limit(),
            next_id: st.next_id,
        }
    }
}

fn already_exists(name: &QualifiedName, id: FlightId) -> Error {
    Error::AlreadyExists(format!(
        "name {name} already points at flight {id}; upload with mode \"replace\" or \"append\""
    ))
}

fn insert_locked(
    st: &mut State,
    schema: SchemaRef,
    segments: Vec<Arc<Segment>>,
    lineage: Lineage,
    name: Option<&QualifiedName>,
) -> Flight {
    let id = FlightId(st.next_id);
    st.next_id += 1;
    let meta = FlightMeta {
        id,
        schema,
        num_rows: segments.iter().map(|s| s.num_rows()).sum(),
        num_bytes: segments.iter().map(|s| s.num_bytes()).sum(),
        lineage,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let flight = Flight {
        meta: Arc::new(meta),
        data: FlightData::Memory(segments.into()),
    };
    st.flights.put(id, Entry { flight: flight.clone() });
    if let Some(name) = name {
        st.names.set(name, id);
    }
    flight
}
