//! The store's state on disk and back: recovery at startup (the catalog replayed, files it does not list deleted),
//! the catalog records of flights and segments, and the graceful shutdown that writes resident flights out.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lru::LruCache;

use super::catalog::{self, Catalog, FlightRecord, Journal, SegmentRecord};
use super::spill::SegmentFile;
use super::{
    Entry, FlightId, FlightMeta, FlightStore, NameTable, QualifiedName, SegmentEntry, SegmentId, State, StoreConfig,
};
use crate::error::{Error, Result};

/// The lock file in the data directory.
const LOCK_FILE: &str = "LOCK";

impl FlightStore {
    /// On graceful shutdown: stops the background writer, writes every flight that is not wholly on disk (uploads
    /// even past the disk limit: acknowledged means kept; derived flights only within it, being recomputable) and
    /// takes a final catalog snapshot. When ephemeral, removes the per-run directory instead.
    pub async fn close(&self) -> Result<()> {
        self.stop_background().await;
        if self.shared.config.ephemeral {
            // Err means the directory was never created.
            let _ = std::fs::remove_dir_all(&self.shared.spill_dir);
            return Ok(());
        }
        let pending: Vec<(FlightId, bool)> = {
            let st = self.state();
            let mut ids: Vec<_> = st
                .flights
                .iter()
                .filter(|(_, e)| !e.persisted)
                .map(|(id, e)| (*id, e.meta.lineage.op == "upload"))
                .collect();
            // Uploads first: they are what must be kept.
            ids.sort_by_key(|(id, upload)| (!upload, *id));
            ids
        };
        for (id, upload) in pending {
            match self.write_flight(id, upload).await {
                Ok(()) => {}
                Err(e) if upload => {
                    tracing::error!(%id, error = %e, "could not write an acknowledged upload to disk at shutdown");
                }
                Err(e) => {
                    tracing::info!(%id, error = %e, "derived flight not kept at shutdown (it can be recomputed)");
                }
            }
        }
        if let Some(journal) = &self.shared.journal {
            let seq = {
                let mut st = self.state();
                let records = super::background::newly_on_disk(&mut st)?;
                for r in &records {
                    journal.append(r)?;
                }
                journal.snapshot(catalog_of(&st)?)?
            };
            journal.synced(seq).await?;
        }
        Ok(())
    }
}

/// The catalog record of segment `id` (its file must exist).
pub(super) fn segment_record(id: SegmentId, seg: &SegmentEntry) -> Result<SegmentRecord> {
    let file = seg
        .file
        .as_ref()
        .ok_or_else(|| Error::internal(format!("segment {id} has no file to record")))?;
    Ok(SegmentRecord {
        id,
        file: file.path.file_name().map(PathBuf::from).unwrap_or_default(),
        format: file.format,
        rows: seg.rows,
        bytes: seg.bytes,
        file_bytes: file.bytes,
    })
}

/// The catalog record of a flight.
pub(super) fn flight_record(entry: &Entry) -> Result<FlightRecord> {
    let meta = &entry.meta;
    Ok(FlightRecord {
        id: meta.id,
        schema: FlightRecord::encode_schema(&meta.schema)?,
        segments: entry.segments.to_vec(),
        num_rows: meta.num_rows,
        num_bytes: meta.num_bytes,
        lineage: meta.lineage.clone(),
        created_at: meta.created_at.clone(),
        namespace: meta.namespace.clone(),
    })
}

/// The catalog as a snapshot should hold it: flights on disk, their segments and the names pointing at them.
pub(super) fn catalog_of(st: &State) -> Result<Catalog> {
    let mut catalog = Catalog {
        version: catalog::CATALOG_VERSION,
        next_id: st.reserved_id.max(st.next_id),
        ..Catalog::default()
    };
    for (id, e) in st.flights.iter() {
        if e.persisted {
            catalog.flights.insert(*id, flight_record(e)?);
        }
    }
    for (id, seg) in &st.segments {
        if seg.file.is_some() {
            catalog.segments.insert(*id, segment_record(*id, seg)?);
        }
    }
    for ns in st.names.namespaces() {
        let names = st
            .names
            .entries(&ns)
            .into_iter()
            .filter(|(_, id)| catalog.flights.contains_key(id))
            .collect();
        catalog.namespaces.insert(ns, names);
    }
    Ok(catalog)
}

pub(super) struct Loaded {
    pub(super) state: State,
    pub(super) spill_dir: PathBuf,
    pub(super) journal: Option<Journal>,
    pub(super) lock: Option<File>,
}

