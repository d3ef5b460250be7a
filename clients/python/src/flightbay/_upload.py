"""Turning anything :meth:`Client.upload` accepts into a schema and a stream of record batches."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import pyarrow as pa

#: What :meth:`flightbay.Client.upload` accepts.
UploadSource = Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader, "os.PathLike[str]", str, Any]

_PARQUET = {".parquet", ".pq"}
_CSV = {".csv", ".tsv"}
_IPC = {".arrow", ".feather", ".ipc", ".arrows"}


@dataclass
class Source:
    """An opened upload source."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    #: Bytes in memory when known up front (tables and batches), for the progress bar.
    nbytes: int | None


def rechunk(batches: Iterable[pa.RecordBatch], max_rows: int) -> Iterator[pa.RecordBatch]:
    """Zero-copy slices of ``batches`` with at most ``max_rows`` rows each (empty batches are skipped)."""
    for batch in batches:
        for start in range(0, batch.num_rows, max_rows):
            yield batch.slice(start, max_rows)


def open_source(data: UploadSource, batch_size: int) -> Source:
    """Open ``data`` for streaming in batches of at most ``batch_size`` rows.

    Files are read batch by batch and never loaded whole.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return Source(data.schema, iter(data.to_batches(max_chunksize=batch_size)), data.nbytes)
    if isinstance(data, pa.RecordBatchReader):
        return Source(data.schema, rechunk(data, batch_size), None)
    if isinstance(data, (str, os.PathLike)):
        return _open_file(Path(data), batch_size)
    if hasattr(data, "__arrow_c_stream__"):
        # pandas >= 2.2 and polars DataFrames, DuckDB relations, nanoarrow/arro3 streams, ...
        reader = pa.RecordBatchReader.from_stream(data)
        return Source(reader.schema, rechunk(reader, batch_size), None)
    if type(data).__module__.split(".")[0] == "pandas":
        table = pa.Table.from_pandas(data)
        return Source(table.schema, iter(table.to_batches(max_chunksize=batch_size)), table.nbytes)
    raise TypeError(
        "upload takes a pyarrow Table, RecordBatch or RecordBatchReader, an object with __arrow_c_stream__ "
        f"(pandas, polars, ...), or a path to a .parquet, .csv, .arrow or .feather file; got {type(data).__name__}"
    )


def _open_file(path: Path, batch_size: int) -> Source:
    suffixes = [s.lower() for s in path.suffixes]
    # "trips.csv.gz": the format is the suffix before the compression suffix (pyarrow decompresses by extension).
    kind = next((s for s in reversed(suffixes) if s in _PARQUET | _CSV | _IPC), None)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if kind in _PARQUET:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        return Source(parquet.schema_arrow, _parquet_batches(parquet, batch_size), None)
    if kind in _CSV:
        from pyarrow import csv

        parse = csv.ParseOptions(delimiter="\t") if kind == ".tsv" else None
        csv_reader = csv.open_csv(path, parse_options=parse)
        return Source(csv_reader.schema, rechunk(csv_reader, batch_size), None)
    if kind in _IPC:
        return _open_ipc(path, batch_size)
    raise ValueError(f"cannot upload {path.name}: expected a .parquet, .csv, .tsv, .arrow, .feather or .ipc file")


def _parquet_batches(parquet: Any, batch_size: int) -> Iterator[pa.RecordBatch]:
    try:
        yield from parquet.iter_batches(batch_size=batch_size)
    finally:
        parquet.close()


def _open_ipc(path: Path, batch_size: int) -> Source:
    """Feather v2 and ``.arrow`` files are the IPC file format; ``.arrows`` (and some ``.arrow``) the stream format."""
    source = pa.memory_map(str(path))
    try:
        file_reader = pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        stream_reader = pa.ipc.open_stream(source)
        return Source(stream_reader.schema, rechunk(stream_reader, batch_size), None)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for i in range(file_reader.num_record_batches):
                yield from rechunk([file_reader.get_batch(i)], batch_size)
        finally:
            source.close()

    return Source(file_reader.schema, batches(), None)
