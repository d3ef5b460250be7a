"""Every RemoteTable operation runs on the server, returns a new flight, and matches pyarrow/pandas locally."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import flightbay

from .conftest import Server, sample

ROWS = 30_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    t = sample(ROWS)
    rng = np.random.default_rng(3)
    mask = rng.random(ROWS) < 0.1
    return t.set_column(3, "value", pa.array(t["value"].to_numpy(), mask=mask))  # some nulls


@pytest.fixture(scope="module")
def remote(shared_server: Server, table: pa.Table) -> flightbay.RemoteTable:
    client = flightbay.connect(shared_server.uri)
    return client.upload(table, "ops_source", mode="replace")


def is_new_flight(derived: flightbay.RemoteTable, source: flightbay.RemoteTable, op: str) -> None:
    assert derived.id != source.id
    assert derived.lineage["op"] == op
    assert derived.lineage["inputs"][0] == source.id
    assert derived.cache in ("hit", "miss")


def test_take(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    indices = np.random.default_rng(1).integers(0, ROWS, 2000)
    for given in (indices, indices.tolist(), pa.array(indices)):
        t = remote.take(given)
        is_new_flight(t, remote, "take")
        assert t.to_arrow().equals(table.take(indices))
    with pytest.raises(TypeError):
        remote.take([1.5])
    with pytest.raises(ValueError):
        remote.take([-1])


def test_slice_and_head(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    assert remote.slice(100, 50).to_arrow().equals(table.slice(100, 50))
    assert remote.slice(ROWS - 7).to_arrow().equals(table.slice(ROWS - 7))
    assert remote.slice().num_rows == ROWS
    head = remote.head(3)
    is_new_flight(head, remote, "head")
    assert head.to_arrow().equals(table.slice(0, 3))
    assert remote.head().num_rows == 5
    with pytest.raises(ValueError):
        remote.slice(-1)


def test_filter_sql(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    t = remote.filter("value > 1 AND label = 'label-3'")
    is_new_flight(t, remote, "filter")
    assert t.to_arrow().equals(table.filter((pc.field("value") > 1) & (pc.field("label") == "label-3")))
    assert remote.filter("value IS NULL").to_arrow().equals(table.filter(pc.field("value").is_null()))


EXPRESSIONS = [
    pc.field("value") > 1,
    (pc.field("sensor") >= 3) & (pc.field("sensor") < 6) | (pc.field("id") == 7),
    ~(pc.field("label") == "label-1"),
    pc.field("label").isin(["label-1", "label-4"]),
    pc.field("sensor").isin([1, 2]) & pc.field("value").is_valid(),
    pc.field("value").is_null(),
    pc.field("id") + 5 > pc.field("sensor") * 3000,
    pc.field("ts") >= pa.scalar(datetime.datetime(2026, 1, 10, 12), pa.timestamp("ms")),
    pc.starts_with(pc.field("label"), "label-2"),
    pc.match_substring(pc.field("label"), "EL-5", ignore_case=True),
    pc.field("id").cast(pa.float64()) / 4 < 10.5,
    pc.abs(pc.field("value")) < 0.1,
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=[str(e)[:40] for e in EXPRESSIONS])
def test_filter_expression_matches_pyarrow(remote: flightbay.RemoteTable, table: pa.Table, expr) -> None:
    assert remote.filter(expr).to_arrow().equals(table.filter(expr))


def test_filter_expression_and_sql_share_the_cached_flight(remote: flightbay.RemoteTable) -> None:
    by_expr = remote.filter(pc.field("sensor") == 4)
    by_sql = remote.filter('"sensor" = 4')
    assert by_sql.id == by_expr.id and by_sql.cache == "hit"


def test_filter_untranslatable_expression(remote: flightbay.RemoteTable) -> None:
    with pytest.raises(flightbay.Unsupported, match="utf8_reverse"):
        remote.filter(pc.utf8_reverse(pc.field("label")) == "x")


def test_filter_boolean_mask(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    mask = pc.greater(table["sensor"], 5)
    assert remote.filter(mask).to_arrow().equals(table.filter(mask))
    numpy_mask = table["sensor"].to_numpy() < 2
    assert remote.filter(numpy_mask).to_arrow().equals(table.filter(pa.array(numpy_mask)))
    with pytest.raises(ValueError, match="values for"):
        remote.filter([True, False])


@pytest.mark.parametrize(
    ("sorting", "placement"),
    [
        ("value", "at_end"),
        ([("value", "descending")], "at_start"),
        ([("label", "ascending"), ("value", "descending")], "at_end"),
        (["sensor", ("id", "descending")], "at_end"),
    ],
)
def test_sort_by(remote: flightbay.RemoteTable, table: pa.Table, sorting, placement: str) -> None:
    t = remote.sort_by(sorting, null_placement=placement)
    is_new_flight(t, remote, "sort_by")
    keys = [sorting] if isinstance(sorting, str) else sorting
    local = [(k, "ascending", placement) if isinstance(k, str) else (*k, placement) for k in keys]
    expected = table.sort_by(local)
    assert t.to_arrow().equals(expected)
    assert remote.sort_by(local).id == t.id  # per-key placements, as pyarrow >= 25 spells them
    with pytest.raises(ValueError):
        remote.sort_by([("value", "up")])  # type: ignore[list-item]
    with pytest.raises(flightbay.Unsupported):
        remote.sort_by([("value", "ascending", "at_start"), ("id", "ascending", "at_end")])


def test_select_drop_rename(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    assert remote.select(["label", "id"]).to_arrow().equals(table.select(["label", "id"]))
    assert remote.select([4, 0]).to_arrow().equals(table.select(["label", "id"]))
    assert remote.drop_columns("ts").to_arrow().equals(table.drop_columns(["ts"]))
    assert remote.drop_columns(["ts", "value"]).to_arrow().equals(table.drop_columns(["ts", "value"]))
    names = ["a", "b", "c", "d", "e"]
    assert remote.rename_columns(names).to_arrow().equals(table.rename_columns(names))
    renamed = remote.rename_columns({"label": "tag"})
    is_new_flight(renamed, remote, "rename_columns")
    assert renamed.column_names == ["id", "ts", "sensor", "value", "tag"]
    assert renamed.to_arrow().equals(table.rename_columns({"label": "tag"}))
    with pytest.raises(ValueError):
        remote.rename_columns(["only_one"])
    with pytest.raises(TypeError):
        remote.select([1.0])  # type: ignore[list-item]
    with pytest.raises(flightbay.InvalidRequest):
        remote.select(["no_such_column"])


@pytest.mark.parametrize("join_type", ["inner", "left outer", "full outer", "left semi", "left anti"])
def test_join(client: flightbay.Client, remote: flightbay.RemoteTable, table: pa.Table, join_type: str) -> None:
    right = pa.table({"sensor": pa.array([1, 2, 3, 42], pa.int32()), "room": ["a", "b", "c", "z"]})
    right_remote = client.upload(right, f"rooms_{join_type.replace(' ', '_')}", mode="replace")
    for ref in (right_remote, right_remote.id, f"rooms_{join_type.replace(' ', '_')}"):
        joined = remote.join(ref, "sensor", join_type=join_type)
        is_new_flight(joined, remote, "join")
        assert right_remote.id in joined.lineage["inputs"]
        expected = table.join(right, "sensor", join_type=join_type)
        got = joined.to_arrow()
        assert got.schema == expected.schema
        order = [("id", "ascending"), ("sensor", "ascending")]
        assert got.sort_by(order).equals(expected.sort_by(order))


def test_join_with_different_key_names(
    client: flightbay.Client, remote: flightbay.RemoteTable, table: pa.Table
) -> None:
    right = pa.table({"sid": pa.array([1, 2], pa.int32()), "room": ["a", "b"]})
    r = client.upload(right, "rooms_sid", mode="replace")
    joined = remote.join(r, "sensor", right_keys="sid", join_type="inner").to_arrow()
    expected = table.join(right, "sensor", right_keys="sid", join_type="inner")
    assert joined.sort_by("id").equals(expected.sort_by("id"))


def test_resample_matches_pandas(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    t = remote.resample("1h", on="ts", agg={"value": "mean", "sensor": "max"})
    is_new_flight(t, remote, "resample")
    df = table.to_pandas()
    expected = df.resample("1h", on="ts").agg({"value": "mean", "sensor": "max"})
    expected = expected[df.resample("1h", on="ts").size() > 0].reset_index()
    got = t.to_pandas()
    assert list(got.columns) == ["ts", "value", "sensor"]
    assert (got["ts"].to_numpy() == expected["ts"].to_numpy()).all()
    np.testing.assert_allclose(got["value"], expected["value"], rtol=1e-9)
    np.testing.assert_array_equal(got["sensor"], expected["sensor"])


def test_resample_by_group_with_one_aggregation(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    got = remote.select(["ts", "sensor", "value"]).resample("6h", on="ts", agg="sum", by="sensor").to_pandas()
    df = table.select(["ts", "sensor", "value"]).to_pandas()
    grouped = df.groupby("sensor").resample("6h", on="ts")
    expected = grouped[["value"]].sum()[grouped.size() > 0].reset_index()
    assert list(got.columns) == ["sensor", "ts", "value"]
    assert got["sensor"].tolist() == expected["sensor"].tolist()
    np.testing.assert_allclose(got["value"], expected["value"], rtol=1e-9)


def test_shuffle(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    a = remote.shuffle(11)
    is_new_flight(a, remote, "shuffle")
    got = a.to_arrow()
    assert not got["id"].equals(table["id"])
    assert got.sort_by("id").equals(table)
    again = remote.shuffle(11)
    assert again.id == a.id and again.cache == "hit"
    assert remote.shuffle(12).id != a.id


def test_client_sql(client: flightbay.Client, remote: flightbay.RemoteTable, table: pa.Table, name: str) -> None:
    query = "SELECT label, count(*) AS n, sum(sensor) AS s FROM ops_source GROUP BY label ORDER BY label"
    t = client.sql(query)
    assert t.lineage["op"] == "sql" and remote.id in t.lineage["inputs"]
    expected = table.group_by("label").aggregate([("id", "count"), ("sensor", "sum")]).sort_by("label")
    got = t.to_arrow()
    assert got["label"].to_pylist() == expected["label"].to_pylist()
    assert got["n"].to_pylist() == expected["id_count"].to_pylist()
    assert got["s"].to_pylist() == expected["sensor_sum"].to_pylist()
    by_id = client.sql(f"SELECT count(*) AS n FROM f{remote.id}", name=f"sqlns_{name}.{name}")
    assert by_id.to_arrow()["n"].to_pylist() == [ROWS]
    assert client[f"sqlns_{name}.{name}"].id == by_id.id
    with pytest.raises(flightbay.InvalidRequest):
        client.sql("SELEC nonsense")
    with pytest.raises((flightbay.InvalidRequest, flightbay.NotFound)):
        client.sql("SELECT * FROM no_such_table")


def test_table_sql_with_self_and_t(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    got = remote.sql("SELECT id, value FROM self WHERE sensor = 2 ORDER BY id").to_arrow()
    expected = table.filter(pc.field("sensor") == 2).select(["id", "value"])
    assert got.equals(expected)
    both = remote.sql("SELECT count(*) AS n FROM t JOIN self USING (id)").to_arrow()
    assert both["n"].to_pylist() == [ROWS]
    named = remote.sql("SELECT max(id) AS m FROM t", name="ops_max")
    assert named.name == "ops_max" and named.to_arrow()["m"].to_pylist() == [ROWS - 1]


def test_second_client_reuses_derived_flight(shared_server: Server, remote: flightbay.RemoteTable) -> None:
    query = "SELECT sensor, avg(value) AS v FROM ops_source GROUP BY sensor ORDER BY sensor"
    first = remote.client.sql(query)
    with flightbay.connect(shared_server.uri) as other:
        second = other.sql(query)
        assert second.id == first.id and second.cache == "hit"
        assert other[first.id].to_arrow().equals(first.to_arrow())
        chained = other[remote.id].filter("sensor > 2").head(4)
        assert chained.lineage["op"] == "head"
        ancestry = other.do_action("lineage", id=chained.id)
        assert ancestry["inputs"][0]["op"] == "filter"
        assert ancestry["inputs"][0]["inputs"][0]["id"] == remote.id


def test_derived_handles_chain_and_fetch_like_uploads(remote: flightbay.RemoteTable, table: pa.Table) -> None:
    chained = remote.filter("sensor < 5").sort_by([("value", "descending")]).select(["id", "value"]).head(100)
    expected = (
        table.filter(pc.field("sensor") < 5).sort_by([("value", "descending")]).select(["id", "value"]).slice(0, 100)
    )
    assert chained.to_arrow().equals(expected)
    pd.testing.assert_frame_equal(chained.to_pandas(), expected.to_pandas())
    assert pa.table(chained).equals(expected)
    assert chained.name is None and chained.state == "memory"
