//! Publishing and retiring flights: uploads and derived results get their ids and names here, names move, flights
//! and namespaces are dropped — each transition under the one state lock, its journal lines queued under the same
//! lock, and the answer given once they are on disk.

use std::sync::Arc;

use super::catalog::{self, Record};
use super::spill::SegmentFile;
use super::{
    Entry, Flight, FlightId, FlightMeta, FlightStore, Lineage, PendingFlight, PutMode, PutTarget, QualifiedName,
    SegmentEntry, SegmentId, State, no_such_flight, persist, retire,
};
use crate::error::{Error, Result};

/// How often a durable append retries when its parent changed while the parent's rows were being written.
const DURABLE_APPEND_ATTEMPTS: usize = 8;

/// What removing a flight leaves to do once its journal lines are on disk.
pub(super) struct Removed {
    pub(super) records: Vec<Record>,
    pub(super) files: Vec<Arc<SegmentFile>>,
}

impl FlightStore {
    /// Makes an uploaded flight visible: assigns its id and moves its name, atomically. An `append` makes a flight
    /// of the parent's segments plus the new one (nothing is copied). With `--durable`, every segment of the new
    /// flight is on disk and recorded before this returns.
    pub async fn publish_upload(&self, pending: PendingFlight, target: Option<&PutTarget>) -> Result<Flight> {
        let mode = target.map_or(PutMode::Replace, |t| t.mode);
        let durable = self.shared.config.durable && !self.shared.config.ephemeral;
        let mut pending = Some(pending);
        for _ in 0..DURABLE_APPEND_ATTEMPTS {
            if durable && mode == PutMode::Append {
                let parent = target.and_then(|t| self.state().names.get(&t.name));
                if let Some(parent) = parent {
                    self.write_flight(parent, true).await?;
                }
            }
            let (flight, seq) = {
                let mut st = self.state();
                let mut shared = Vec::new();
                let mut inputs = Vec::new();
                if let Some(t) = target {
                    match (t.mode, st.names.get(&t.name)) {
                        (PutMode::Error, Some(id)) => return Err(already_exists(&t.name, id)),
                        (PutMode::Append, Some(old)) => {
                            let parent = st.flights.peek(&old).ok_or_else(|| {
                                Error::internal(format!("name {} points at missing flight {old}", t.name))
                            })?;
                            let schema = &pending
                                .as_ref()
                                .ok_or_else(|| Error::internal("no pending flight"))?
                                .schema;
                            if parent.meta.schema.fields() != schema.fields() {
                                return Err(Error::invalid(format!(
                                    "append to {} needs the same schema; existing: {}, uploaded: {}",
                                    t.name, parent.meta.schema, schema
                                )));
                            }
                            if durable && !st.on_disk(&parent.segments) {
                                // The name moved to a flight whose rows are not all on disk yet: write those first.
                                continue;
                            }
                            shared.extend(parent.segments.iter().copied());
                            inputs.push(old);
                        }
                        _ => {}
                    }
                }
                let pending = pending.take().ok_or_else(|| Error::internal("no pending flight"))?;
                let lineage = Lineage::upload(mode.as_str(), inputs);
                let (flight, records) = insert_locked(&mut st, pending, shared, lineage, target.map(|t| &t.name))?;
                (flight, self.journal(&st, records)?)
            };
            self.synced(seq).await?;
            return Ok(flight);
        }
        Err(Error::Cancelled(
            "the flight appended to kept changing while its rows were written to disk; retry the upload".into(),
        ))
    }

    /// Makes a computed flight visible, optionally pointing `name` at it (replacing what it pointed at).
    pub async fn publish_derived(
        &self,
        pending: PendingFlight,
        lineage: Lineage,
        name: Option<&QualifiedName>,
    ) -> Result<Flight> {
        let (flight, seq) = {
            let mut st = self.state();
            let (flight, records) = insert_locked(&mut st, pending, Vec::new(), lineage, name)?;
            (flight, self.journal(&st, records)?)
        };
        self.synced(seq).await?;
        Ok(flight)
    }

    /// Points `name` at an existing flight (replacing what it pointed at). Returns the previous target.
    pub async fn set_name(&self, name: &QualifiedName, id: FlightId) -> Result<Option<FlightId>> {
        let (previous, seq) = {
            let mut st = self.state();
            if !st.flights.contains(&id) {
                return Err(no_such_flight(id));
            }
            let previous = move_name(&mut st, name, id);
            if previous == Some(id) {
                return Ok(previous);
            }
            let record = Record::Name {
                namespace: name.namespace.clone(),
                name: name.name.clone(),
                id: Some(id),
            };
            (previous, self.journal(&st, vec![record])?)
        };
        self.synced(seq).await?;
        Ok(previous)
    }

    /// Drops a flight and every name pointing at it. Readers holding it finish their streams; its files are
    /// deleted after that.
    pub async fn drop_flight(&self, id: FlightId) -> Result<()> {
        let (files, seq) = {
            let mut st = self.state();
            let removed = remove_locked(&mut st, id)?;
            (removed.files, self.journal(&st, removed.records)?)
        };
        self.synced(seq).await?;
        retire(files);
        Ok(())
    }

