"""Fixtures for the client's tests against the real ``flightbay`` binary.

The server process comes from ``tests/python/flightbay_server.py`` at the repository root, the fixture the server's
own tests use too (loaded by ``-p flightbay_server`` in ``pyproject.toml``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pytest
from flightbay_server import Server, flightbay_bin

import flightbay

__all__ = ["Server", "flightbay_bin", "sample"]


@pytest.fixture(scope="session")
def shared_server() -> Iterator[Server]:
    """One server for the tests that only add flights under unique names."""
    with Server(memory_limit="2GiB") as s:
        yield s


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A fresh server, for tests that look at the whole store or stop it."""
    return start_server(memory_limit="1GiB")


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
