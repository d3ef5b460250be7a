"""The stock ``pyarrow.flight`` client, used the way the Apache Arrow cookbook's Flight examples use it."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest


def sample(rows: int, seed: int = 42) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "ts": pa.array(np.arange(rows, dtype=np.int64) * 1000, pa.timestamp("ms")),
            "sensor": pa.array(rng.integers(0, 100, rows, dtype=np.int32)),
            "value": pa.array(rng.normal(size=rows)),
            "label": pa.array([f"label-{i % 20}" for i in range(rows)]),
        }
    )


def upload(client: flight.FlightClient, descriptor: flight.FlightDescriptor, table: pa.Table, **kw) -> dict:
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table, **kw)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())


def fetch(client: flight.FlightClient, descriptor: flight.FlightDescriptor) -> pa.Table:
    info = client.get_flight_info(descriptor)
    tables = [client.do_get(ep.ticket).read_all() for ep in info.endpoints]
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def test_cookbook_round_trip(server):
    client = flight.connect(server.uri)
    table = sample(100_000)
    descriptor = flight.FlightDescriptor.for_path("uploaded")
    meta = upload(client, descriptor, table, max_chunksize=65_536)
    assert meta == {"id": 1, "name": "uploaded", "namespace": "default", "num_rows": 100_000, "num_bytes": meta["num_bytes"]}
    assert meta["num_bytes"] >= table.nbytes * 0.9

    flights = list(client.list_flights())
    assert len(flights) == 1
    info = flights[0]
    assert info.descriptor.path == [b"default", b"uploaded"]
    assert info.total_records == 100_000
    assert info.schema == table.schema

    info = client.get_flight_info(descriptor)
    assert json.loads(info.app_metadata)["state"] == "memory"
    reader = client.do_get(info.endpoints[0].ticket)
    assert reader.read_all().equals(table)

    assert client.get_schema(descriptor).schema == table.schema

    actions = {a.type: a.description for a in client.list_actions()}
    assert {"drop", "rename", "stats", "health", "shutdown"} <= set(actions)
    result = list(client.do_action(flight.Action("health", b"{}")))
    assert json.loads(result[0].body.to_pybytes())["status"] == "ok"

    list(client.do_action(flight.Action("drop", json.dumps({"name": "uploaded"}).encode())))
    assert list(client.list_flights()) == []


def test_single_100mb_batch_without_max_chunksize(server):
    client = flight.connect(server.uri)
    table = pa.table({"x": np.arange(12_500_000, dtype=np.int64)})  # one 100 MB batch, one message
    assert table.num_columns == 1 and len(table.column(0).chunks) == 1
    meta = upload(client, flight.FlightDescriptor.for_path("big"), table)
    assert meta["num_rows"] == 12_500_000
    assert meta["num_bytes"] == 100_000_000
    got = fetch(client, flight.FlightDescriptor.for_path("big"))
    assert got.equals(table)


def test_ids_names_and_namespaces(server):
    client = flight.connect(server.uri)
    upload(client, flight.FlightDescriptor.for_path("sales", "trips"), sample(10))
    upload(client, flight.FlightDescriptor.for_path("trips"), sample(20))
    assert fetch(client, flight.FlightDescriptor.for_path("sales", "trips")).num_rows == 10
    assert fetch(client, flight.FlightDescriptor.for_path("1")).num_rows == 10
    assert fetch(client, flight.FlightDescriptor.for_path("trips")).num_rows == 20
    only_sales = list(client.list_flights(b"sales.*"))
    assert [json.loads(i.app_metadata)["id"] for i in only_sales] == [1]


def test_put_modes_through_cmd(server):
    client = flight.connect(server.uri)
    put = lambda mode: flight.FlightDescriptor.for_command(json.dumps({"op": "put", "name": "t", "mode": mode}))
    upload(client, flight.FlightDescriptor.for_path("t"), sample(10))
    with pytest.raises(pa.ArrowException, match="already exists error.*already points at flight 1"):
        upload(client, flight.FlightDescriptor.for_path("t"), sample(5))
    assert upload(client, put("append"), sample(5))["num_rows"] == 15
    got = fetch(client, flight.FlightDescriptor.for_path("t"))
    assert got.equals(pa.concat_tables([sample(10), sample(5)]))
    assert upload(client, put("replace"), sample(3))["id"] == 3
    assert fetch(client, flight.FlightDescriptor.for_path("2")).num_rows == 15


def test_errors_map_to_pyarrow_exceptions(server):
    client = flight.connect(server.uri)
    upload(client, flight.FlightDescriptor.for_path("t"), sample(10))
    with pytest.raises(KeyError):  # NOT_FOUND → ArrowKeyError
        client.get_flight_info(flight.FlightDescriptor.for_path("missing"))
    with pytest.raises(KeyError):
        client.do_get(flight.Ticket(b"99")).read_all()
    with pytest.raises(pa.ArrowInvalid):  # INVALID_ARGUMENT
        client.get_flight_info(flight.FlightDescriptor.for_path("f12"))
    with pytest.raises(pa.ArrowInvalid):
        client.do_get(flight.Ticket(b"garbage")).read_all()
    with pytest.raises(pa.ArrowInvalid):
        client.get_flight_info(flight.FlightDescriptor.for_command(b'{"op":"nope"}'))
    other = pa.table({"x": [1, 2]})
    with pytest.raises(pa.ArrowInvalid, match="same schema"):
        upload(client, flight.FlightDescriptor.for_command(b'{"op":"put","name":"t","mode":"append"}'), other)
    with pytest.raises(pa.ArrowNotImplementedError):
        list(client.do_action(flight.Action("explode", b"{}")))
    assert [json.loads(i.app_metadata)["id"] for i in client.list_flights()] == [1]


def test_shutdown_action_stops_the_process(server):
    client = flight.connect(server.uri)
    result = list(client.do_action(flight.Action("shutdown", b"{}")))
    assert json.loads(result[0].body.to_pybytes()) == {"shutting_down": True}
    assert server.proc.wait(timeout=20) == 0
