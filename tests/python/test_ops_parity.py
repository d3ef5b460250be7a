"""Every derive op against the same computation done locally with pyarrow / pandas, on a seeded 1M-row table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest

from flightbay_server import Server

ROWS = 1_000_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    value = rng.normal(100, 25, ROWS)
    value_mask = rng.random(ROWS) < 0.05
    qty = rng.integers(0, 1000, ROWS)
    qty_mask = rng.random(ROWS) < 0.03
    start = np.datetime64("2026-01-05T00:00:00", "ms").astype(np.int64)
    ts = start + np.sort(rng.integers(0, 10 * 86_400_000, ROWS))
    return pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "sym": pa.array(rng.choice(["AAPL", "MSFT", "GOOG", "AMZN", "NVDA"], ROWS)),
            "value": pa.array(value, mask=value_mask),
            "qty": pa.array(qty, mask=qty_mask, type=pa.int64()),
            "ts": pa.array(ts, pa.timestamp("ms")),
        }
    )


@pytest.fixture(scope="module")
def served(table):
    server = Server(memory_limit="4GiB")
    client = flight.connect(server.uri)
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("ticks"), table.schema)
    writer.write_table(table, max_chunksize=65_536)
    writer.done_writing()
    reader.read()
    writer.close()
    small = pa.table({"sym": ["AAPL", "MSFT", "IBM", None], "sector": ["tech", "software", "legacy", "none"]})
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("sectors"), small.schema)
    writer.write_table(small)
    writer.done_writing()
    reader.read()
    writer.close()
    yield client
    server.stop()


def derive(client: flight.FlightClient, command: str | dict) -> tuple[dict, pa.Table]:
    body = command if isinstance(command, str) else json.dumps(command)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(body))
    parts = [client.do_get(ep.ticket).read_all() for ep in info.endpoints]
    return json.loads(info.app_metadata), pa.concat_tables(parts)


def test_take(served, table):
    rng = np.random.default_rng(1)
    indices = rng.integers(0, ROWS, 50_000).tolist()
    _, got = derive(served, {"op": "take", "source": "ticks", "indices": indices})
    assert got.equals(table.take(indices))


def test_slice_and_head(served, table):
    _, got = derive(served, {"op": "slice", "source": "ticks", "offset": 123_456, "length": 300_000})
    assert got.equals(table.slice(123_456, 300_000))
    _, got = derive(served, {"op": "slice", "source": "ticks", "offset": ROWS - 10})
    assert got.equals(table.slice(ROWS - 10))
    _, got = derive(served, {"op": "head", "source": "ticks", "num_rows": 7})
    assert got.equals(table.slice(0, 7))


def test_filter(served, table):
    _, got = derive(served, {"op": "filter", "source": "ticks", "predicate": "value > 120 AND sym = 'MSFT'"})
    expected = table.filter((pc.field("value") > 120) & (pc.field("sym") == "MSFT"))
    assert got.equals(expected)
    _, got = derive(served, {"op": "filter", "source": "ticks", "predicate": "qty IS NULL"})
    assert got.equals(table.filter(pc.is_null(table["qty"])))


@pytest.mark.parametrize(
    "keys, placement",
    [
        ([["value", "descending"]], "at_end"),
        ([["sym", "ascending"], ["qty", "descending"]], "at_start"),
        ([["qty", "ascending"]], "at_end"),
    ],
)
def test_sort_by(served, table, keys, placement):
    _, got = derive(served, {"op": "sort_by", "source": "ticks", "keys": keys, "null_placement": placement})
    expected = table.sort_by([tuple(k) for k in keys], null_placement=placement)
    assert got.equals(expected)


def test_select_drop_rename(served, table):
    _, got = derive(served, {"op": "select", "source": "ticks", "columns": ["ts", "id"]})
    assert got.equals(table.select(["ts", "id"]))
    _, got = derive(served, {"op": "drop_columns", "source": "ticks", "columns": ["qty"]})
    assert got.equals(table.drop_columns(["qty"]))
    names = ["a", "b", "c", "d", "e"]
    _, got = derive(served, {"op": "rename_columns", "source": "ticks", "names": names})
    assert got.equals(table.rename_columns(names))
    _, got = derive(served, {"op": "rename_columns", "source": "ticks", "names": {"sym": "symbol"}})
    assert got.equals(table.rename_columns({"sym": "symbol"}))


@pytest.mark.parametrize("join_type", ["inner", "left outer", "left semi", "left anti"])
def test_join(served, table, join_type):
    right = pa.table({"sym": ["AAPL", "MSFT", "IBM", None], "sector": ["tech", "software", "legacy", "none"]})
    _, got = derive(served, {"op": "join", "source": "ticks", "right": "sectors", "keys": "sym", "join_type": join_type})
    expected = table.join(right, "sym", join_type=join_type)
    assert got.schema == expected.schema
    assert got.sort_by("id").equals(expected.sort_by("id"))


def test_shuffle_is_a_seeded_permutation(served, table):
    meta, got = derive(served, {"op": "shuffle", "source": "ticks", "seed": 42})
    again, same = derive(served, {"op": "shuffle", "source": "ticks", "seed": 42})
    assert again["id"] == meta["id"] and again["cache"] == "hit"
    assert got.equals(same)
    assert not got["id"].equals(table["id"])
    assert got.sort_by("id").equals(table)


@pytest.mark.parametrize("every, rule", [("1h", "1h"), ("15min", "15min"), ("1D", "1D")])
def test_resample_matches_pandas(served, table, every, rule):
    aggs = {"value": "mean", "qty": "sum"}
    _, got = derive(served, {"op": "resample", "source": "ticks", "time_column": "ts", "every": every, "aggregations": aggs})
    df = table.to_pandas()
    expected = df.resample(rule, on="ts").agg({"value": "mean", "qty": "sum"})
    counts = df.resample(rule, on="ts").size()
    expected = expected[counts > 0].reset_index()
    got_df = got.to_pandas()
    assert list(got_df.columns) == ["ts", "value", "qty"]
    pd.testing.assert_series_equal(got_df["ts"], expected["ts"].astype(got_df["ts"].dtype), check_names=False)
    np.testing.assert_allclose(got_df["value"], expected["value"], rtol=1e-9)
    np.testing.assert_array_equal(got_df["qty"].to_numpy(dtype=np.int64), expected["qty"].to_numpy(dtype=np.int64))


def test_resample_by_group_with_every_aggregation(served, table):
    aggs = {"value": "first", "qty": "max"}
    _, got = derive(
        served,
        {"op": "resample", "source": "ticks", "time_column": "ts", "every": "6h", "aggregations": aggs, "by": ["sym"]},
    )
    df = table.to_pandas()
    expected = df.groupby("sym").resample("6h", on="ts").agg({"value": "first", "qty": "max"})
    counts = df.groupby("sym").resample("6h", on="ts").size()
    expected = expected[counts > 0].reset_index()
    got_df = got.to_pandas()
    assert list(got_df.columns) == ["sym", "ts", "value", "qty"]
    assert got_df["sym"].tolist() == expected["sym"].tolist()
    assert (got_df["ts"].to_numpy() == expected["ts"].to_numpy()).all()
    np.testing.assert_allclose(got_df["value"], expected["value"], rtol=1e-12)
    np.testing.assert_array_equal(got_df["qty"], expected["qty"])


def test_resample_shoots_style(served, table):
    _, got = derive(
        served,
        {"op": "resample", "source": "ticks", "time_col": "ts", "rule": "1D", "aggregation_func": "median"},
    )
    df = table.to_pandas()
    expected = df.resample("1D", on="ts")[["id", "value", "qty"]].median().reset_index()
    got_df = got.to_pandas()
    assert list(got_df.columns) == ["ts", "id", "value", "qty"]
    np.testing.assert_allclose(got_df[["id", "value", "qty"]].to_numpy(), expected[["id", "value", "qty"]].to_numpy())


def test_sql_group_by_matches_pyarrow(served, table):
    _, got = derive(
        served,
        "SELECT sym, count(*) AS n, sum(qty) AS qty_sum, min(value) AS value_min FROM ticks GROUP BY sym ORDER BY sym",
    )
    expected = (
        table.group_by("sym")
        .aggregate([("id", "count"), ("qty", "sum"), ("value", "min")])
        .sort_by("sym")
    )
    assert got["sym"].to_pylist() == expected["sym"].to_pylist()
    assert got["n"].to_pylist() == expected["id_count"].to_pylist()
    assert got["qty_sum"].to_pylist() == expected["qty_sum"].to_pylist()
    assert got["value_min"].to_pylist() == expected["value_min"].to_pylist()


def test_sql_order_by_and_cache(served, table):
    query = "SELECT id, value FROM ticks WHERE qty > 990 ORDER BY value DESC NULLS LAST, id"
    first, got = derive(served, query)
    second, _ = derive(served, query.lower())
    assert first["cache"] == "miss" and second["cache"] == "hit" and first["id"] == second["id"]
    expected = (
        table.filter(pc.field("qty") > 990)
        .select(["id", "value"])
        .sort_by([("value", "descending"), ("id", "ascending")])
    )
    assert got.equals(expected)
