//! The catalog on disk: what must survive a restart — the id counter, names, segment files and the flights made of
//! them — as a snapshot (`catalog.json`) plus an append-only journal (`journal-<generation>.log`).
//!
//! Every change is one journal line, `<crc32 hex> <json>\n`, so its cost does not grow with the number of flights.
//! A thread owns the journal and commits in groups: the lines queued while it was writing go out together, with one
//! `fdatasync`, and every waiter of the group is answered. When the journal outgrows the snapshot, the store hands
//! the thread a new snapshot (taken under its state lock, in journal order), which is written atomically as the
//! next generation (temp file, fsync, rename, fsync directory) before a new, empty journal starts.
//!
//! Loading reads the snapshot and replays its generation's journal up to the first line that does not check out (a
//! torn tail); records are idempotent, so replaying one the snapshot already holds is harmless. Version 1 catalogs
//! (one Parquet file per flight, no journal) are read too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::spill::Format;
use super::{FlightId, Lineage, SegmentId};
use crate::error::{Error, Result};

/// Format version of `catalog.json`.
pub const CATALOG_VERSION: u32 = 2;

/// Ids are reserved in blocks of this size, so the counter on disk is always ahead of every id handed out.
pub const ID_BLOCK: u64 = 1024;

/// Journal bytes after which a new snapshot is taken (or twice the last snapshot, if larger).
const COMPACT_AFTER_BYTES: u64 = 4 << 20;

/// A segment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// The segment.
    pub id: SegmentId,
    /// File, relative to the data directory.
    pub file: PathBuf,
    /// Its encoding.
    pub format: Format,
    /// Rows.
    pub rows: u64,
    /// In-memory size of the rows.
    pub bytes: u64,
    /// Size on disk.
    pub file_bytes: u64,
}

/// A flight whose every segment has a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlightRecord {
    /// Flight id.
    pub id: FlightId,
    /// Arrow schema as a base64 IPC stream holding only the schema.
    pub schema: String,
    /// Its segments, in row order.
    pub segments: Vec<SegmentId>,
    /// Rows.
    pub num_rows: u64,
    /// In-memory size.
    pub num_bytes: u64,
    /// How it was made.
    pub lineage: Lineage,
    /// Creation time.
    pub created_at: String,
    /// Namespace an upload was made in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl FlightRecord {
    /// Encodes a schema for [`FlightRecord::schema`].
    pub fn encode_schema(schema: &arrow::datatypes::Schema) -> Result<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(super::spill::schema_to_bytes(schema)?))
    }

    /// Decodes [`FlightRecord::schema`].
    pub fn decode_schema(&self) -> Result<arrow::datatypes::SchemaRef> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.schema)
            .map_err(|e| Error::internal(format!("flight {}: bad schema in the catalog: {e}", self.id)))?;
        super::spill::schema_from_bytes(&bytes)
    }
}

/// One change, as a journal line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// A segment got a file (or a new one, replacing the old).
    Segment(SegmentRecord),
    /// A segment and its file are gone.
    DropSegment {
        /// The segment.
        id: SegmentId,
    },
    /// A flight is on disk.
    Flight(FlightRecord),
    /// A flight is gone (with every name pointing at it).
    DropFlight {
        /// The flight.
        id: FlightId,
    },
    /// A name moved (`id` None: removed).
    Name {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Target.
        id: Option<FlightId>,
    },
    /// A namespace and its names are gone.
    DeleteNamespace {
        /// Namespace.
        namespace: String,
    },
    /// Ids below `next` are reserved.
    NextId {
        /// The new bound.
        next: u64,
    },
}

/// The catalog's content, as loaded and as written in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Format version.
    pub version: u32,
    /// Which journal continues this snapshot.
    pub generation: u64,
    /// No id below this was or will be handed out by an earlier run.
    pub next_id: u64,
    /// namespace → name → id.
    pub namespaces: BTreeMap<String, BTreeMap<String, FlightId>>,
    /// Segment files.
    #[serde(with = "as_list")]
    pub segments: BTreeMap<SegmentId, SegmentRecord>,
    /// Flights on disk.
    #[serde(with = "as_list")]
    pub flights: BTreeMap<FlightId, FlightRecord>,
}

