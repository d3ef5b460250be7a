"""Fixtures that run the real ``flightbay`` binary on 127.0.0.1 with an ephemeral port.

The binary is ``$FLIGHTBAY_BIN``, else ``target/ci/flightbay`` under the repository root.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import flightbay

ROOT = Path(__file__).resolve().parents[3]


def flightbay_bin() -> str:
    path = os.environ.get("FLIGHTBAY_BIN", str(ROOT / "target" / "ci" / "flightbay"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"flightbay binary not found at {path}; build it with `cargo build --profile ci`")
    return path


class Server:
    """A flightbay process on 127.0.0.1; ``uri`` is ``grpc://127.0.0.1:<port>``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        ready = tmp / "ready"
        self.log_path = tmp / "server.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            # --ephemeral: the data dir is thrown away, so shutdown need not write resident flights to it.
            [flightbay_bin(), "--port", "0", "--http-port", "off", "--ready-file", str(ready)]
            + ["--data-dir", str(tmp / "data"), "--ephemeral", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(f"flightbay exited with {self.proc.returncode}: {self.log_path.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("flightbay did not start within 30 s")
            time.sleep(0.02)
        self.uri = f"grpc://{ready.read_text().splitlines()[0].strip()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only add flights under unique names."""
    s = Server(tmp_path_factory.mktemp("server"), "--memory-limit", "2GiB")
    yield s
    s.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server, for tests that look at the whole store or stop it."""
    s = Server(tmp_path / "server", "--memory-limit", "1GiB")
    yield s
    s.stop()


@pytest.fixture
def client(shared_server: Server) -> Iterator[flightbay.Client]:
    with flightbay.connect(shared_server.uri) as c:
        yield c


@pytest.fixture
def fresh_client(server: Server) -> Iterator[flightbay.Client]:
    with flightbay.connect(server.uri) as c:
        yield c


@pytest.fixture
def name() -> str:
    """A name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


def sample(rows: int, seed: int = 42) -> pa.Table:
    """A table with the column types the tests care about."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "ts": pa.array(np.datetime64("2026-01-01T00:00:00", "ms") + np.arange(rows) * np.timedelta64(90, "s")),
            "sensor": pa.array(rng.integers(0, 10, rows, dtype=np.int32)),
            "value": pa.array(rng.normal(size=rows)),
            "label": pa.array([f"label-{i % 7}" for i in range(rows)]),
        }
    )
