//! Segment files: the on-disk form of one segment, written to a temp name, fsynced and renamed, read back as a
//! stream of batches (whole, or a row range, optionally projected).
//!
//! Two formats:
//! - **Parquet** (`<uuid>.parquet`), the at-rest format: row groups of [`ROW_GROUP_ROWS`] rows so row-range reads
//!   skip whole groups, neither compression nor dictionary encoding (writing and reading speed over size).
//! - **Arrow IPC stream** (`<uuid>.arrows`): what is written under pressure — write-behind, uploads too large for
//!   memory, durable upload logs ([`super::log`]) — because writing it is little more than copying the buffers
//!   (about five times faster than Parquet here). The background writer converts these files to Parquet while the
//!   server is idle. Schemas Parquet cannot hold exactly (unions, month-day-nano intervals, run-end encoding, zero
//!   columns; see [`parquet_holds`]) stay in IPC ([`Format::at_rest`]).
//!
//! Every function here blocks; callers run them in `spawn_blocking` (or use [`stream`]).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::{DataType, IntervalUnit, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 262_144;

/// Rows per batch when reading back.
pub const READ_BATCH_ROWS: usize = 65_536;

/// How a segment file is encoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Apache Parquet, one file per segment.
    Parquet,
    /// An Arrow IPC stream (schema, dictionaries, record batches, end marker).
    Ipc,
}

impl Format {
    /// The format a segment with `schema` is kept in at rest: Parquet when it holds every column exactly, else
    /// Arrow IPC.
    pub fn at_rest(schema: &Schema) -> Self {
        if !schema.fields().is_empty() && schema.fields().iter().all(|f| parquet_holds(f.data_type())) {
            Format::Parquet
        } else {
            Format::Ipc
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ipc => "arrows",
        }
    }
}

/// Whether a column of type `t` comes back from Parquet exactly as it went in (checked for every type by the
/// type-matrix test below). Parquet has no unions, its INTERVAL is months/days/milliseconds (no nanoseconds), and
/// arrow-rs writes run-end encoded columns as plain values.
pub fn parquet_holds(t: &DataType) -> bool {
    match t {
        DataType::Union(_, _) | DataType::RunEndEncoded(_, _) => false,
        DataType::Interval(IntervalUnit::MonthDayNano) => false,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => parquet_holds(f.data_type()),
        DataType::Struct(fields) => !fields.is_empty() && fields.iter().all(|f| parquet_holds(f.data_type())),
        DataType::Dictionary(_, value) => parquet_holds(value),
        _ => true,
    }
}

/// A finished segment file. Deleted from disk when the last holder drops it after [`SegmentFile::retire`]: readers
/// that still stream it finish first.
#[derive(Debug)]
pub struct SegmentFile {
    /// Absolute location.
    pub path: PathBuf,
    /// Size on disk.
    pub bytes: u64,
    /// Encoding.
    pub format: Format,
    retired: AtomicBool,
}

impl SegmentFile {
    /// A file that exists at `path`.
    pub fn new(path: PathBuf, bytes: u64, format: Format) -> Self {
        Self {
            path,
            bytes,
            format,
            retired: AtomicBool::new(false),
        }
    }

    /// No catalog entry references this file any more: delete it once nobody reads it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // Err means it is already gone; a leftover is removed at the next start as an orphan.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Encoder {
    Parquet(ArrowWriter<File>),
    Ipc(StreamWriter<BufWriter<File>>),
}

