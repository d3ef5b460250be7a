"""RemoteTable metadata (no rows fetched) and every way of fetching rows."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import flightbay

from .conftest import sample

ROWS = 50_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return sample(ROWS)


@pytest.fixture
def remote(client: flightbay.Client, name: str, table: pa.Table) -> flightbay.RemoteTable:
    return client.upload(table, name, batch_size=8192)


def test_metadata(remote: flightbay.RemoteTable, table: pa.Table, name: str) -> None:
    assert remote.name == name and remote.namespace == "default"
    assert remote.schema == table.schema
    assert remote.num_rows == len(remote) == ROWS
    assert remote.num_columns == 5 and remote.shape == (ROWS, 5)
    assert remote.column_names == ["id", "ts", "sensor", "value", "label"]
    assert remote.nbytes == pytest.approx(table.nbytes, rel=0.1)
    assert remote.state == "memory"
    assert remote.cache is None
    assert remote.lineage["op"] == "upload"
    assert remote.refresh().id == remote.id
    text = repr(remote)
    assert text.startswith(f"<flightbay.RemoteTable f{remote.id} 'default.{name}': 50,000 rows x 5 columns, ")
    assert "memory>" in text and "ts: timestamp[ms]" in text
    page = remote._repr_html_()
    assert f"<code>f{remote.id}</code>" in page and ">label</td>" in page and ">50,000</td>" in page


def test_to_arrow_and_aliases(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    assert remote.to_arrow().equals(table)
    assert remote.to_table().equals(table)


@pytest.mark.parametrize("parts", [1, 2, 3, 8, 13])
def test_parallel_fetch_keeps_order(remote: flightbay.RemoteTable, table: pa.Table, parts: int) -> None:
    assert remote.to_arrow(parts=parts).equals(table)


def test_big_flights_are_fetched_in_parallel(client: flightbay.Client, name: str, monkeypatch) -> None:
    import flightbay._fetch as fetch
    import flightbay.table as table_module

    monkeypatch.setattr(table_module, "PARALLEL_FETCH_BYTES", 100_000)
    seen: list[int] = []
    real = fetch.read_endpoints

    def spy(client, endpoints, bar):  # type: ignore[no-untyped-def]
        seen.append(len(endpoints))
        return real(client, endpoints, bar)

    monkeypatch.setattr(table_module, "read_endpoints", spy)
    t = client.upload(sample(20_000), name)
    assert t.to_arrow().equals(sample(20_000))
    assert seen == [min(8, t.nbytes // 100_000)] and seen[0] > 1


def test_pandas_and_polars(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    pd.testing.assert_frame_equal(remote.to_pandas(), table.to_pandas())
    pd.testing.assert_frame_equal(
        remote.to_pandas(types_mapper=pd.ArrowDtype), table.to_pandas(types_mapper=pd.ArrowDtype)
    )
    frame = remote.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.equals(pl.from_arrow(table))


def test_batches_and_readers(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    batches = remote.to_batches(max_chunksize=1000)
    assert max(b.num_rows for b in batches) == 1000
    assert pa.Table.from_batches(batches).equals(table)
    reader = remote.to_reader()
    assert isinstance(reader, pa.RecordBatchReader) and reader.schema == table.schema
    assert reader.read_all().equals(table)
    assert pa.Table.from_batches(list(remote), schema=table.schema).equals(table)


def test_arrow_c_stream(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    assert pa.table(remote).equals(table)
    assert pa.RecordBatchReader.from_stream(remote).read_all().equals(table)
    assert pl.DataFrame(remote).equals(pl.from_arrow(table))


def test_iter_batches(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    sizes = [b.num_rows for b in remote.iter_batches(4096)]
    assert sizes == [4096] * (ROWS // 4096) + [ROWS % 4096]
    assert [b.num_rows for b in remote.iter_batches(4096, drop_last=True)] == [4096] * (ROWS // 4096)
    assert pa.Table.from_batches(remote.iter_batches(4096)).equals(table)
    assert pa.Table.from_batches(remote.iter_batches()).equals(table)


def test_iter_batches_columns(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    got = pa.Table.from_batches(remote.iter_batches(10_000, columns=["label", "id"]))
    assert got.equals(table.select(["label", "id"]))
    same = pa.Table.from_batches(remote.iter_batches(10_000, columns=remote.column_names))
    assert same.equals(table)


@pytest.mark.parametrize("shuffle", [False, True])
def test_iter_batches_shards_cover_every_row_once(remote: flightbay.RemoteTable, shuffle: bool) -> None:
    count = 3
    shards = [flightbay.Shard(i, count, shuffle=shuffle, seed=4, parts=12) for i in range(count)]
    ids = [[i for b in remote.iter_batches(1000, shard=s) for i in b.column("id").to_pylist()] for s in shards]
    assert sorted(i for part in ids for i in part) == list(range(ROWS))
    assert all(abs(len(p) - ROWS / count) <= 12 for p in ids)  # parts differ by at most a row each
    if shuffle:
        assert ids[0] != sorted(ids[0])
        again = [i for b in remote.iter_batches(1000, shard=shards[0]) for i in b.column("id").to_pylist()]
        assert again == ids[0]
        other_epoch = shards[0].with_epoch(1)
        assert [i for b in remote.iter_batches(1000, shard=other_epoch) for i in b.column("id").to_pylist()] != ids[0]
    else:
        assert ids[0] == sorted(ids[0])
    pair = [i for b in remote.iter_batches(1000, shard=(1, 2)) for i in b.column("id").to_pylist()]
    assert len(pair) == ROWS // 2


def test_global_shuffle_shards(remote: flightbay.RemoteTable) -> None:
    shards = [flightbay.Shard(i, 2, shuffle="global", seed=9, epoch=3) for i in range(2)]
    ids = [[i for b in remote.iter_batches(5000, shard=s) for i in b.column("id").to_pylist()] for s in shards]
    assert sorted(ids[0] + ids[1]) == list(range(ROWS))
    assert ids[0] != sorted(ids[0])
    shuffled = remote.shuffle(shards[0].global_seed())
    assert shuffled.cache == "hit"  # both shards and this call share one server-side copy


def test_empty_flight(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(0), name)
    assert t.num_rows == 0 and t.shape == (0, 5)
    assert t.to_arrow().equals(sample(0))
    assert list(t.iter_batches(10)) == []
    assert t.to_pandas().empty
    assert [b for s in range(2) for b in t.iter_batches(10, shard=(s, 2))] == []
