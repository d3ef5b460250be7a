"""Spill figures: DoGet of a 10M-row flight from memory vs from its Parquet spill file, and the server's peak RSS
while three times its memory budget is pushed through it.

    .venv/bin/python benches/spill_bench.py --bin target/release/flightbay [--rows 10000000] [--budget-mib 1024]

Prints a Markdown table and writes JSON next to it (``--json``). Runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight


def make_table(rows: int, seed: int = 42) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "ts": pa.array(np.arange(rows, dtype=np.int64) * 1000, pa.timestamp("ms")),
            "sensor": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
            "value": pa.array(rng.normal(size=rows)),
            "label": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, 20, rows, dtype=np.int32)), pa.array([f"label-{i}" for i in range(20)])
            ).cast(pa.string()),
        }
    )


class Server:
    def __init__(self, binary: str, tmp: Path, *args: str) -> None:
        ready = tmp / "ready"
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--http-port", "off", "--ready-file", str(ready), "--data-dir", str(tmp / "data"), "--log", "warn", *args]
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("flightbay did not start")
            time.sleep(0.02)
        self.client = flight.connect(f"grpc://{ready.read_text().splitlines()[0].strip()}")

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    def action(self, kind: str, body: dict) -> dict:
        result = list(self.client.do_action(flight.Action(kind, json.dumps(body).encode())))
        return json.loads(result[0].body.to_pybytes())

    def upload(self, name: str, table: pa.Table) -> dict:
        writer, reader = self.client.do_put(flight.FlightDescriptor.for_path(name), table.schema)
        writer.write_table(table, max_chunksize=65_536)
        writer.done_writing()
        meta = json.loads(reader.read().to_pybytes())
        writer.close()
        return meta

    def get(self, name: str) -> pa.Table:
        info = self.client.get_flight_info(flight.FlightDescriptor.for_path(name))
        return pa.concat_tables(self.client.do_get(ep.ticket).read_all() for ep in info.endpoints)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(nbytes: int, seconds: list[float]) -> dict:
    rates = [nbytes / s / 1e6 for s in seconds]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/flightbay")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--budget-mib", type=int, default=1024)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", default="docs/bench-results/spill.json")
    args = p.parse_args()

    table = make_table(args.rows)
    results: dict = {"rows": args.rows, "table_bytes": table.nbytes}
    with tempfile.TemporaryDirectory() as d:
        s = Server(args.bin, Path(d), "--memory-limit", "8GiB")
        try:
            s.upload("t", table)
            assert s.get("t").equals(table)
            results["doget_memory_mb_s"] = summary(table.nbytes, timed(lambda: s.get("t"), args.reps))
            s.action("spill", {"name": "t"})
            assert s.get("t").equals(table)
            results["doget_spilled_mb_s"] = summary(table.nbytes, timed(lambda: s.get("t"), args.reps))
        finally:
            s.stop()

    budget = args.budget_mib << 20
    with tempfile.TemporaryDirectory() as d:
        s = Server(args.bin, Path(d), "--memory-limit", f"{args.budget_mib}MiB")
        try:
            pushed = 0
            i = 0
            while pushed < 3 * budget:
                s.upload(f"p{i}", table)
                pushed += table.nbytes
                i += 1
            stats = s.action("stats", {})["store"]
            results["pressure"] = {
                "budget_bytes": budget,
                "pushed_bytes": pushed,
                "peak_rss_bytes": s.peak_rss(),
                "peak_resident_bytes": stats["peak_resident_bytes"],
                "spills": stats["spills"],
                "target_rss_bytes": int(budget * 1.1 + 150e6),
            }
            assert s.get("p0").equals(table)
        finally:
            s.stop()

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    m, sp, pr = results["doget_memory_mb_s"], results["doget_spilled_mb_s"], results["pressure"]
    print(f"| figure | median | min | max |\n|---|---|---|---|")
    print(f"| DoGet {args.rows:,} rows from memory (MB/s) | {m['median']:.0f} | {m['min']:.0f} | {m['max']:.0f} |")
    print(f"| DoGet {args.rows:,} rows from a spill file (MB/s) | {sp['median']:.0f} | {sp['min']:.0f} | {sp['max']:.0f} |")
    print(
        f"\npushed {pr['pushed_bytes'] / 2**20:.0f} MiB through a {args.budget_mib} MiB budget: "
        f"peak RSS {pr['peak_rss_bytes'] / 2**20:.0f} MiB (target <= {pr['target_rss_bytes'] / 2**20:.0f} MiB), "
        f"peak resident {pr['peak_resident_bytes'] / 2**20:.0f} MiB, {pr['spills']} spills"
    )


if __name__ == "__main__":
    main()
