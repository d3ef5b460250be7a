"""Client: connecting, looking flights up, listing, dropping, actions, pickling and fork safety."""

from __future__ import annotations

import multiprocessing
import pickle

import pyarrow as pa
import pytest

import flightbay

from .conftest import Server, sample


def test_connect_forms(shared_server: Server) -> None:
    address = shared_server.uri.removeprefix("grpc://")
    for uri in (shared_server.uri, address):
        with flightbay.connect(uri, timeout=30) as c:
            assert c.uri == shared_server.uri
            assert c.do_action("health")["status"] == "ok"
            assert repr(c) == f"<flightbay.Client {shared_server.uri}>"
    # Auth is off on this server: the handshake succeeds and yields no token.
    with flightbay.connect(shared_server.uri, username="ada", password="x") as c:
        assert c.spec.headers == ()
        assert c.do_action("health")["status"] == "ok"


def test_close_and_reopen(shared_server: Server) -> None:
    c = flightbay.connect(shared_server.uri)
    c.list_tables()
    c.close()
    c.close()  # idempotent
    assert isinstance(c.list_tables(), list)  # a closed client reconnects on next use
    c.close()


def test_table_lookup_by_every_reference(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(10), f"sales_{name}.{name}")
    for ref in (t.id, str(t.id), f"f{t.id}", f"sales_{name}.{name}", t, t.info):
        got = client.table(ref)
        assert (got.id, got.name, got.namespace) == (t.id, name, f"sales_{name}")
        assert client[ref].id == t.id
    assert f"sales_{name}.{name}" in client
    assert name not in client  # the default namespace has no such name
    assert 10**9 not in client
    assert object() not in client
    with pytest.raises(TypeError):
        client.table(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.table(-1)


def test_list_tables(fresh_client: flightbay.Client) -> None:
    assert fresh_client.list_tables() == []
    a = fresh_client.upload(sample(10), "alpha")
    b = fresh_client.upload(sample(20), "ns.beta")
    infos = fresh_client.list_tables()
    assert [i.id for i in infos] == [a.id, b.id]
    alpha, beta = infos
    assert (alpha.name, alpha.namespace, alpha.names, alpha.qualified_name) == (
        "alpha",
        "default",
        ("default.alpha",),
        "default.alpha",
    )
    assert (beta.num_rows, beta.schema, beta.state, beta.op, beta.inputs) == (
        20,
        sample(1).schema,
        "memory",
        "upload",
        [],
    )
    assert beta.nbytes == b.nbytes > 0
    assert beta.created_at and beta.created_at.endswith("Z")
    assert [i.id for i in fresh_client.list_tables("ns.*")] == [b.id]
    assert [i.id for i in fresh_client.list_tables("alp*")] == [a.id]


def test_drop(fresh_client: flightbay.Client) -> None:
    a = fresh_client.upload(sample(10), "a")
    b = fresh_client.upload(sample(10), "b")
    assert fresh_client.drop("a") == a.id
    assert fresh_client.drop(b) == b.id
    assert fresh_client.list_tables() == []
    with pytest.raises(flightbay.NotFound):
        a.to_arrow()


def test_actions(fresh_client: flightbay.Client) -> None:
    actions = fresh_client.list_actions()
    assert {"drop", "rename", "lineage", "stats", "health", "shutdown"} <= set(actions)
    assert all(isinstance(d, str) and d for d in actions.values())
    t = fresh_client.upload(sample(10), "first")
    assert fresh_client.do_action("rename", {"id": t.id}, name="second") == {
        "id": t.id,
        "name": "default.second",
        "previous": None,
    }
    assert fresh_client["second"].id == t.id
    lineage = fresh_client.do_action("lineage", id=t.id)
    assert (lineage["id"], lineage["op"], lineage["inputs"]) == (t.id, "upload", [])
    stats = fresh_client.do_action("stats")
    assert stats["store"]["flights"] == 1
    assert stats["store"]["resident_bytes"] >= t.nbytes


def test_shutdown_action(server: Server) -> None:
    with flightbay.connect(server.uri) as c:
        assert c.do_action("shutdown") == {"shutting_down": True}
    assert server.proc.wait(timeout=20) == 0


def test_client_and_tables_pickle(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(100), name)
    copy = pickle.loads(pickle.dumps(t))
    assert copy.id == t.id and copy.schema == t.schema
    assert copy.client is not client and copy.client.spec == client.spec
    assert copy.to_arrow().equals(sample(100))
    copy.client.close()


def _count_rows_in_child(table: flightbay.RemoteTable, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(table.to_arrow().num_rows)
    except flightbay.FlightbayError as e:
        queue.put(str(e))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_handles_work_in_spawned_processes(client: flightbay.Client, name: str, method: str) -> None:
    t = client.upload(sample(1000), name)
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_count_rows_in_child, args=(t, queue))
    child.start()
    assert queue.get(timeout=120) == 1000
    child.join(timeout=60)
    assert child.exitcode == 0


def test_forked_child_refuses_instead_of_hanging(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(1000), name)
    assert t.to_arrow().num_rows == 1000  # the parent has a live connection when forking
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_count_rows_in_child, args=(t, queue))
    child.start()
    message = queue.get(timeout=60)
    child.join(timeout=60)
    assert "gRPC connections cannot be opened or used after fork()" in message
    assert "spawn" in message
    assert t.to_arrow().num_rows == 1000  # the parent's connection still works


def test_table_info_is_a_plain_value(client: flightbay.Client, name: str) -> None:
    t = client.upload(pa.table({"x": [1, 2, 3]}), name)
    info = t.info
    assert isinstance(info, flightbay.TableInfo)
    assert (info.id, info.num_rows, info.schema) == (t.id, 3, pa.schema([("x", pa.int64())]))
    assert pickle.loads(pickle.dumps(info)) == info
