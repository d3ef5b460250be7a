"""A flightbay process for the reliability scripts (``soak.py``, ``kill9.py``, ``logins.py``): start on 127.0.0.1 with
port 0, read the bound address from the ready file, sample RSS, stop gracefully or with SIGKILL.

Only loopback addresses are ever used.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def flightbay_bin() -> str:
    path = os.environ.get("FLIGHTBAY_BIN", str(ROOT / "target" / "ci" / "flightbay"))
    if not os.access(path, os.X_OK):
        raise SystemExit(f"flightbay binary not found at {path}; build it with `cargo build --profile ci`")
    return path


class Server:
    """A running ``flightbay``; ``uri`` is ``grpc://127.0.0.1:<port>``. ``peak_rss_mb`` is sampled every 50 ms."""

    def __init__(self, data_dir: Path, *args: str, log: Path | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        ready = data_dir.parent / f"{data_dir.name}.ready"
        ready.unlink(missing_ok=True)
        self.log_path = log or data_dir.parent / f"{data_dir.name}.log"
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [flightbay_bin(), "--host", "127.0.0.1", "--port", "0", "--http-port", "off", "--ready-file", str(ready),
             "--data-dir", str(data_dir), "--log", "warn", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"flightbay exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("flightbay did not start within 60 s")
            time.sleep(0.01)
        self.address = ready.read_text().splitlines()[0].strip()
        ready.unlink(missing_ok=True)
        assert self.address.startswith("127.0.0.1:"), self.address
        self.uri = f"grpc://{self.address}"
        self.peak_rss_mb = 0.0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while self._sampling and self.proc.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after ``timeout``)."""
        self._sampling = False
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._sampling = False
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


def grpc_code(error: BaseException) -> str:
    """The gRPC code behind a pyarrow Flight exception, by pyarrow's mapping of codes to exception classes."""
    import re

    import pyarrow as pa
    import pyarrow.flight as fl

    # pyarrow names the code in the message ("Flight returned unauthenticated error", "gRPC returned resource
    # exhausted error") and maps several codes to one exception class.
    named = re.search(r"returned ([a-z ]+?) error", str(error))
    if named:
        return named.group(1).upper().replace(" ", "_")

    pairs = [
        (fl.FlightUnavailableError, "UNAVAILABLE"),
        (fl.FlightTimedOutError, "DEADLINE_EXCEEDED"),
        (fl.FlightCancelledError, "CANCELLED"),
        (fl.FlightUnauthenticatedError, "UNAUTHENTICATED"),
        (fl.FlightUnauthorizedError, "PERMISSION_DENIED"),
        (fl.FlightInternalError, "INTERNAL"),
        (fl.FlightServerError, "SERVER_ERROR"),
        (pa.ArrowInvalid, "INVALID_ARGUMENT"),
        (KeyError, "NOT_FOUND"),
        (pa.ArrowNotImplementedError, "UNIMPLEMENTED"),
        (pa.ArrowCapacityError, "RESOURCE_EXHAUSTED"),
    ]
    for cls, code in pairs:
        if isinstance(error, cls):
            return code
    text = str(error)
    for code in ("RESOURCE_EXHAUSTED", "ALREADY_EXISTS", "Already exists", "resource exhausted"):
        if code in text:
            return code.upper().replace(" ", "_")
    return type(error).__name__


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]