/// Maps serialized as lists of their values (the keys are inside the values).
mod as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub trait Keyed {
        type Key: Ord;
        fn key(&self) -> Self::Key;
    }

    impl Keyed for super::SegmentRecord {
        type Key = super::SegmentId;
        fn key(&self) -> Self::Key {
            self.id
        }
    }

    impl Keyed for super::FlightRecord {
        type Key = super::FlightId;
        fn key(&self) -> Self::Key {
            self.id
        }
    }

    pub fn serialize<K, V: Serialize, S: Serializer>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, V, D>(d: D) -> Result<BTreeMap<V::Key, V>, D::Error>
    where
        V: Keyed + Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<V>::deserialize(d)?.into_iter().map(|v| (v.key(), v)).collect())
    }
}

impl Catalog {
    /// Applies one journal record.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Segment(s) => {
                self.segments.insert(s.id, s);
            }
            Record::DropSegment { id } => {
                self.segments.remove(&id);
            }
            Record::Flight(f) => {
                self.flights.insert(f.id, f);
            }
            Record::DropFlight { id } => {
                self.flights.remove(&id);
                for names in self.namespaces.values_mut() {
                    names.retain(|_, target| *target != id);
                }
            }
            Record::Name { namespace, name, id } => match id {
                Some(id) => {
                    self.namespaces.entry(namespace).or_default().insert(name, id);
                }
                None => {
                    if let Some(names) = self.namespaces.get_mut(&namespace) {
                        names.remove(&name);
                    }
                }
            },
            Record::DeleteNamespace { namespace } => {
                self.namespaces.remove(&namespace);
            }
            Record::NextId { next } => self.next_id = self.next_id.max(next),
        }
    }
}

/// Path of the snapshot in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog.json")
}

fn journal_path(data_dir: &Path, generation: u64) -> PathBuf {
    data_dir.join(format!("journal-{generation}.log"))
}

/// The v1 catalog: one Parquet file per flight, schema in the file.
#[derive(Deserialize)]
struct CatalogV1 {
    next_id: u64,
    namespaces: BTreeMap<String, BTreeMap<String, FlightId>>,
    flights: Vec<FlightV1>,
}

