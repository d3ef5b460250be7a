"""The real ``flightbay`` binary as a test fixture, shared by every Python suite (a pytest plugin).

``tests/python`` loads it from its ``conftest.py`` and ``clients/python/tests`` through ``-p flightbay_server`` in
``clients/python/pyproject.toml``. The binary is ``$FLIGHTBAY_BIN``, else ``target/ci/flightbay`` under the
repository root.

A :class:`Server` listens on 127.0.0.1 on a port the system picks (``--port 0``) and says where in its
``--ready-file``; the HTTP listener is off unless asked for. Its data directory and log live in a directory of their
own, and :meth:`Server.stop` ends the process (SIGTERM, then SIGKILL after 20 s) and removes that directory when the
server made it. The ``start_server`` fixture starts servers that are stopped when the test ends, however it ends::

    def test_something(start_server):
        server = start_server(memory_limit="1GiB", http=True)
        client = pyarrow.flight.connect(server.uri)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Server", "flightbay_bin", "start_server"]

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a server may take to write its ready file, and to exit once asked to stop.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def flightbay_bin() -> str:
    """The server binary: ``$FLIGHTBAY_BIN``, else ``target/ci/flightbay``."""
    path = os.environ.get("FLIGHTBAY_BIN", str(ROOT / "target" / "ci" / "flightbay"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"flightbay binary not found at {path}; build it with `cargo build --profile ci`")
    return path


class Server:
    """A running flightbay process.

    Parameters
    ----------
    directory : Path, optional
        Where the data dir (``data``), the ready file and the log (``server.log``) go. By default a new temporary
        directory, removed by :meth:`stop`; a given one is left in place.
    *args : str
        More command-line flags, passed as they are.
    memory_limit : str, optional
        ``--memory-limit`` (``"1GiB"``, ``"1MiB"``, a byte count); the server's default when None.
    http : bool, default False
        Start the HTTP listener (metrics, health, dashboard) on a free port; :attr:`http` is its ``http://…``.
    ephemeral : bool, default True
        ``--ephemeral``: the data dir is thrown away, so shutdown need not write resident flights to it.
    tls_cert, tls_key, tls_client_ca : Path, optional
        ``--tls-cert``/``--tls-key`` serve TLS; ``--tls-client-ca`` also asks clients for a certificate.
    jwt_secret : str, optional
        ``--jwt-secret``: bearer-token auth on.
    users_file : Path, optional
        ``--users-file``: users who may log in with a password.

    Attributes
    ----------
    address : str
        ``127.0.0.1:<port>`` of the Flight listener.
    uri : str
        ``grpc://127.0.0.1:<port>``.
    http : str or None
        ``http://127.0.0.1:<port>`` of the HTTP listener, or None when it is off.
    proc : subprocess.Popen
        The process.
    log_path : Path
        Its stdout and stderr.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *args: str,
        memory_limit: str | None = None,
        http: bool = False,
        ephemeral: bool = True,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_client_ca: Path | None = None,
        jwt_secret: str | None = None,
        users_file: Path | None = None,
    ) -> None:
        self._owned = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="flightbay-test-")) if directory is None else directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "server.log"
        ready = self.directory / "ready"
        command = [flightbay_bin(), "--port", "0", "--http-port", "0" if http else "off"]
        command += ["--ready-file", str(ready), "--data-dir", str(self.data_dir)]
        options: list[tuple[str, object | None]] = [
            ("--memory-limit", memory_limit),
            ("--tls-cert", tls_cert),
            ("--tls-key", tls_key),
            ("--tls-client-ca", tls_client_ca),
            ("--jwt-secret", jwt_secret),
            ("--users-file", users_file),
        ]
        command += [part for flag, value in options if value is not None for part in (flag, str(value))]
        command += ["--ephemeral"] if ephemeral else []
        command += args
        # The child writes to its own copy of the descriptor; this process need not keep the file open.
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            lines = self._wait_ready(ready)
        except BaseException:
            self.stop()
            raise
        # First line: the Flight host:port; second, when the HTTP listener is on: its http://host:port.
        self.address = lines[0].strip()
        self.uri = f"grpc://{self.address}"
        self.http: str | None = lines[1].strip() if http else None

    def _wait_ready(self, ready: Path) -> list[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            lines = ready.read_text().splitlines() if ready.exists() else []
            if lines and lines[0].strip():
                return lines
            if self.proc.poll() is not None:
                raise RuntimeError(f"flightbay exited with {self.proc.returncode}: {self.read_log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"flightbay did not start within {START_TIMEOUT:.0f} s: {self.read_log()}")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        """The Flight port."""
        return int(self.address.rsplit(":", 1)[1])

    def read_log(self) -> str:
        """What the server has printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """End the process if it still runs (SIGTERM, then SIGKILL); remove the directory if this server made it.

        Safe to call more than once, and after the process exited by itself.
        """
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<flightbay test server {self.uri} pid {self.proc.pid}>"


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """``start_server(*args, **options) -> Server`` (see :class:`Server`); every server stops when the test ends."""
    started: list[Server] = []

    def start(*args: str, **options: object) -> Server:
        server = Server(None, *args, **options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