/// An open segment file being written: batches go to `<final>.tmp` until [`SpillWriter::finish`] renames it.
pub struct SpillWriter {
    /// `None` once finished.
    encoder: Option<Encoder>,
    format: Format,
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

/// Spill files are written under memory pressure, so they favour speed: no compression and no dictionary encoding
/// (which hashed every value and took about half the time of writing a 10M-row flight, for columns that mostly
/// fell back to plain encoding anyway).
fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// `<dir>/<uuid>.<ext>` for a new segment file.
pub fn new_path(dir: &Path, format: Format) -> PathBuf {
    dir.join(format!("{}.{}", uuid::Uuid::new_v4(), format.extension()))
}

/// The temp name a file is written under before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Fsyncs `file`, renames `tmp` to `path` and fsyncs the directory: after this the file survives a crash.
pub fn commit(file: File, tmp: &Path, path: &Path) -> Result<u64> {
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(std::fs::metadata(path)?.len())
}

impl SpillWriter {
    /// Creates a temp file in `dir` for a segment with `schema`, in `format`.
    pub fn create(dir: &Path, schema: SchemaRef, format: Format) -> Result<Self> {
        let format = match format {
            Format::Parquet if Format::at_rest(&schema) == Format::Parquet => Format::Parquet,
            _ => Format::Ipc,
        };
        std::fs::create_dir_all(dir)?;
        let path = new_path(dir, format);
        let tmp = temp_path(&path);
        let file = File::create(&tmp)?;
        let encoder = match format {
            Format::Parquet => Encoder::Parquet(ArrowWriter::try_new(file, schema, Some(parquet_properties()))?),
            Format::Ipc => Encoder::Ipc(StreamWriter::try_new(BufWriter::new(file), &schema)?),
        };
        Ok(Self {
            encoder: Some(encoder),
            format,
            tmp,
            path,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.encoder {
            Some(Encoder::Parquet(w)) => w.write(batch)?,
            Some(Encoder::Ipc(w)) => w.write(batch)?,
            None => return Err(Error::internal("segment file already finished")),
        }
        Ok(())
    }

    /// Closes, fsyncs and renames the file into place, then fsyncs the directory.
    pub fn finish(mut self) -> Result<SegmentFile> {
        let file = match self.encoder.take() {
            Some(Encoder::Parquet(w)) => w.into_inner()?,
            Some(Encoder::Ipc(mut w)) => {
                w.finish()?;
                w.into_inner()?.into_inner().map_err(|e| Error::Io(e.into_error()))?
            }
            None => return Err(Error::internal("segment file already finished")),
        };
        let bytes = commit(file, &self.tmp, &self.path)?;
        Ok(SegmentFile::new(self.path.clone(), bytes, self.format))
    }
}

impl Drop for SpillWriter {
    fn drop(&mut self) {
        if self.encoder.take().is_some() {
            // An unfinished file. Err means it is already gone (a leftover .tmp is also removed at the next start).
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `batches` to a new segment file in `dir`, in `format` (Parquet only if it holds the schema exactly).
pub fn write_all<'a>(
    dir: &Path,
    schema: SchemaRef,
    format: Format,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<SegmentFile> {
    let mut w = SpillWriter::create(dir, schema, format)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// Rows `offset..offset+length` of a file (all rows when `range` is None), only the `projection` columns if given.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Opens a reader over `file`.
pub fn reader(
    path: &Path,
    format: Format,
    range: Option<(u64, u64)>,
    projection: Option<&[usize]>,
) -> Result<BatchIter> {
    let file = File::open(path).map_err(|e| Error::internal(format!("segment file missing: {e}")))?;
    match format {
        Format::Parquet => parquet_reader(file, range, projection),
        Format::Ipc => ipc_reader(file, range, projection),
    }
}

fn parquet_reader(file: File, range: Option<(u64, u64)>, projection: Option<&[usize]>) -> Result<BatchIter> {
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(READ_BATCH_ROWS);
    if let Some(columns) = projection {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some((offset, length)) = range {
        // Only the row groups that hold the range are read; the offset is then counted from the first of them.
        let mut groups = Vec::new();
        let mut start = 0u64;
        let mut skip = None;
        for (i, group) in builder.metadata().row_groups().iter().enumerate() {
            let rows = u64::try_from(group.num_rows()).unwrap_or(0);
            if start + rows > offset && start < offset.saturating_add(length) {
                if skip.is_none() {
                    skip = Some(offset.saturating_sub(start));
                }
                groups.push(i);
            }
            start += rows;
        }
        builder = builder
            .with_row_groups(groups)
            .with_offset(usize::try_from(skip.unwrap_or(0)).unwrap_or(usize::MAX))
            .with_limit(usize::try_from(length).unwrap_or(usize::MAX));
    }
    Ok(Box::new(builder.build()?.map(|b| b.map_err(Error::from))))
}

fn ipc_reader(file: File, range: Option<(u64, u64)>, projection: Option<&[usize]>) -> Result<BatchIter> {
    let reader = StreamReader::try_new(
        BufReader::with_capacity(1 << 20, file),
        projection.map(<[usize]>::to_vec),
    )?;
    let batches = reader.map(|b| b.map_err(Error::from));
    let Some((offset, length)) = range else {
        return Ok(Box::new(batches));
    };
    let (mut skip, mut want) = (offset, length);
    Ok(Box::new(
        batches
            .map_while(move |batch| {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => return Some(Some(Err(e))),
                };
                if want == 0 {
                    return None;
                }
                let rows = batch.num_rows() as u64;
                if skip >= rows {
                    skip -= rows;
                    return Some(None);
                }
                let take = (rows - skip).min(want);
                let piece = batch.slice(skip as usize, take as usize);
                skip = 0;
                want -= take;
                Some(Some(Ok(piece)))
            })
            .flatten(),
    ))
}

/// Reads every batch of a segment file.
pub fn read_all(path: &Path, format: Format) -> Result<Vec<RecordBatch>> {
    reader(path, format, None, None)?.collect()
}

/// The Arrow schema stored in a segment file.
pub fn read_schema(path: &Path, format: Format) -> Result<SchemaRef> {
    let file = File::open(path)?;
    Ok(match format {
        Format::Parquet => Arc::clone(ParquetRecordBatchReaderBuilder::try_new(file)?.schema()),
        Format::Ipc => StreamReader::try_new(BufReader::new(file), None)?.schema(),
    })
}

/// A schema as the bytes of an Arrow IPC stream holding only it (for the catalog).
pub fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    w.finish()?;
    Ok(w.into_inner()?)
}

/// The inverse of [`schema_to_bytes`].
pub fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    Ok(StreamReader::try_new(std::io::Cursor::new(bytes), None)?.schema())
}

/// Streams a segment file: a blocking reader runs in `spawn_blocking` and hands batches over a bounded channel, so
/// at most a few batches are in memory however large the file is. `keep` (the file's handle) lives as long as the
/// reader, so a file retired meanwhile is deleted only after the read.
pub fn stream<K: Send + 'static>(
    keep: K,
    path: PathBuf,
    format: Format,
    range: Option<(u64, u64)>,
    projection: Option<Vec<usize>>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    tokio::task::spawn_blocking(move || {
        let _keep = keep;
        let batches = match reader(&path, format, range, projection.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                // Err: the reader went away; nothing left to tell.
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for batch in batches {
            let failed = batch.is_err();
            if tx.blocking_send(batch).is_err() || failed {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes `bytes` of raw content and the given messages; used by tests to build torn files.
#[cfg(test)]
pub(crate) fn write_raw(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::*;
    use arrow::buffer::{OffsetBuffer, ScalarBuffer};
    use arrow::datatypes::*;

    fn batch_of(array: ArrayRef) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("c", array.data_type().clone(), true)]));
        RecordBatch::try_new(schema, vec![array]).unwrap()
    }

    fn round_trip(batch: &RecordBatch, format: Format) -> Result<RecordBatch> {
        let dir = tempfile::tempdir().unwrap();
        let schema = batch.schema();
        let path = new_path(dir.path(), format);
        let mut w = SpillWriter {
            encoder: Some(match format {
                Format::Parquet => Encoder::Parquet(ArrowWriter::try_new(
                    File::create(temp_path(&path))?,
                    Arc::clone(&schema),
                    Some(parquet_properties()),
                )?),
                Format::Ipc => Encoder::Ipc(StreamWriter::try_new(
                    BufWriter::new(File::create(temp_path(&path))?),
                    &schema,
                )?),
            }),
            format,
            tmp: temp_path(&path),
            path,
        };
        w.write(batch)?;
        let file = w.finish()?;
        let back = read_all(&file.path, format)?;
        assert_eq!(read_schema(&file.path, format)?, schema);
        let rows: usize = back.iter().map(|b| b.num_rows()).sum();
        Ok(match back.len() {
            1 => back.into_iter().next().unwrap(),
            _ if rows == 0 && back.is_empty() => RecordBatch::new_empty(schema),
            _ => arrow::compute::concat_batches(&schema, &back)?,
        })
    }

    /// One column of every Arrow type flightbay may be given.
    fn type_matrix() -> Vec<(&'static str, ArrayRef)> {
        let strings = StringArray::from(vec![Some("a"), None, Some("ccc")]);
        let ints = Int32Array::from(vec![Some(1), None, Some(3)]);
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)]), None, Some(vec![])]);
        let struct_array = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Int32, true)),
            Arc::new(ints.clone()) as ArrayRef,
        )]);
        let dense_union = UnionArray::try_new(
            [
                (0, Arc::new(Field::new("i", DataType::Int32, true))),
                (1, Arc::new(Field::new("s", DataType::Utf8, true))),
            ]
            .into_iter()
            .collect(),
            ScalarBuffer::from(vec![0i8, 1, 0]),
            Some(ScalarBuffer::from(vec![0i32, 0, 1])),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["x"])),
            ],
        )
        .unwrap();
        let run_ends =
            RunArray::<Int32Type>::try_new(&Int32Array::from(vec![2, 3]), &StringArray::from(vec!["run", "end"]))
                .unwrap();
        let map = {
            let keys = StringArray::from(vec!["k1", "k2"]);
            let values = Int32Array::from(vec![1, 2]);
            let entries = StructArray::from(vec![
                (
                    Arc::new(Field::new("keys", DataType::Utf8, false)),
                    Arc::new(keys) as ArrayRef,
                ),
                (
                    Arc::new(Field::new("values", DataType::Int32, true)),
                    Arc::new(values) as ArrayRef,
                ),
            ]);
            MapArray::try_new(
                Arc::new(Field::new("entries", entries.data_type().clone(), false)),
                OffsetBuffer::new(ScalarBuffer::from(vec![0i32, 1, 1, 2])),
                entries,
                None,
                false,
            )
            .unwrap()
        };
        vec![
            ("null", Arc::new(NullArray::new(3))),
            (
                "bool",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            ("int8", Arc::new(Int8Array::from(vec![Some(-1), None, Some(1)]))),
            ("int16", Arc::new(Int16Array::from(vec![Some(-1), None, Some(1)]))),
            ("int32", Arc::new(ints.clone())),
            (
                "int64",
                Arc::new(Int64Array::from(vec![Some(-1), None, Some(i64::MAX)])),
            ),
            ("uint8", Arc::new(UInt8Array::from(vec![Some(0), None, Some(255)]))),
            ("uint16", Arc::new(UInt16Array::from(vec![Some(0), None, Some(65535)]))),
            (
                "uint32",
                Arc::new(UInt32Array::from(vec![Some(0), None, Some(u32::MAX)])),
            ),
            (
                "uint64",
                Arc::new(UInt64Array::from(vec![Some(0), None, Some(u64::MAX)])),
            ),
            (
                "float16",
                arrow::compute::cast(
                    &Float32Array::from(vec![Some(1.5), None, Some(-2.0)]),
                    &DataType::Float16,
                )
                .unwrap(),
            ),
            (
                "float32",
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(f32::NAN)])),
            ),
            (
                "float64",
                Arc::new(Float64Array::from(vec![Some(-0.0), None, Some(f64::INFINITY)])),
            ),
            (
                "decimal32",
                Arc::new(
                    Decimal32Array::from(vec![Some(12), None, Some(-3)])
                        .with_precision_and_scale(9, 2)
                        .unwrap(),
                ),
            ),
            (
                "decimal64",
                Arc::new(
                    Decimal64Array::from(vec![Some(12), None, Some(-3)])
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
            ),
            (
                "decimal128",
                Arc::new(
                    Decimal128Array::from(vec![Some(12), None, Some(-3)])
                        .with_precision_and_scale(38, 5)
                        .unwrap(),
                ),
            ),
            (
                "decimal256",
                Arc::new(
                    Decimal256Array::from(vec![Some(i256::from(12)), None, Some(i256::MINUS_ONE)])
                        .with_precision_and_scale(76, 5)
                        .unwrap(),
                ),
            ),
            ("date32", Arc::new(Date32Array::from(vec![Some(1), None, Some(-1)]))),
            (
                "date64",
                Arc::new(Date64Array::from(vec![Some(86_400_000), None, Some(0)])),
            ),
            (
                "time32s",
                Arc::new(Time32SecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "time32ms",
                Arc::new(Time32MillisecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "time64us",
                Arc::new(Time64MicrosecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "time64ns",
                Arc::new(Time64NanosecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "ts_s",
                Arc::new(TimestampSecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "ts_ms_tz",
                Arc::new(TimestampMillisecondArray::from(vec![Some(1), None, Some(2)]).with_timezone("Europe/Paris")),
            ),
            (
                "ts_us_utc",
                Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None, Some(2)]).with_timezone("UTC")),
            ),
            (
                "ts_ns",
                Arc::new(TimestampNanosecondArray::from(vec![Some(1), None, Some(2)])),
            ),
            (
                "duration_s",
                Arc::new(DurationSecondArray::from(vec![Some(1), None, Some(-2)])),
            ),
            (
                "duration_ns",
                Arc::new(DurationNanosecondArray::from(vec![Some(1), None, Some(-2)])),
            ),
            (
                "interval_ym",
                Arc::new(IntervalYearMonthArray::from(vec![Some(13), None, Some(-1)])),
            ),
            (
                "interval_dt",
                Arc::new(IntervalDayTimeArray::from(vec![
                    Some(IntervalDayTime::new(1, 2)),
                    None,
                    None,
                ])),
            ),
            (
                "interval_mdn",
                Arc::new(IntervalMonthDayNanoArray::from(vec![
                    Some(IntervalMonthDayNano::new(1, 2, 3)),
                    None,
                    None,
                ])),
            ),
            (
                "binary",
                Arc::new(BinaryArray::from(vec![Some(b"ab".as_ref()), None, Some(b"")])),
            ),
            (
                "large_binary",
                Arc::new(LargeBinaryArray::from(vec![Some(b"ab".as_ref()), None, Some(b"")])),
            ),
            (
                "fixed_binary",
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        vec![Some(b"ab".to_vec()), None, Some(b"cd".to_vec())].into_iter(),
                        2,
                    )
                    .unwrap(),
                ),
            ),
            (
                "binary_view",
                Arc::new(BinaryViewArray::from(vec![
                    Some(b"ab".as_ref()),
                    None,
                    Some(b"a much longer value here"),
                ])),
            ),
            ("utf8", Arc::new(strings.clone())),
            (
                "large_utf8",
                Arc::new(LargeStringArray::from(vec![Some("a"), None, Some("ccc")])),
            ),
            (
                "utf8_view",
                Arc::new(StringViewArray::from(vec![
                    Some("a"),
                    None,
                    Some("a much longer value here"),
                ])),
            ),
            (
                "dictionary",
                Arc::new(DictionaryArray::<Int32Type>::from_iter(vec![
                    Some("x"),
                    None,
                    Some("x"),
                ])),
            ),
            (
                "dictionary_u8",
                Arc::new(DictionaryArray::<UInt8Type>::from_iter(vec![
                    Some("x"),
                    None,
                    Some("y"),
                ])),
            ),
            ("list", Arc::new(list.clone())),
            (
                "large_list",
                Arc::new(LargeListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                    Some(vec![Some(1)]),
                    None,
                    Some(vec![]),
                ])),
            ),
            (
                "fixed_list",
                Arc::new(FixedSizeListArray::from_iter_primitive::<Int32Type, _, _>(
                    vec![Some(vec![Some(1), None]), None, Some(vec![Some(3), Some(4)])],
                    2,
                )),
            ),
            ("list_view", Arc::new(ListViewArray::from(list.clone()))),
            ("struct", Arc::new(struct_array)),
            ("map", Arc::new(map)),
            ("union", Arc::new(dense_union)),
            ("run_end", Arc::new(run_ends)),
        ]
    }

    #[test]
    fn every_type_round_trips_exactly_in_the_format_chosen_for_it() {
        let mut parquet_ok = Vec::new();
        for (name, array) in type_matrix() {
            let batch = batch_of(array);
            let format = Format::at_rest(&batch.schema());
            let back = round_trip(&batch, format).unwrap_or_else(|e| panic!("{name} in {format:?}: {e}"));
            assert_eq!(back, batch, "{name} in {format:?}");
            // The rule in parquet_holds is exactly what Parquet round-trips.
            // (arrow-rs's Parquet writer panics on unions, hence catch_unwind.)
            let parquet =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round_trip(&batch, Format::Parquet)));
            let exact = matches!(parquet, Ok(Ok(b)) if b == batch);
            assert_eq!(
                exact,
                format == Format::Parquet,
                "{name}: parquet_holds disagrees with a real round trip"
            );
            if exact {
                parquet_ok.push(name);
            }
        }
        assert!(
            parquet_ok.contains(&"utf8") && parquet_ok.contains(&"dictionary"),
            "{parquet_ok:?}"
        );
    }

    #[test]
    fn zero_columns_keep_their_row_count() {
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(7)),
        )
        .unwrap();
        assert_eq!(Format::at_rest(&batch.schema()), Format::Ipc);
        assert_eq!(round_trip(&batch, Format::Ipc).unwrap().num_rows(), 7);
    }

    #[test]
    fn ranges_and_projection_in_both_formats() {
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
        let batches = [batch(0, 300_000), batch(300_000, 10), batch(300_010, 300_000)];
        let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
        for format in [Format::Parquet, Format::Ipc] {
            let mut w = SpillWriter::create(dir.path(), Arc::clone(&schema), format).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            let file = w.finish().unwrap();
            assert_eq!(file.format, format);
            let got = read_all(&file.path, format).unwrap();
            assert_eq!(arrow::compute::concat_batches(&schema, &got).unwrap(), all);
            for (offset, length) in [(299_995, 20), (0, 1), (600_009, 1), (262_140, 262_150), (5, 0)] {
                let part: Vec<RecordBatch> = reader(&file.path, format, Some((offset, length)), None)
                    .unwrap()
                    .map(|b| b.unwrap())
                    .collect();
                assert_eq!(
                    arrow::compute::concat_batches(&schema, &part).unwrap(),
                    all.slice(offset as usize, length as usize),
                    "{format:?} {offset}+{length}"
                );
            }
            let projected: Vec<RecordBatch> = reader(&file.path, format, Some((10, 5)), Some(&[1]))
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
            assert_eq!(projected[0].num_columns(), 1);
            assert_eq!(projected[0].column(0).as_ref(), all.column(1).slice(10, 5).as_ref());
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temp file left");
    }

    #[test]
    fn retired_files_are_deleted_when_the_last_holder_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write_raw(&path, b"data").unwrap();
        let file = Arc::new(SegmentFile::new(path.clone(), 4, Format::Parquet));
        let reader = Arc::clone(&file);
        drop(file);
        assert!(path.exists(), "not retired: kept");
        reader.retire();
        let last = Arc::clone(&reader);
        drop(reader);
        assert!(path.exists(), "still held");
        drop(last);
        assert!(!path.exists(), "retired and released: deleted");
    }
}
