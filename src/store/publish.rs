//! Publishing and retiring flights: uploads and derived results get their ids and names here, names move, flights
//! and namespaces are dropped — each transition under the one state lock, with the catalog written after it.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::spill;
use super::{
    Entry, Flight, FlightData, FlightId, FlightMeta, FlightStore, Lineage, PendingFlight, PutMode, PutTarget,
    QualifiedName, Segment, State, batch_bytes, catalog, delete_files, flight_has_file, no_such_flight,
};
use crate::error::{Error, Result};

impl FlightStore {
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
                return Err(no_such_flight(id));
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
            let entry = st.flights.pop(&id).ok_or_else(|| no_such_flight(id))?;
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
}

pub(super) fn already_exists(name: &QualifiedName, id: FlightId) -> Error {
    Error::AlreadyExists(format!(
        "name {name} already points at flight {id}; upload with mode \"replace\" or \"append\""
    ))
}

/// Inserts a published flight: `shared` are segments of a parent it appends to. Returns the flight and whether the
/// id block was extended (so the catalog must be written).
pub(super) fn insert_locked(
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