    /// Deletes a namespace. Without `force` it must be empty; with `force` the flights it names are dropped.
    /// Returns the ids dropped.
    pub async fn delete_namespace(&self, namespace: &str, force: bool) -> Result<Vec<FlightId>> {
        let mut files = Vec::new();
        let mut dropped = Vec::new();
        let seq = {
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
            let mut records = Vec::new();
            for (_, id) in entries {
                if st.flights.contains(&id) {
                    let removed = remove_locked(&mut st, id)?;
                    records.extend(removed.records);
                    files.extend(removed.files);
                    dropped.push(id);
                }
            }
            st.names.remove_namespace(namespace);
            records.push(Record::DeleteNamespace {
                namespace: namespace.to_string(),
            });
            self.journal(&st, records)?
        };
        self.synced(seq).await?;
        retire(files);
        Ok(dropped)
    }
}

pub(super) fn already_exists(name: &QualifiedName, id: FlightId) -> Error {
    Error::AlreadyExists(format!(
        "name {name} already points at flight {id}; upload with mode \"replace\" or \"append\""
    ))
}

/// Points `name` at `id`; a flight that loses its last name this way is superseded. Returns the previous target.
fn move_name(st: &mut State, name: &QualifiedName, id: FlightId) -> Option<FlightId> {
    let previous = st.names.set(name, id);
    if let Some(p) = previous
        && p != id
        && st.names.names_of(p).is_empty()
        && let Some(e) = st.flights.peek_mut(&p)
    {
        e.superseded = true;
    }
    previous
}

/// Inserts a published flight made of the `shared` segments (of a parent it appends to) and the pending one.
/// Returns the flight and the journal lines that record it.
pub(super) fn insert_locked(
    st: &mut State,
    pending: PendingFlight,
    shared: Vec<SegmentId>,
    lineage: Lineage,
    name: Option<&QualifiedName>,
) -> Result<(Flight, Vec<Record>)> {
    let mut records = Vec::new();
    let id = FlightId(st.next_id);
    st.next_id += 1;
    if st.next_id > st.reserved_id {
        st.reserved_id = st.next_id + catalog::ID_BLOCK;
        records.push(Record::NextId { next: st.reserved_id });
    }
    let mut num_rows = pending.num_rows;
    let mut num_bytes = pending.num_bytes;
    for s in &shared {
        let seg = st
            .segments
            .get_mut(s)
            .ok_or_else(|| Error::internal(format!("segment {s} of the parent is missing")))?;
        seg.owners += 1;
        num_rows += seg.rows;
        num_bytes += seg.bytes;
    }
    let mut segments = shared;
    if pending.memory.is_some() || pending.file.is_some() {
        let segment = SegmentId::new();
        let file = pending.file.map(Arc::new);
        if let Some(f) = &file {
            st.disk_bytes += f.bytes;
        }
        let entry = SegmentEntry {
            schema: Arc::clone(&pending.schema),
            rows: pending.num_rows,
            bytes: pending.num_bytes,
            memory: pending.memory.map(Arc::new),
            file,
            owners: 1,
            pins: 0,
            busy: false,
            retry_after: None,
        };
        if entry.file.is_some() {
            records.push(Record::Segment(persist::segment_record(segment, &entry)?));
        }
        st.segments.insert(segment, entry);
        segments.push(segment);
    }
    let namespace = match (lineage.op.as_str(), name) {
        ("upload", Some(n)) => Some(n.namespace.clone()),
        _ => None,
    };
    let segments: Arc<[SegmentId]> = Arc::from(segments);
    let persisted = st.on_disk(&segments);
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
        segments,
        pinned: false,
        persisted,
        superseded: false,
    };
    if persisted {
        records.push(Record::Flight(persist::flight_record(&entry)?));
    }
    let flight = st.flight(id, &entry);
    st.flights.put(id, entry);
    if let Some(name) = name {
        move_name(st, name, id);
        records.push(Record::Name {
            namespace: name.namespace.clone(),
            name: name.name.clone(),
            id: Some(id),
        });
    }
    Ok((flight, records))
}

/// Removes flight `id`, its names, and the segments no other flight holds. Returns the journal lines and the files
/// to retire once those lines are on disk.
pub(super) fn remove_locked(st: &mut State, id: FlightId) -> Result<Removed> {
    let entry = st.flights.pop(&id).ok_or_else(|| no_such_flight(id))?;
    st.names.remove_id(id);
    let mut records = Vec::new();
    let mut files = Vec::new();
    for s in entry.segments.iter() {
        let Some(seg) = st.segments.get_mut(s) else { continue };
        if entry.pinned {
            seg.pins = seg.pins.saturating_sub(1);
        }
        seg.owners = seg.owners.saturating_sub(1);
        if seg.owners == 0
            && let Some(seg) = st.segments.remove(s)
            && let Some(f) = seg.file
        {
            st.disk_bytes = st.disk_bytes.saturating_sub(f.bytes);
            records.push(Record::DropSegment { id: *s });
            files.push(f);
        }
    }
    records.push(Record::DropFlight { id });
    Ok(Removed { records, files })
}