fn empty_state() -> State {
    State {
        flights: LruCache::unbounded(),
        segments: HashMap::new(),
        names: NameTable::new(),
        next_id: 1,
        reserved_id: 1,
        disk_bytes: 0,
    }
}

/// Takes the data directory's lock: a second server on the same directory would overwrite this one's catalog.
fn lock(data_dir: &Path) -> Result<File> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::invalid(format!(
            "another flightbay server is using the data directory {}; stop it or pick another --data-dir",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io(e)),
    }
}

/// Rebuilds the state from the catalog: every flight whose segment files are all present, the names pointing at
/// them; files no such flight references (torn uploads, unfinished writes, DataFusion's leftovers) are deleted.
pub(super) fn load(config: &StoreConfig) -> Result<Loaded> {
    let mut state = empty_state();
    if config.ephemeral {
        let spill_dir = config.data_dir.join(format!("ephemeral-{}", uuid::Uuid::new_v4()));
        return Ok(Loaded {
            state,
            spill_dir,
            journal: None,
            lock: None,
        });
    }
    let lock = lock(&config.data_dir)?;
    let spill_dir = config.data_dir.join("flights");
    std::fs::create_dir_all(&spill_dir)?;
    let catalog = catalog::load(&config.data_dir)?;
    let mut known: HashSet<PathBuf> = HashSet::new();
    let file_of = |record: &SegmentRecord| -> Option<Arc<SegmentFile>> {
        let name = record.file.file_name()?;
        let path = spill_dir.join(name);
        let bytes = std::fs::metadata(&path).ok()?.len();
        Some(Arc::new(SegmentFile::new(path, bytes, record.format)))
    };
    for record in catalog.flights.values() {
        let schema = match record.decode_schema() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, "skipping flight with an unreadable schema");
                continue;
            }
        };
        let mut files = Vec::new();
        for s in &record.segments {
            match catalog.segments.get(s) {
                Some(seg) if state.segments.contains_key(s) => files.push((*s, seg, None)),
                Some(seg) => match file_of(seg) {
                    Some(f) => files.push((*s, seg, Some(f))),
                    None => break,
                },
                None => break,
            }
        }
        if files.len() != record.segments.len() {
            tracing::warn!(id = %record.id, "skipping flight whose files are missing");
            continue;
        }
        for (id, seg, file) in files {
            let entry = state.segments.entry(id).or_insert_with(|| SegmentEntry {
                schema: Arc::clone(&schema),
                rows: seg.rows,
                bytes: seg.bytes,
                memory: None,
                file: None,
                owners: 0,
                pins: 0,
                busy: false,
                retry_after: None,
            });
            if let Some(f) = file {
                known.insert(f.path.clone());
                state.disk_bytes += f.bytes;
                entry.file = Some(f);
            }
            entry.owners += 1;
        }
        state.flights.put(
            record.id,
            Entry {
                meta: Arc::new(FlightMeta {
                    id: record.id,
                    schema,
                    num_rows: record.num_rows,
                    num_bytes: record.num_bytes,
                    lineage: record.lineage.clone(),
                    created_at: record.created_at.clone(),
                    namespace: record.namespace.clone(),
                }),
                segments: Arc::from(record.segments.clone()),
                pinned: false,
                persisted: true,
                superseded: false,
            },
        );
        state.next_id = state.next_id.max(record.id.0 + 1);
    }
    for (ns, names) in &catalog.namespaces {
        state.names.create_namespace(ns);
        for (name, id) in names {
            if state.flights.contains(id) {
                let name = QualifiedName {
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                state.names.set(&name, *id);
            }
        }
    }
    state.next_id = state.next_id.max(catalog.next_id);
    // The first new id records a new block before it is handed out.
    state.reserved_id = state.next_id;
    remove_unknown(&spill_dir, &known);
    // A snapshot temp file is a write that never finished; the renamed snapshot is the truth.
    let _ = std::fs::remove_file(catalog::path(&config.data_dir).with_extension("json.tmp"));
    let journal = Journal::start(&config.data_dir, catalog_of(&state)?)?;
    Ok(Loaded {
        state,
        spill_dir,
        journal: Some(journal),
        lock: Some(lock),
    })
}

/// Deletes everything in the segment directory that no flight references: files of torn uploads and unfinished
/// writes, orphans of drops interrupted by a crash, and DataFusion's spill files.
fn remove_unknown(spill_dir: &Path, known: &HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(spill_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if known.contains(&path) {
            continue;
        }
        tracing::info!(file = %path.display(), "removing a file no flight references");
        // Err: it vanished meanwhile, which is the goal anyway.
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
