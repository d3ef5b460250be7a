"""TLS, mutual TLS and bearer-token auth against the real binary, with stock pyarrow and the flightbay client.

Certificates are made here with the ``openssl`` command into the test's temp dir; no key is committed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightbay_server import Server, flightbay_bin

StartServer = Callable[..., Server]

SECRET = "python-security-test-secret-0123"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=flightbay test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, ext in [
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "subjectAltName=DNS:client\nextendedKeyUsage=clientAuth\n"),
    ]:
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return {n: d / n for n in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"]}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "pki"
    d.mkdir()
    return make_pki(d)


def _tls_uri(server: Server) -> str:
    return f"grpc+tls://localhost:{server.address.rsplit(':', 1)[1]}"


def _health(client: flight.FlightClient, options: flight.FlightCallOptions | None = None) -> dict:
    import json

    results = list(client.do_action(flight.Action("health", b"{}"), options or flight.FlightCallOptions(timeout=10)))
    return json.loads(results[0].body.to_pybytes())


@needs_openssl
def test_tls_needs_the_right_root_certificate(start_server: StartServer, pki: dict[str, Path]) -> None:
    s = start_server(tls_cert=pki["server.pem"], tls_key=pki["server.key"])
    ok = flight.connect(_tls_uri(s), tls_root_certs=pki["ca.pem"].read_bytes())
    assert _health(ok)["status"] == "ok"
    ok.close()
    with pytest.raises(flight.FlightError):
        _health(flight.connect(_tls_uri(s)))  # system roots do not know the test CA
    with pytest.raises(flight.FlightError):
        _health(flight.connect(s.uri))  # plaintext to a TLS server

    import flightbay

    with flightbay.connect(_tls_uri(s), tls_root_certs=pki["ca.pem"]) as c:
        t = c.upload(pa.table({"x": [1, 2, 3]}), "t")
        assert t.num_rows == 3


@needs_openssl
def test_mutual_tls_refuses_clients_without_a_certificate(start_server: StartServer, pki: dict[str, Path]) -> None:
    s = start_server(tls_cert=pki["server.pem"], tls_key=pki["server.key"], tls_client_ca=pki["ca.pem"])
    root = pki["ca.pem"].read_bytes()
    with pytest.raises(flight.FlightError):
        _health(flight.connect(_tls_uri(s), tls_root_certs=root))
    ok = flight.connect(_tls_uri(s), tls_root_certs=root, cert_chain=pki["client.pem"].read_bytes(),
                        private_key=pki["client.key"].read_bytes())
    assert _health(ok)["status"] == "ok"
    ok.close()


def _users_file(tmp_path: Path) -> Path:
    import json

    def hash_of(password: str) -> str:
        out = subprocess.run([flightbay_bin(), "hash-password"], input=password + "\n", capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    users = {"users": {
        "alice": {"password_hash": hash_of("wonderland"), "grants": {"sales": "write"}},
        "bob": {"password_hash": hash_of("builder"), "grants": {"sales": "read"}},
    }}
    path = tmp_path / "users.json"
    path.write_text(json.dumps(users))
    return path


def _token(*grants: str) -> str:
    args = [flightbay_bin(), "token", "--secret", SECRET, "--user", "script"]
    for g in grants:
        args += ["--grant", g]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def test_bearer_auth_with_pyarrow_and_the_flightbay_client(start_server: StartServer, tmp_path: Path) -> None:
    s = start_server(jwt_secret=SECRET, users_file=_users_file(tmp_path))
    table = pa.table({"city": ["Oslo", "Rome"], "fare": [12.5, 30.0]})
    c = flight.connect(s.uri)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(c.list_flights())
    with pytest.raises(flight.FlightUnauthenticatedError):
        c.authenticate_basic_token("alice", "wrong")
    header = c.authenticate_basic_token("alice", "wonderland")
    options = flight.FlightCallOptions(headers=[header])
    writer, reader = c.do_put(flight.FlightDescriptor.for_path("sales", "trips"), table.schema, options)
    writer.write_table(table)
    writer.done_writing()
    reader.read()
    writer.close()
    assert [f.descriptor.path for f in c.list_flights(options=options)] == [[b"sales", b"trips"]]
    c.close()

    import flightbay

    with flightbay.connect(s.uri, username="bob", password="builder") as bob:
        assert bob.table("sales.trips").to_arrow().equals(table)
        with pytest.raises(flightbay.PermissionDenied):
            bob.upload(table, "sales.more")
    with flightbay.connect(s.uri, token=_token("sales:read")) as script:
        assert script.table("sales.trips").num_rows == 2
        with pytest.raises(flightbay.PermissionDenied):
            script.table("default.anything")
    with pytest.raises(flightbay.Unauthenticated):
        flightbay.connect(s.uri, username="bob", password="nope")


def test_admin_token_printed_without_users_file(start_server: StartServer) -> None:
    s = start_server(jwt_secret=SECRET)
    log = s.read_log()
    line = next(l for l in log.splitlines() if l.startswith("flightbay admin token"))
    token = line.rsplit(" ", 1)[1]
    c = flight.connect(s.uri)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    results = list(c.do_action(flight.Action("stats", b"{}"), options))
    assert results
    c.close()
