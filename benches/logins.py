"""What password guessing costs the server: RSS before and at peak while N bogus Basic logins run in parallel, and
how many passwords per second one client can try in sequence.

    python benches/logins.py                 # 48 parallel bogus logins, then 10 s of sequential guessing

Starts flightbay with auth on and a users file of one user, on 127.0.0.1 only. Prints one line per figure and one
JSON line.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serverproc import Server, flightbay_bin, grpc_code  # noqa: E402


def basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [(b"authorization", f"Basic {token}".encode())]


def attempt(uri: str, user: str, password: str) -> str:
    client = fl.connect(uri)
    try:
        options = fl.FlightCallOptions(headers=basic(user, password), timeout=120)
        list(client.do_action(fl.Action("health", b"{}"), options))
        return "OK"
    except Exception as e:  # noqa: BLE001 - counted by code
        return grpc_code(e)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flightbay-logins-") as tmp:
        hashed = subprocess.run([flightbay_bin(), "hash-password"], input="right-password\n", capture_output=True,
                                text=True, check=True).stdout.strip()
        users = Path(tmp) / "users.json"
        users.write_text(json.dumps({"users": {"alice": {"password_hash": hashed, "grants": {"*": "read"}}}}))
        server = Server(Path(tmp) / "data", "--jwt-secret", "logins-bench-secret-0123456789",
                        "--users-file", str(users), "--ephemeral")
        try:
            time.sleep(0.5)
            before = server.rss_mb()
            codes: collections.Counter = collections.Counter()
            lock = threading.Lock()

            def one(i: int) -> None:
                code = attempt(server.uri, f"nobody{i}", "guess")
                with lock:
                    codes[code] += 1

            threads = [threading.Thread(target=one, args=(i,)) for i in range(args.parallel)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            parallel_s = time.monotonic() - started
            peak = server.peak_rss_mb
            # Sequential guessing of one known user's password from one client.
            tries = collections.Counter()
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                tries[attempt(server.uri, "alice", f"guess{sum(tries.values())}")] += 1
            rate = sum(tries.values()) / args.seconds
        finally:
            server.stop()
    print(f"{args.parallel} parallel bogus logins: RSS {before:.0f} MB before, {peak:.0f} MB peak, "
          f"{parallel_s:.1f}s, codes {dict(codes)}")
    print(f"sequential guessing of one user: {rate:.1f} attempts/s over {args.seconds:.0f}s, codes {dict(tries)}")
    print(json.dumps({"parallel": args.parallel, "rss_before_mb": round(before), "rss_peak_mb": round(peak),
                      "parallel_codes": dict(codes), "guess_rate_per_s": round(rate, 1),
                      "guess_codes": dict(tries)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
