"""Client.upload from every accepted source, put modes, batching, progress and failed sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import csv, feather

import flightbay

from .conftest import sample

ROWS = 20_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return sample(ROWS)


def fetched_chunk_rows(t: flightbay.RemoteTable) -> list[int]:
    return [b.num_rows for b in t.to_arrow().to_batches()]


def test_table(client: flightbay.Client, name: str, table: pa.Table) -> None:
    t = client.upload(table, name, batch_size=5000)
    assert (t.name, t.namespace, t.num_rows, t.schema) == (name, "default", ROWS, table.schema)
    assert t.lineage == {"op": "upload", "params": {"mode": "error"}, "inputs": []}
    got = t.to_arrow()
    assert got.equals(table)
    assert max(fetched_chunk_rows(t)) <= 5000  # sent in batches of at most batch_size rows


def test_record_batch(client: flightbay.Client, name: str, table: pa.Table) -> None:
    batch = table.combine_chunks().to_batches()[0]
    assert client.upload(batch, name).to_arrow().equals(table)


def test_record_batch_reader(client: flightbay.Client, name: str, table: pa.Table) -> None:
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=7000))
    t = client.upload(reader, name, batch_size=3000)
    assert t.to_arrow().equals(table)
    assert max(fetched_chunk_rows(t)) <= 3000


def test_pandas(client: flightbay.Client, name: str, table: pa.Table) -> None:
    df = table.to_pandas()
    t = client.upload(df, name)
    assert t.to_arrow().equals(pa.Table.from_pandas(df, preserve_index=False))
    pd.testing.assert_frame_equal(t.to_pandas(), df)


def test_pandas_with_index(client: flightbay.Client, name: str) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.Index(["a", "b", "c"], name="key"))
    t = client.upload(df, name)
    assert t.column_names == ["x", "key"]  # the index travels as a column, as with pa.Table.from_pandas
    pd.testing.assert_frame_equal(t.to_pandas(), df)


def test_polars(client: flightbay.Client, name: str, table: pa.Table) -> None:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    t = client.upload(df, name)
    assert t.to_polars().equals(df)
    # Through the C stream interface polars hands out strings as string_view (df.to_arrow() says large_string).
    assert t.to_arrow().equals(pa.table(df))
    assert t.schema.field("label").type == pa.string_view()


def test_arrow_c_stream_object(client: flightbay.Client, name: str, table: pa.Table) -> None:
    class Stream:
        """Only the C stream protocol, like a DuckDB relation or an arro3 table."""

        def __arrow_c_stream__(self, requested_schema: object = None) -> object:
            return table.__arrow_c_stream__(requested_schema)

    assert client.upload(Stream(), name).to_arrow().equals(table)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".arrow", ".feather", ".ipc", ".arrows", ".csv.gz"])
def test_files(client: flightbay.Client, name: str, table: pa.Table, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path, row_group_size=4000)
    elif suffix in (".csv", ".csv.gz"):
        with pa.CompressedOutputStream(str(path), "gzip") if suffix == ".csv.gz" else pa.OSFile(str(path), "wb") as f:
            csv.write_csv(table, f)
    elif suffix == ".tsv":
        csv.write_csv(table, path, csv.WriteOptions(delimiter="\t"))
    elif suffix == ".arrows":
        with pa.ipc.new_stream(path, table.schema) as w:
            w.write_table(table, max_chunksize=4000)
    else:
        feather.write_feather(table, path, chunksize=4000)
    t = client.upload(path, name, batch_size=1500)
    got = t.to_arrow()
    if suffix in (".csv", ".tsv", ".csv.gz"):
        # CSV loses the types; what comes back must equal what pyarrow reads from the file.
        parse = csv.ParseOptions(delimiter="\t") if suffix == ".tsv" else None
        expected = csv.read_csv(path, parse_options=parse)
    else:
        expected = table
    assert got.equals(expected)
    assert max(fetched_chunk_rows(t)) <= 1500
    assert client.upload(str(path), f"{name}_str").to_arrow().equals(expected)  # str paths too


def test_file_is_streamed_not_loaded(client: flightbay.Client, name: str, tmp_path: Path) -> None:
    from flightbay._upload import open_source

    path = tmp_path / "big.parquet"
    pq.write_table(sample(50_000), path, row_group_size=10_000)
    source = open_source(path, 10_000)
    first = next(source.batches)
    assert first.num_rows == 10_000 and source.nbytes is None  # one row group at a time


def test_bad_sources(client: flightbay.Client, name: str, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="upload takes"):
        client.upload({"x": [1]}, name)  # type: ignore[arg-type]
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match="expected a .parquet"):
        client.upload(tmp_path / "data.json", name)
    with pytest.raises(FileNotFoundError):
        client.upload(tmp_path / "missing.parquet", name)
    with pytest.raises(ValueError, match="mode"):
        client.upload(sample(1), name, mode="overwrite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        client.upload(sample(1), name, batch_size=0)
    assert name not in client


def test_modes(client: flightbay.Client, name: str) -> None:
    first = client.upload(sample(10), name)
    with pytest.raises(flightbay.AlreadyExists):
        client.upload(sample(5), name)
    appended = client.upload(sample(5, seed=1), name, mode="append")
    assert appended.id != first.id and appended.num_rows == 15
    assert appended.to_arrow().equals(pa.concat_tables([sample(10), sample(5, seed=1)]))
    assert appended.lineage["params"] == {"mode": "append"} and appended.lineage["inputs"] == [first.id]
    replaced = client.upload(sample(3), name, mode="replace")
    assert client[name].id == replaced.id and replaced.num_rows == 3
    assert client[first.id].num_rows == 10  # older flights stay reachable by id


def test_namespaced_and_unnamed(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(4), f"ns_{name}.{name}")
    assert (t.namespace, t.name) == (f"ns_{name}", name)
    anonymous = client.upload(sample(4))
    assert anonymous.name is not None and anonymous.name.startswith("upload_") and len(anonymous.name) == 39
    assert anonymous.namespace == "default"


def _failing(table: pa.Table, after: int) -> Iterator[pa.RecordBatch]:
    for i, batch in enumerate(table.to_batches(max_chunksize=1000)):
        if i == after:
            raise OSError("disk went away")
        yield batch


@pytest.mark.parametrize("mode", ["error", "replace", "append"])
def test_failing_source_leaves_nothing_behind(client: flightbay.Client, name: str, mode: str) -> None:
    before = client.upload(sample(10), name) if mode != "error" else None
    count = len(client.list_tables())
    reader = pa.RecordBatchReader.from_batches(sample(1).schema, _failing(sample(5000), after=3))
    with pytest.raises(OSError, match="disk went away"):
        client.upload(reader, name, mode=mode)
    assert len(client.list_tables()) == count
    if before is None:
        assert name not in client
    else:
        assert client[name].id == before.id


def test_source_errors_are_not_server_errors(client: flightbay.Client, name: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    good = "".join(f"{i},{i * 2}\n" for i in range(200_000))
    path.write_text("a,b\n" + good + "1,2,3\n")  # a row with too many fields, well past the first block
    with pytest.raises(pa.ArrowInvalid, match="Expected 2 columns, got 3") as info:
        client.upload(path, name)
    assert not isinstance(info.value, flightbay.FlightbayError)  # pyarrow's own error, as reading the file raised it
    assert name not in client


def test_progress(client: flightbay.Client, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = client.upload(sample(5000), name, progress=True)
    t.to_arrow(progress=True)
    err = capsys.readouterr().err
    assert f"upload {name}" in err and f"fetch f{t.id}" in err and "100%" in err
    client.upload(sample(10), f"{name}_quiet", progress=False)
    client[f"{name}_quiet"].to_arrow(progress=None)  # pytest's capture is not a terminal: no bar
    assert capsys.readouterr().err == ""
