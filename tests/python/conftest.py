"""Fixtures that run the real ``flightbay`` binary on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flightbay_bin() -> str:
    path = os.environ.get("FLIGHTBAY_BIN", str(ROOT / "target" / "ci" / "flightbay"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"flightbay binary not found at {path}; build it with `cargo build --profile ci`")
    return path


class Server:
    """A flightbay process; ``uri`` is ``grpc://127.0.0.1:<port>``, ``http`` its HTTP listener's ``http://…``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.data_dir = tmp / "data"
        ready = tmp / "ready"
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(
            [
                flightbay_bin(),
                "--port",
                "0",
                "--http-port",
                "0",
                "--ready-file",
                str(ready),
                "--data-dir",
                str(self.data_dir),
                *args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"flightbay exited with {self.proc.returncode}: {(tmp / 'server.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("flightbay did not start")
            time.sleep(0.02)
        # First line: the Flight host:port; second: http://host:port of the HTTP listener.
        lines = ready.read_text().splitlines()
        self.address = lines[0].strip()
        self.uri = f"grpc://{self.address}"
        self.http = lines[1].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path, "--memory-limit", "2GiB", "--ephemeral")
    yield s
    s.stop()
