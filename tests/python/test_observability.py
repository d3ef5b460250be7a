"""``/metrics``, ``/health`` and gRPC Health v1 against a real server: a scripted workload, then the scrape (read
with prometheus-client's OpenMetrics parser) must count exactly what the workload did."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from flightbay_server import Server

FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"


class Scrape:
    """One scrape of ``/metrics``, as ``(sample name, labels) -> value``."""

    def __init__(self, base: str) -> None:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            text = response.read().decode()
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def calls(self, method: str, code: str) -> float:
        return self("flightbay_rpc_duration_seconds_count", method=method, code=code)


def table(rows: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + rows), pa.int64()), "x": [float(i) for i in range(rows)]})


def upload(client: flight.FlightClient, name: str, data: pa.Table) -> dict:
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(name), data.schema)
    writer.write_table(data)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())


def action(client: flight.FlightClient, kind: str, body: dict) -> dict:
    return json.loads(next(iter(client.do_action(flight.Action(kind, json.dumps(body).encode())))).body.to_pybytes())


@pytest.fixture
def http_server(tmp_path):
    s = Server(tmp_path, memory_limit="1GiB", http=True)
    yield s
    s.stop()


def test_metrics_count_what_the_workload_did(http_server):
    client = flight.connect(http_server.uri)
    # 3 uploads, then one refused: the name exists and the default put mode is `error`.
    for name, rows in [("a", 1000), ("b", 2000), ("c", 3000)]:
        assert upload(client, name, table(rows))["num_rows"] == rows
    with pytest.raises(pa.ArrowException, match="already exists"):
        upload(client, "a", table(10))
    # 2 lookups by name, 1 of a name that does not exist.
    for _ in range(2):
        assert client.get_flight_info(flight.FlightDescriptor.for_path("a")).total_records == 1000
    with pytest.raises(pa.ArrowKeyError):
        client.get_flight_info(flight.FlightDescriptor.for_path("missing"))
    # The same query twice: one computation, then a cache hit.
    sql = flight.FlightDescriptor.for_command(b"SELECT id, x * 2 AS y FROM b WHERE id < 500")
    first = client.get_flight_info(sql)
    second = client.get_flight_info(sql)
    assert json.loads(first.app_metadata)["cache"] == "miss"
    assert json.loads(second.app_metadata)["cache"] == "hit"
    # 2 downloads.
    fetched = [
        client.do_get(client.get_flight_info(flight.FlightDescriptor.for_path("c")).endpoints[0].ticket).read_all(),
        client.do_get(second.endpoints[0].ticket).read_all(),
    ]
    assert [t.num_rows for t in fetched] == [3000, 500]
    # 1 flight spilled by hand; the stats action answers what /metrics must show.
    assert action(client, "spill", {"name": "b"})["state"] == "spilled"
    stats = action(client, "stats", {})
    with pytest.raises(pa.ArrowNotImplementedError):
        action(client, "no_such_action", {})
    listed = list(client.list_flights())
    client.close()

    m = Scrape(http_server.http)
    assert m.calls("DoPut", "OK") == 3
    assert m.calls("DoPut", "ALREADY_EXISTS") == 1
    # a ×2, the SQL ×2, c's lookup before its download
    assert m.calls("GetFlightInfo", "OK") == 5
    assert m.calls("GetFlightInfo", "NOT_FOUND") == 1
    assert m.calls("DoGet", "OK") == 2
    assert m.calls("DoAction", "OK") == 2
    assert m.calls("DoAction", "UNIMPLEMENTED") == 1
    assert m.calls("ListFlights", "OK") == 1
    assert m("flightbay_rpc_duration_seconds_bucket", method="DoGet", code="OK", le="+Inf") == 2
    # Bytes: every buffer of the downloads went out (plus IPC and gRPC framing); uploads came in likewise.
    assert m("flightbay_rpc_sent_bytes_total", method="DoGet") >= sum(t.nbytes for t in fetched)
    assert m("flightbay_rpc_received_bytes_total", method="DoPut") >= sum(table(n).nbytes for n in (1000, 2000, 3000))

    assert m("flightbay_cache_misses_total") == 1
    assert m("flightbay_cache_computations_total") == 1
    assert m("flightbay_cache_hits_total") == 1
    assert m("flightbay_flights") == 4 == len(listed)
    assert m("flightbay_flights_by_state", state="spilled") == 1
    assert m("flightbay_flights_by_state", state="memory") == 3
    assert m("flightbay_names") == 3
    assert m("flightbay_evictions_total", reason="forced") == 1
    assert m("flightbay_evictions_total", reason="memory") == 0
    assert m("flightbay_memory_limit_bytes") == 1 << 30
    # Read from the same counters as the stats action, so they agree.
    store = stats["store"]
    assert m("flightbay_spilled_bytes") == store["spilled_bytes"] > 0
    assert m("flightbay_spills_total") == store["spills"] >= 1
    assert m("flightbay_reloads_total") == store["reloads"]
    assert m("flightbay_resident_bytes") == store["resident_bytes"]


def test_health_over_http_and_grpc(http_server):
    with urllib.request.urlopen(f"{http_server.http}/health", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "serving"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{http_server.http}/nothing-here", timeout=10)
    assert missing.value.code == 404

    channel = grpc.insecure_channel(http_server.address)
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == serving
    assert stub.Check(health_pb2.HealthCheckRequest(service=FLIGHT_SERVICE), timeout=10).status == serving
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    m = Scrape(http_server.http)
    assert m.calls("Health/Check", "OK") == 2
    assert m.calls("Health/Check", "NOT_FOUND") == 1

    # A watcher sees SERVING, then NOT_SERVING once shutdown begins; its stream ends so the server can stop.
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == serving
    http_server.proc.send_signal(signal.SIGTERM)
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert list(watch) == []
    channel.close()
    assert http_server.proc.wait(timeout=30) == 0
