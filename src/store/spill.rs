//! Spill files: one Parquet file per flight, written to a temp name, fsynced and renamed, read back in batches.
//!
//! Every function here blocks; callers run them in `spawn_blocking`. The layout: `<dir>/<uuid>.parquet`, row groups
//! of [`ROW_GROUP_ROWS`] rows so row-range reads skip whole groups, no compression (decoding speed over size).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 262_144;

/// Rows per batch when reading back.
pub const READ_BATCH_ROWS: usize = 65_536;

/// A finished spill file.
#[derive(Debug)]
pub struct SpillFile {
    /// Absolute location.
    pub path: PathBuf,
    /// Size on disk.
    pub bytes: u64,
}

/// An open spill being written: batches go to `<final>.tmp` until [`SpillWriter::finish`] renames it.
pub struct SpillWriter {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for SpillWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

impl SpillWriter {
    /// Creates `<dir>/<uuid>.parquet.tmp` for a flight with `schema`.
    pub fn create(dir: &Path, schema: SchemaRef) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.parquet", uuid::Uuid::new_v4()));
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp)?;
        let writer = ArrowWriter::try_new(file, schema, Some(properties()))?;
        Ok(Self { writer, tmp, path })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        Ok(())
    }

    /// Closes, fsyncs and renames the file into place, then fsyncs the directory.
    pub fn finish(self) -> Result<SpillFile> {
        let file = self.writer.into_inner()?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let bytes = std::fs::metadata(&self.path)?.len();
        Ok(SpillFile { path: self.path, bytes })
    }

    /// Deletes the unfinished file.
    pub fn abort(self) {
        let tmp = self.tmp.clone();
        drop(self.writer);
        // Err means the file is already gone; a leftover .tmp is also removed at the next start.
        let _ = std::fs::remove_file(tmp);
    }
}

/// Writes `batches` to a new spill file in `dir`.
pub fn write_all<'a>(
    dir: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<SpillFile> {
    let mut w = SpillWriter::create(dir, schema)?;
    for b in batches {
        if let Err(e) = w.write(b) {
            w.abort();
            return Err(e);
        }
    }
    w.finish()
}

/// Opens a reader over rows `offset..offset+limit` (all rows when `range` is None).
pub fn reader(
    path: &Path,
    range: Option<(u64, u64)>,
) -> Result<impl Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send + use<>> {
    let file = File::open(path).map_err(|e| Error::internal(format!("spill file missing: {e}")))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(READ_BATCH_ROWS);
    if let Some((offset, length)) = range {
        builder = builder
            .with_offset(usize::try_from(offset).unwrap_or(usize::MAX))
            .with_limit(usize::try_from(length).unwrap_or(usize::MAX));
    }
    Ok(builder.build()?)
}

/// Reads every batch of a spill file.
pub fn read_all(path: &Path) -> Result<Vec<RecordBatch>> {
    Ok(reader(path, None)?.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The Arrow schema stored in a spill file's footer.
pub fn read_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path)?;
    Ok(Arc::clone(ParquetRecordBatchReaderBuilder::try_new(file)?.schema()))
}

/// Streams rows of a spill file: a blocking reader runs in `spawn_blocking` and hands batches over a bounded
/// channel, so at most a few batches are in memory however large the file is.
pub fn stream(path: PathBuf, range: Option<(u64, u64)>) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    tokio::task::spawn_blocking(move || {
        let batches = match reader(&path, range) {
            Ok(r) => r,
            Err(e) => {
                // Err: the client went away; nothing left to tell.
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for batch in batches {
            let failed = batch.is_err();
            if tx.blocking_send(batch.map_err(Error::from)).is_err() || failed {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn round_trip_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |start: i64, n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(start..start + n)),
                    Arc::new(StringArray::from_iter(
                        (start..start + n).map(|i| (i % 3 != 0).then(|| i.to_string())),
                    )),
                ],
            )
            .unwrap()
        };
        let batches = [batch(0, 300_000), batch(300_000, 10)];
        let file = write_all(dir.path(), Arc::clone(&schema), &batches).unwrap();
        assert!(file.bytes > 0);
        assert_eq!(read_schema(&file.path).unwrap(), schema);
        let all = arrow::compute::concat_batches(&schema, &read_all(&file.path).unwrap()).unwrap();
        assert_eq!(all, arrow::compute::concat_batches(&schema, &batches).unwrap());
        let part: Vec<RecordBatch> = reader(&file.path, Some((299_995, 10)))
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(
            arrow::compute::concat_batches(&schema, &part).unwrap(),
            batch(299_995, 10)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }
}
