//! The catalog file: what must survive a restart — the id counter, names, and every flight that has a spill file
//! (id, file, sizes, lineage, creation time). The schema lives in each Parquet file's footer.
//!
//! Written atomically to `<data-dir>/catalog.json` (temp file, fsync, rename, fsync directory), so a crash leaves
//! either the old or the new catalog, never a torn one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{FlightId, Lineage};

/// Format version of `catalog.json`.
pub const CATALOG_VERSION: u32 = 1;

/// Ids are reserved in blocks of this size, so the counter on disk is always ahead of every id handed out.
pub const ID_BLOCK: u64 = 1024;

/// The persisted catalog.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CatalogFile {
    /// Format version.
    pub version: u32,
    /// No id below this was or will be handed out by an earlier run.
    pub next_id: u64,
    /// namespace → name → id.
    pub namespaces: BTreeMap<String, BTreeMap<String, FlightId>>,
    /// Flights stored on disk.
    pub flights: Vec<CatalogFlight>,
}

/// One flight in the catalog.
#[derive(Debug, Serialize, Deserialize)]
pub struct CatalogFlight {
    /// Flight id.
    pub id: FlightId,
    /// Spill file, relative to the data directory.
    pub file: PathBuf,
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

/// Path of the catalog in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog.json")
}

/// Reads the catalog, or `None` when there is none yet.
pub fn load(data_dir: &Path) -> Result<Option<CatalogFile>> {
    let p = path(data_dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let catalog: CatalogFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("catalog {} is unreadable: {e}", p.display())))?;
    if catalog.version != CATALOG_VERSION {
        return Err(Error::internal(format!(
            "catalog {} has version {}, this flightbay reads version {CATALOG_VERSION}",
            p.display(),
            catalog.version
        )));
    }
    Ok(Some(catalog))
}

/// Writes the catalog atomically.
pub fn store(data_dir: &Path, catalog: &CatalogFile) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let p = path(data_dir);
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(catalog).map_err(|e| Error::internal(e.to_string()))?;
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &p)?;
    File::open(data_dir)?.sync_all()?;
    Ok(())
}