#[derive(Deserialize)]
struct FlightV1 {
    id: FlightId,
    file: PathBuf,
    num_rows: u64,
    num_bytes: u64,
    lineage: Lineage,
    created_at: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Reads the snapshot and replays its journal; an empty catalog when there is none yet.
pub fn load(data_dir: &Path) -> Result<Catalog> {
    let p = path(data_dir);
    let mut catalog = match std::fs::read(&p) {
        Ok(bytes) => parse_snapshot(data_dir, &bytes)
            .map_err(|e| Error::internal(format!("catalog {} is unreadable: {e}", p.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog {
            version: CATALOG_VERSION,
            ..Catalog::default()
        },
        Err(e) => return Err(e.into()),
    };
    let journal = journal_path(data_dir, catalog.generation);
    match File::open(&journal) {
        Ok(f) => {
            for line in BufReader::new(f).split(b'\n') {
                match parse_line(&line?) {
                    Some(record) => catalog.apply(record),
                    None => {
                        tracing::warn!(journal = %journal.display(), "ignoring a torn journal tail");
                        break;
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(catalog)
}

fn parse_snapshot(data_dir: &Path, bytes: &[u8]) -> std::result::Result<Catalog, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match version.version {
        CATALOG_VERSION => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        1 => {
            let v1: CatalogV1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            upgrade_v1(data_dir, v1)
        }
        other => Err(format!(
            "version {other}; this flightbay reads versions 1 and {CATALOG_VERSION}"
        )),
    }
}

/// Each v1 flight becomes a flight of one Parquet segment; schemas come from the files' footers.
fn upgrade_v1(data_dir: &Path, v1: CatalogV1) -> std::result::Result<Catalog, String> {
    let mut catalog = Catalog {
        version: CATALOG_VERSION,
        generation: 0,
        next_id: v1.next_id,
        namespaces: v1.namespaces,
        ..Catalog::default()
    };
    for f in v1.flights {
        let file = data_dir.join(&f.file);
        let schema = match super::spill::read_schema(&file, Format::Parquet) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = %f.id, file = %file.display(), error = %e, "skipping flight whose file is unreadable");
                continue;
            }
        };
        let segment = SegmentId::new();
        let file_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        catalog.segments.insert(
            segment,
            SegmentRecord {
                id: segment,
                file: f.file,
                format: Format::Parquet,
                rows: f.num_rows,
                bytes: f.num_bytes,
                file_bytes,
            },
        );
        catalog.flights.insert(
            f.id,
            FlightRecord {
                id: f.id,
                schema: FlightRecord::encode_schema(&schema).map_err(|e| e.to_string())?,
                segments: vec![segment],
                num_rows: f.num_rows,
                num_bytes: f.num_bytes,
                lineage: f.lineage,
                created_at: f.created_at,
                namespace: f.namespace,
            },
        );
    }
    Ok(catalog)
}

fn encode_line(record: &Record) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(record).map_err(|e| Error::internal(e.to_string()))?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if line.get(8) != Some(&b' ') || crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Writes `catalog` as the snapshot atomically.
fn write_snapshot(data_dir: &Path, catalog: &Catalog) -> Result<u64> {
    std::fs::create_dir_all(data_dir)?;
    let p = path(data_dir);
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec(catalog).map_err(|e| Error::internal(e.to_string()))?;
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &p)?;
    File::open(data_dir)?.sync_all()?;
    Ok(bytes.len() as u64)
}

enum Msg {
    Append(Vec<u8>),
    Compact(Box<Catalog>),
}

/// Where the journal thread reports progress: the sequence number of the last line on disk, and whether lines
/// after it were lost to a write error.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    synced: u64,
    /// Lines up to this sequence number failed to reach disk.
    failed_through: u64,
}

/// The journal (see the module docs). Appends are queued in the order they are made; [`Journal::synced`] waits
/// until a line is on disk.
#[derive(Debug)]
pub struct Journal {
    /// The sender and the sequence number of the last line queued, under one lock so numbers follow queue order.
    queue: Mutex<(std::sync::mpsc::Sender<Msg>, u64)>,
    progress: tokio::sync::watch::Receiver<Progress>,
    wants_snapshot: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
}

impl Journal {
    /// Writes `catalog` as the next generation's snapshot, removes older journals and starts a new, empty one.
    pub fn start(data_dir: &Path, mut catalog: Catalog) -> Result<Self> {
        catalog.generation += 1;
        catalog.version = CATALOG_VERSION;
        let snapshot_bytes = write_snapshot(data_dir, &catalog)?;
        remove_other_journals(data_dir, catalog.generation);
        let file = open_journal(data_dir, catalog.generation)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (progress_tx, progress) = tokio::sync::watch::channel(Progress::default());
        let wants_snapshot = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let writer = JournalThread {
            data_dir: data_dir.to_path_buf(),
            generation: catalog.generation,
            file,
            written: 0,
            limit: COMPACT_AFTER_BYTES.max(snapshot_bytes * 2),
            seq: 0,
            progress: progress_tx,
            wants_snapshot: Arc::clone(&wants_snapshot),
            error: Arc::clone(&error),
        };
        std::thread::Builder::new()
            .name("flightbay-journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            queue: Mutex::new((tx, 0)),
            progress,
            wants_snapshot,
            error,
        })
    }

    /// Queues `record`; returns its sequence number for [`Journal::synced`].
    pub fn append(&self, record: &Record) -> Result<u64> {
        let line = encode_line(record)?;
        self.send(Msg::Append(line))
    }

    /// Queues a new snapshot; lines queued after it go to the next generation's journal.
    pub fn snapshot(&self, catalog: Catalog) -> Result<u64> {
        self.wants_snapshot.store(false, Ordering::Relaxed);
        self.send(Msg::Compact(Box::new(catalog)))
    }

    fn send(&self, msg: Msg) -> Result<u64> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue
            .0
            .send(msg)
            .map_err(|_| Error::internal("the catalog journal stopped"))?;
        queue.1 += 1;
        Ok(queue.1)
    }

    /// Whether the journal has grown enough that the store should hand it a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.wants_snapshot.load(Ordering::Relaxed)
    }

    /// Waits until line `seq` (and every line before it) is on disk.
    pub async fn synced(&self, seq: u64) -> Result<()> {
        let mut progress = self.progress.clone();
        let p = *progress
            .wait_for(|p| p.synced >= seq || p.failed_through >= seq)
            .await
            .map_err(|_| Error::internal("the catalog journal stopped"))?;
        if p.synced >= seq {
            return Ok(());
        }
        let why = self
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        Err(Error::Io(std::io::Error::other(format!(
            "writing the catalog journal: {why}"
        ))))
    }
}

fn open_journal(data_dir: &Path, generation: u64) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal_path(data_dir, generation))?;
    File::open(data_dir)?.sync_all()?;
    Ok(f)
}

