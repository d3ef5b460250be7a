"""Server errors arrive as flightbay exceptions that keep the server's message and wrap pyarrow's."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import flight

import flightbay
from flightbay.errors import translate

from .conftest import Server, flightbay_bin, sample


def test_unknown_flight_is_not_found(client: flightbay.Client) -> None:
    with pytest.raises(flightbay.NotFound) as info:
        client.table("no_such_table")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no flight is named default.no_such_table"
    assert isinstance(info.value.__cause__, pa.ArrowKeyError)
    with pytest.raises(KeyError):
        client[10**9]
    with pytest.raises(flightbay.NotFound):
        client.drop("no_such_table")


def test_bad_arguments_are_invalid_request(client: flightbay.Client, name: str) -> None:
    t = client.upload(sample(10), name)
    with pytest.raises(flightbay.InvalidRequest) as info:
        client._endpoints(t.id, parts=0)
    assert isinstance(info.value, ValueError)
    assert "between 1 and 1024" in info.value.server_message
    with pytest.raises(flightbay.InvalidRequest, match="schema"):
        client.upload(pa.table({"other": [1]}), name, mode="append")
    with pytest.raises(flightbay.InvalidRequest):
        client.do_action("drop", {"id": 1, "name": "x"})
    with pytest.raises(flightbay.InvalidRequest):
        client.table("f12x.y.z")


def test_taken_name_is_already_exists(client: flightbay.Client, name: str) -> None:
    client.upload(sample(3), name)
    with pytest.raises(flightbay.AlreadyExists) as info:
        client.upload(sample(3), name)
    assert info.value.server_message.startswith(f"name default.{name} already points at flight")


def test_unknown_action_is_unsupported(client: flightbay.Client) -> None:
    with pytest.raises(flightbay.Unsupported) as info:
        client.do_action("explode")
    assert isinstance(info.value, NotImplementedError)
    assert "unknown action" in str(info.value)


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client dials it
    with (
        flightbay.connect(f"grpc://127.0.0.1:{port}", timeout=5) as c,
        pytest.raises(flightbay.Unavailable) as info,
    ):
        c.list_tables()
    assert isinstance(info.value, ConnectionError)


def test_memory_budget_message_maps_to_memory_budget_exceeded() -> None:
    # The exact text pyarrow 26 produces for RESOURCE_EXHAUSTED (it has no Flight class for that code).
    message = "flightbay: memory budget exceeded: this flight already holds 1048576 bytes"
    error = pa.ArrowInvalid(
        f"gRPC returned resource exhausted error, with message: {message}. gRPC client debug context: "
        f"RESOURCE_EXHAUSTED:{message}. Client context: OK"
    )
    ours = translate(error)
    assert type(ours) is flightbay.MemoryBudgetExceeded
    assert ours.server_message == message
    # Resource exhaustion that is not the server's budget (e.g. a gRPC message limit) stays generic.
    other = translate(pa.ArrowInvalid("gRPC returned resource exhausted error, with message: message too large"))
    assert type(other) is flightbay.FlightbayError


def test_memory_budget_from_the_server(start_server: Callable[..., Server]) -> None:
    # "Memory and spill space both full": a server that can spill needs a disk limit too before it refuses.
    help_text = subprocess.run([flightbay_bin(), "--help"], capture_output=True, text=True, check=True).stdout
    disk = ["--disk-limit", "1MiB"] if "--disk-limit" in help_text else []
    s = start_server(*disk, memory_limit="1MiB")
    with flightbay.connect(s.uri) as c:
        with pytest.raises(flightbay.MemoryBudgetExceeded, match="^flightbay: "):
            c.upload(pa.table({"x": np.arange(1_000_000)}), "big")
        assert c.list_tables() == []


class _AuthServer(flight.FlightServerBase):
    """A pyarrow Flight server that demands a bearer token, to check the client's auth and error mapping."""

    def __init__(self) -> None:
        self.seen: list[dict[str, list[str]]] = []
        super().__init__("grpc://127.0.0.1:0", auth_handler=_NoopAuth(), middleware={"auth": _AuthFactory(self)})

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes):  # type: ignore[override]
        return iter([])

    def do_action(self, context: flight.ServerCallContext, action: flight.Action):  # type: ignore[override]
        if action.type == "deny":
            raise flight.FlightUnauthorizedError("flightbay: no write grant on namespace sales")
        yield flight.Result(json.dumps({"ok": True}).encode())


class _NoopAuth(flight.ServerAuthHandler):
    """Lets Handshake through; the middleware below checks the headers (as flightbay's server does)."""

    def authenticate(self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader) -> None:
        pass

    def is_valid(self, token: bytes) -> str:
        return ""


class _AuthFactory(flight.ServerMiddlewareFactory):
    def __init__(self, server: _AuthServer) -> None:
        self.server = server

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> flight.ServerMiddleware | None:
        self.server.seen.append(headers)
        auth = headers.get("authorization", [""])[0]
        if auth.startswith("Basic "):
            import base64

            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != ("ada", "secret"):
                raise flight.FlightUnauthenticatedError("flightbay: wrong username or password")
            return _Issue()
        if auth != "Bearer t0ken":
            raise flight.FlightUnauthenticatedError("flightbay: missing or invalid bearer token")
        return None


class _Issue(flight.ServerMiddleware):
    def sending_headers(self) -> dict[str, str]:
        return {"authorization": "Bearer t0ken"}


@pytest.fixture
def auth_server():
    s = _AuthServer()
    yield s
    s.shutdown()


def test_credentials_and_auth_errors(auth_server: _AuthServer) -> None:
    uri = f"grpc://127.0.0.1:{auth_server.port}"
    with (
        flightbay.connect(uri) as anonymous,
        pytest.raises(flightbay.Unauthenticated, match="missing or invalid bearer token"),
    ):
        anonymous.list_tables()
    with pytest.raises(flightbay.Unauthenticated, match="wrong username or password"):
        flightbay.connect(uri, username="ada", password="wrong")
    with flightbay.connect(uri, username="ada", password="secret") as c:  # handshake swaps basic for bearer
        assert c.list_tables() == []
        assert c.do_action("ok") == {"ok": True}
        with pytest.raises(flightbay.PermissionDenied) as info:
            c.do_action("deny")
        assert info.value.server_message == "flightbay: no write grant on namespace sales"
    with flightbay.connect(uri, token="t0ken") as c:
        assert c.list_tables() == []
    assert auth_server.seen[-1]["authorization"] == ["Bearer t0ken"]
    with pytest.raises(ValueError):
        flightbay.connect(uri, token="t0ken", username="ada")


class _TlsServer(flight.FlightServerBase):
    def list_flights(self, context: flight.ServerCallContext, criteria: bytes):  # type: ignore[override]
        return iter([])


def test_tls_root_certificates(tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    pair = flight.CertKeyPair(cert=cert.read_bytes(), key=key.read_bytes())
    server = _TlsServer("grpc+tls://127.0.0.1:0", tls_certificates=[pair])
    try:
        uri = f"grpc+tls://127.0.0.1:{server.port}"
        for roots in (cert, str(cert), cert.read_bytes(), cert.read_text()):  # a path, or the PEM itself
            with flightbay.connect(uri, tls_root_certs=roots, timeout=10) as c:
                assert c.list_tables() == []
        # The system roots do not know this certificate.
        with flightbay.connect(uri, timeout=10) as untrusted, pytest.raises(flightbay.Unavailable):
            untrusted.list_tables()
    finally:
        server.shutdown()
