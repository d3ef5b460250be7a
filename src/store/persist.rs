//! The store's state on disk and back: `catalog.json` (through [`catalog`]) written after every change that must
//! survive a restart, resident flights written out on a graceful shutdown, and the state rebuilt at startup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lru::LruCache;

use super::spill::{self, SpillFile};
use super::{
    Entry, FlightId, FlightMeta, FlightStore, NameTable, QualifiedName, State, StoreConfig, catalog, flight_has_file,
};
use crate::error::{Error, Result};

impl FlightStore {
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

pub(super) struct Loaded {
    pub(super) state: State,
    pub(super) spill_dir: PathBuf,
}

/// Reads the catalog and the spill directory: temp files of interrupted writes and files no catalog entry
/// references are deleted; flights whose file is missing or unreadable are skipped with a warning.
pub(super) fn load(config: &StoreConfig) -> Result<Loaded> {
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