fn remove_other_journals(data_dir: &Path, keep: u64) {
    let keep = journal_path(data_dir, keep);
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("journal-") && name.ends_with(".log") && p != keep {
                // Err: already gone.
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

struct JournalThread {
    data_dir: PathBuf,
    generation: u64,
    file: File,
    written: u64,
    limit: u64,
    seq: u64,
    progress: tokio::sync::watch::Sender<Progress>,
    wants_snapshot: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
}

impl JournalThread {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut buffer = Vec::new();
            let mut result = Ok(());
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                self.seq += 1;
                match msg {
                    Msg::Append(line) => buffer.extend_from_slice(&line),
                    Msg::Compact(catalog) => {
                        result = result
                            .and_then(|()| self.flush(&mut buffer))
                            .and_then(|()| self.compact(*catalog));
                    }
                }
            }
            result = result.and_then(|()| self.flush(&mut buffer));
            match result {
                Ok(()) => self.progress.send_modify(|p| p.synced = self.seq),
                Err(e) => {
                    tracing::warn!(error = %e, "catalog journal write failed; a new snapshot will follow");
                    *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    // What was written of the failed group may be torn; the next snapshot rewrites everything.
                    self.wants_snapshot.store(true, Ordering::Relaxed);
                    self.progress.send_modify(|p| p.failed_through = self.seq);
                }
            }
            if self.written > self.limit {
                self.wants_snapshot.store(true, Ordering::Relaxed);
            }
        }
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all(buffer)?;
        self.file.sync_data()?;
        self.written += buffer.len() as u64;
        buffer.clear();
        Ok(())
    }

    fn compact(&mut self, mut catalog: Catalog) -> Result<()> {
        catalog.generation = self.generation + 1;
        catalog.version = CATALOG_VERSION;
        let bytes = write_snapshot(&self.data_dir, &catalog)?;
        self.generation = catalog.generation;
        self.file = open_journal(&self.data_dir, self.generation)?;
        remove_other_journals(&self.data_dir, self.generation);
        self.written = 0;
        self.limit = COMPACT_AFTER_BYTES.max(bytes * 2);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ns: &str, n: &str, id: Option<u64>) -> Record {
        Record::Name {
            namespace: ns.into(),
            name: n.into(),
            id: id.map(FlightId),
        }
    }

    #[tokio::test]
    async fn journal_replays_after_restart_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::start(dir.path(), load(dir.path()).unwrap()).unwrap();
        journal.append(&Record::NextId { next: 1024 }).unwrap();
        journal.append(&name("default", "a", Some(1))).unwrap();
        journal.append(&name("sales", "b", Some(2))).unwrap();
        let last = journal.append(&Record::DropFlight { id: FlightId(2) }).unwrap();
        journal.synced(last).await.unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.next_id, 1024);
        assert_eq!(loaded.namespaces["default"]["a"], FlightId(1));
        assert!(loaded.namespaces["sales"].is_empty());

        // a snapshot starts a new generation; later lines go to its journal
        let mut snap = loaded.clone();
        snap.apply(name("default", "c", Some(3)));
        journal.snapshot(snap).unwrap();
        let last = journal.append(&name("default", "d", Some(4))).unwrap();
        journal.synced(last).await.unwrap();
        let reloaded = load(dir.path()).unwrap();
        assert_eq!(reloaded.generation, loaded.generation + 1);
        assert_eq!(reloaded.namespaces["default"].len(), 3, "{reloaded:?}");
        let journals: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
            .collect();
        assert_eq!(journals.len(), 1, "old journals removed");
    }

    #[test]
    fn torn_or_corrupt_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        bytes.extend(encode_line(&name("default", "a", Some(1))).unwrap());
        bytes.extend(encode_line(&name("default", "b", Some(2))).unwrap());
        let mut corrupt = encode_line(&name("default", "c", Some(3))).unwrap();
        corrupt[12] ^= 1;
        bytes.extend(corrupt);
        bytes.extend(encode_line(&name("default", "d", Some(4))).unwrap());
        bytes.extend(&encode_line(&name("default", "e", Some(5))).unwrap()[..20]);
        std::fs::write(journal_path(dir.path(), 0), bytes).unwrap();
        let loaded = load(dir.path()).unwrap();
        let names: Vec<&String> = loaded.namespaces["default"].keys().collect();
        assert_eq!(names, ["a", "b"], "replay stops at the first bad line");
    }

    #[test]
    fn records_are_idempotent() {
        let mut once = Catalog::default();
        let mut twice = Catalog::default();
        let records = [
            Record::NextId { next: 10 },
            name("x", "a", Some(1)),
            Record::DropFlight { id: FlightId(1) },
            Record::DeleteNamespace { namespace: "x".into() },
        ];
        for r in &records {
            once.apply(r.clone());
            twice.apply(r.clone());
            twice.apply(r.clone());
        }
        assert_eq!(once, twice);
    }
}
