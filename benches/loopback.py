"""The loopback TCP ceiling: how many bytes per second one TCP stream moves over 127.0.0.1 on this machine.

Uses ``iperf3`` (one stream, client and server on 127.0.0.1) when it is on PATH, else an equivalent copy with Python
sockets (a sender thread writes 1 MiB buffers, a receiver reads into a preallocated buffer). Prints one JSON object:

    {"method": "iperf3 3.12", "runs_mb_s": [...], "median_mb_s": ..., "min_mb_s": ..., "max_mb_s": ...}

MB are 10^6 bytes, as in every figure of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iperf3_runs(runs: int, seconds: float) -> tuple[str, list[float]]:
    version = subprocess.run(["iperf3", "--version"], check=False, capture_output=True, text=True).stdout.split()
    method = "iperf3 " + (version[1] if len(version) > 1 else "")
    seconds = max(1, round(seconds))  # iperf3 takes whole seconds; 0 would mean "forever"
    port = free_port()
    server = subprocess.Popen(
        ["iperf3", "--server", "--bind", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        results = []
        for _ in range(runs):
            out = None
            for _attempt in range(50):  # the server needs a moment to listen; bounded retries
                proc = subprocess.run(
                    ["iperf3", "--client", "127.0.0.1", "--port", str(port), "--time", str(seconds), "--json"],
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=seconds + 30,
                )
                if proc.returncode == 0:
                    out = json.loads(proc.stdout)
                    break
                time.sleep(0.1)
            if out is None:
                raise RuntimeError(f"iperf3 client failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
            results.append(out["end"]["sum_received"]["bits_per_second"] / 8 / 1e6)
        return method, results
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def socket_copy_runs(runs: int, seconds: float) -> tuple[str, list[float]]:
    chunk = 1 << 20
    results = []
    for _ in range(runs):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        received = [0]

        def receive(listener: socket.socket = listener, received: list[int] = received) -> None:
            conn, _ = listener.accept()
            buf = bytearray(chunk)
            view = memoryview(buf)
            with conn:
                while True:
                    n = conn.recv_into(view)
                    if n == 0:
                        return
                    received[0] += n

        receiver = threading.Thread(target=receive)
        receiver.start()
        payload = bytes(chunk)
        with socket.create_connection(listener.getsockname()) as sender:
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                sender.sendall(payload)
        receiver.join(timeout=60)
        elapsed = time.perf_counter() - start
        listener.close()
        results.append(received[0] / elapsed / 1e6)
    return "python socket copy (1 MiB sendall / recv_into)", results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    parser.add_argument("--method", choices=["auto", "iperf3", "socket"], default="auto")
    parser.add_argument("--out", help="write the JSON here as well as to stdout")
    args = parser.parse_args()

    use_iperf = args.method == "iperf3" or (args.method == "auto" and shutil.which("iperf3"))
    if use_iperf:
        try:
            method, runs = iperf3_runs(args.runs, args.seconds)
        except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
            if args.method == "iperf3":
                raise
            print(f"loopback: iperf3 failed ({e}); using a Python socket copy", file=sys.stderr)
            use_iperf = False
    if not use_iperf:
        method, runs = socket_copy_runs(args.runs, args.seconds)
    result = {
        "method": method,
        "seconds_per_run": args.seconds,
        "runs_mb_s": [round(r, 1) for r in runs],
        "median_mb_s": round(statistics.median(runs), 1),
        "min_mb_s": round(min(runs), 1),
        "max_mb_s": round(max(runs), 1),
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
