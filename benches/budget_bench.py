"""flightbay at its memory budget: ingest, durable ingest, parallel uploads, reading spilled flights, ops, peak RSS.

A cache server lives at its budget, so this measures it there: with ``--memory-limit 1GiB``, eight uploads of the
10M-row benchmark table (``flight_bench.make_table``, 65 536-row batches) to distinct names, then every flight
read back (most of them spilled), then ``sort_by`` as a JSON op next to the same sort as SQL, and ``resample``
cache hits; the same eight uploads with ``--durable``; drops among 3 000 spilled flights (what persisting the
catalog costs per change); and four parallel uploads into a full budget next to four parallel uploads into the
pyarrow in-memory server. Peak RSS is the server's ``VmHWM``.

    .venv/bin/python benches/budget_bench.py --bin target/release/flightbay [--rows 10000000] [--budget-mib 1024]
    .venv/bin/python benches/budget_bench.py --bin target/ci/flightbay --quick

``--quick`` uses 200k rows, a budget of 2.75 tables (the same shape) and 300 catalog flights, for CI: the figures
of a debug build mean nothing, only that every measurement ran and returned the right data. Prints one line per measurement
(``name  seconds  ok|FAILED: why``), then a Markdown table with the targets; ``--json`` writes the figures.
Runs on 127.0.0.1 only. Exits 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flight_bench import CHUNK_ROWS, Failed, check, make_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CALL = flight.FlightCallOptions(timeout=900)
UPLOADS = 8
PARALLEL = 4
SORT_RUNS = 3


class Process:
    """A server process on an ephemeral port, stopped on exit."""

    def __init__(self, argv: list[str], ready: Path, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        self.uri = "grpc://" + ready.read_text().strip().splitlines()[0]

    def client(self) -> flight.FlightClient:
        client = flight.FlightClient(self.uri, generic_options=[("grpc.use_local_subchannel_pool", 1)])
        client.wait_for_available(timeout=30)
        return client

    def vm_bytes(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise Failed(f"no {field} for pid {self.proc.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def upload(client: flight.FlightClient, name: str, table: pa.Table, flightbay: bool = True) -> float:
    """Uploads ``table`` as ``name``; returns the seconds it took until the PutResult (or, from the pyarrow server,
    which sends none, the end of the call) arrived."""
    t0 = time.perf_counter()
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(name), table.schema, options=CALL)
    writer.write_table(table, max_chunksize=CHUNK_ROWS)
    writer.done_writing()
    metadata = reader.read()
    elapsed = time.perf_counter() - t0
    writer.close()
    if flightbay:
        check(metadata is not None, f"{name}: no PutResult")
        rows = json.loads(metadata.to_pybytes())["num_rows"]
        check(rows == table.num_rows, f"{name}: stored {rows} rows")
    return elapsed


def action(client: flight.FlightClient, kind: str, body: dict) -> dict:
    results = list(client.do_action(flight.Action(kind, json.dumps(body).encode()), options=CALL))
    return json.loads(results[0].body.to_pybytes())


def info(client: flight.FlightClient, cmd: str | dict) -> tuple[flight.FlightInfo, dict]:
    text = cmd if isinstance(cmd, str) else json.dumps(cmd)
    got = client.get_flight_info(flight.FlightDescriptor.for_command(text), options=CALL)
    return got, json.loads(got.app_metadata)


def state(client: flight.FlightClient, name: str) -> str:
    got = client.get_flight_info(flight.FlightDescriptor.for_path(name), options=CALL)
    return json.loads(got.app_metadata)["state"]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.table = make_table(args.rows)
        self.nbytes = self.table.nbytes
        self.budget = args.budget_mib << 20 if args.budget_mib else int(self.nbytes * 2.75)
        self.tmp = Path(tempfile.mkdtemp(prefix="flightbay-budget-"))
        self.results: dict[str, Any] = {"rows": args.rows, "table_bytes": self.nbytes, "budget_bytes": self.budget}
        self.failures: list[str] = []

    def mb_s(self, seconds: float, tables: float = 1) -> float:
        return round(self.nbytes * tables / seconds / 1e6, 1)

    def measure(self, key: str, fn: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            self.results[key] = fn()
            status = "ok"
        except Exception as e:  # record, keep going, fail at the end
            self.results[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
            self.failures.append(key)
            status = "FAILED: " + self.results[key]["error"]
        print(f"  {key:<28} {time.perf_counter() - started:6.1f}s  {status}", file=sys.stderr, flush=True)

    def flightbay(self, label: str, *extra: str) -> Process:
        d = self.tmp / label
        d.mkdir()
        argv = [self.args.bin, "--port", "0", "--http-port", "off", "--ready-file", str(d / "ready"), "--data-dir", str(d / "data")]
        argv += ["--memory-limit", str(self.budget), "--log", "warn", *extra]
        return Process(argv, d / "ready", d / "log")

    # --- the eight uploads, then reads and ops (plain) or just the uploads (durable)

    def uploads(self, server: Process) -> dict:
        client = server.client()
        seconds = [upload(client, f"t{i}", self.table) for i in range(UPLOADS)]
        stats = action(client, "stats", {})["store"]
        check(stats["resident_bytes"] <= self.budget, f"resident {stats['resident_bytes']} over the budget")
        per_upload = [self.mb_s(s) for s in seconds]
        room = [mb for mb, before in zip(per_upload, self.fill_before()) if before + self.nbytes <= self.budget]
        full = [mb for mb, before in zip(per_upload, self.fill_before()) if before >= self.budget]
        return {
            "per_upload_mb_s": per_upload,
            "with_room_mb_s": round(statistics.median(room), 1) if room else None,
            "at_budget_mb_s": round(statistics.median(full), 1) if full else None,
            "all_mb_s": round(statistics.median(per_upload), 1),
            "spilled_flights": stats["flights_spilled"],
            "writer_waits": stats["writer_waits"],
            "peak_rss_bytes": server.vm_bytes("VmHWM"),
        }

    def fill_before(self) -> list[int]:
        """Bytes already stored before each upload (what the budget holds or would hold)."""
        return [i * self.nbytes for i in range(UPLOADS)]

    def read_back(self, server: Process) -> dict:
        client = server.client()
        spilled, resident = [], []
        for i in range(UPLOADS):
            name = f"t{i}"
            where = state(client, name)
            ticket = client.get_flight_info(flight.FlightDescriptor.for_path(name), options=CALL).endpoints[0].ticket
            t0 = time.perf_counter()
            got = client.do_get(ticket, options=CALL).read_all()
            elapsed = time.perf_counter() - t0
            check(got.num_rows == self.table.num_rows, f"{name}: {got.num_rows} rows")
            if i in (0, UPLOADS - 1):
                check(got.equals(self.table), f"{name} ({where}) came back different")
            del got
            (spilled if where == "spilled" else resident).append(self.mb_s(elapsed))
        check(bool(spilled), "no flight was spilled")
        return {
            "spilled_mb_s": round(statistics.median(spilled), 1),
            "spilled_runs": spilled,
            "resident_runs": resident,
        }

    def ops(self, server: Process) -> dict:
        client = server.client()
        source = f"t{UPLOADS - 1}"
        out: dict[str, Any] = {"source_state": state(client, source)}
        json_sort = {"op": "sort_by", "source": source, "keys": [["value", "descending"]]}
        sql_sort = f"SELECT * FROM {source} ORDER BY value DESC"
        # Alternated, so that neither form always pays for making room for its result at the full budget.
        runs: dict[str, list[float]] = {"sort_by_json_ms": [], "order_by_sql_ms": []}
        for _ in range(SORT_RUNS):
            for label, cmd in (("sort_by_json_ms", json_sort), ("order_by_sql_ms", sql_sort)):
                t0 = time.perf_counter()
                got, meta = info(client, cmd)
                runs[label].append(round((time.perf_counter() - t0) * 1000, 1))
                check(meta["cache"] == "miss", f"{label} was a cache hit")
                check(got.total_records == self.table.num_rows, f"{label}: {got.total_records} rows")
                action(client, "drop", {"id": meta["id"]})
        for label, values in runs.items():
            out[label] = round(statistics.median(values), 1)
            out[label.replace("_ms", "_runs_ms")] = values
        resample = {
            "op": "resample",
            "source": source,
            "time_column": "ts",
            "every": "1h",
            "aggregations": {"value": "mean", "sensor": "max"},
        }
        _, first = info(client, resample)
        hits = []
        for _ in range(50):
            t0 = time.perf_counter()
            _, meta = info(client, resample)
            hits.append((time.perf_counter() - t0) * 1000)
            check(meta["cache"] == "hit" and meta["id"] == first["id"], "resample was recomputed")
        out["resample_hit_p50_ms"] = round(statistics.median(hits), 2)
        out["peak_rss_bytes"] = server.vm_bytes("VmHWM")
        return out

    # --- parallel uploads into a full budget, and into the pyarrow server

    def parallel(self, server: Process, prefill: int, flightbay: bool = True) -> dict:
        clients = [server.client() for _ in range(PARALLEL)]
        for i in range(prefill):
            upload(clients[0], f"fill{i}", self.table)
        with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda p: upload(p[1], f"par{p[0]}", self.table, flightbay), enumerate(clients)))
            elapsed = time.perf_counter() - t0
        for c in clients:
            c.close()
        return {"aggregate_mb_s": self.mb_s(elapsed, PARALLEL), "peak_rss_bytes": server.vm_bytes("VmHWM")}

    # --- the catalog: drops among many spilled flights

    def catalog_drops(self, server: Process) -> dict:
        """Drop latency with ``CATALOG_FLIGHTS`` spilled flights in the catalog (each drop is made durable before
        it answers, so this is what persisting the catalog costs per change)."""
        client = server.client()
        small = self.table.slice(0, 10)
        for i in range(self.args.catalog_flights):
            upload(client, f"c{i}", small)
            action(client, "spill", {"name": f"c{i}"})
        drops = []
        for i in range(0, self.args.catalog_flights, max(1, self.args.catalog_flights // 300)):
            t0 = time.perf_counter()
            action(client, "drop", {"name": f"c{i}"})
            drops.append((time.perf_counter() - t0) * 1000)
        drops.sort()
        return {
            "flights": self.args.catalog_flights,
            "drops": len(drops),
            "p50_ms": round(drops[len(drops) // 2], 2),
            "p99_ms": round(drops[min(len(drops) - 1, len(drops) * 99 // 100)], 2),
        }

    def reference(self) -> Process:
        d = self.tmp / "reference"
        d.mkdir()
        argv = [sys.executable, str(ROOT / "benches/reference_server.py"), "--port", "0", "--ready-file", str(d / "ready")]
        return Process(argv, d / "ready", d / "log")

    def run(self) -> dict:
        servers: list[Process] = []
        try:
            plain = self.flightbay("plain")
            servers.append(plain)
            self.measure("budget_uploads", lambda: self.uploads(plain))
            self.measure("budget_read_back", lambda: self.read_back(plain))
            self.measure("budget_ops", lambda: self.ops(plain))
            self.results["plain_peak_rss_bytes"] = plain.vm_bytes("VmHWM")
            plain.stop()
            durable = self.flightbay("durable", "--durable")
            servers.append(durable)
            self.measure("budget_durable_uploads", lambda: self.uploads(durable))
            self.results["durable_peak_rss_bytes"] = durable.vm_bytes("VmHWM")
            durable.stop()
            catalog = self.flightbay("catalog")
            servers.append(catalog)
            self.measure("catalog_drops", lambda: self.catalog_drops(catalog))
            catalog.stop()
            full = self.flightbay("parallel")
            servers.append(full)
            prefill = max(1, self.budget // self.nbytes)
            self.measure("budget_parallel_uploads", lambda: self.parallel(full, prefill))
            full.stop()
            ref = self.reference()
            servers.append(ref)
            self.measure("reference_parallel_uploads", lambda: self.parallel(ref, 0, flightbay=False))
            ref.stop()
        finally:
            for s in servers:
                s.stop()
            subprocess.run(["rm", "-rf", str(self.tmp)], check=False)
        self.results["targets"] = self.targets()
        return self.results

    def targets(self) -> list[dict]:
        r = self.results

        def get(key: str, field: str) -> float | None:
            v = r.get(key)
            return v.get(field) if isinstance(v, dict) else None

        room = get("budget_uploads", "with_room_mb_s")
        full = get("budget_uploads", "at_budget_mb_s")
        durable = get("budget_durable_uploads", "all_mb_s")
        par = get("budget_parallel_uploads", "aggregate_mb_s")
        ref = get("reference_parallel_uploads", "aggregate_mb_s")
        spilled = get("budget_read_back", "spilled_mb_s")
        rss = max(r.get("plain_peak_rss_bytes", 0), r.get("durable_peak_rss_bytes", 0))
        rss_limit = 1.1 * self.budget + 150e6

        def ratio(a: float | None, b: float | None) -> float | None:
            return round(a / b, 2) if a and b else None

        rows = [
            ("ingest at a full budget / with room", ratio(full, room), 0.7),
            ("--durable ingest / plain with room", ratio(durable, room), 0.6),
            ("4 parallel uploads at the budget / pyarrow server", ratio(par, ref), 0.5),
            ("reading spilled flights, GB/s", round(spilled / 1000, 2) if spilled else None, 1.0),
            ("peak RSS / (1.1 x budget + 150 MB)", round(rss / rss_limit, 2) if rss else None, None),
        ]
        out = []
        for name, value, target in rows:
            met = None if value is None else (value >= target if target is not None else value <= 1.0)
            out.append({"target": name, "value": value, "goal": target if target is not None else "<= 1", "met": met})
        return out


def markdown(results: dict) -> str:
    lines = ["| measurement | figure | goal | met |", "|---|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met} |")
    u = results.get("budget_uploads", {})
    d = results.get("budget_durable_uploads", {})
    o = results.get("budget_ops", {})
    if "per_upload_mb_s" in u:
        lines.append(f"| plain uploads, MB/s each | {u['per_upload_mb_s']} | | |")
    if "per_upload_mb_s" in d:
        lines.append(f"| durable uploads, MB/s each | {d['per_upload_mb_s']} | | |")
    c = results.get("catalog_drops", {})
    if "p50_ms" in c:
        lines.append(f"| drop among {c['flights']} spilled flights, p50 / p99 ms | {c['p50_ms']} / {c['p99_ms']} | | |")
    for key in ("sort_by_json_ms", "order_by_sql_ms", "resample_hit_p50_ms"):
        if key in o:
            lines.append(f"| {key.replace('_', ' ')} | {o[key]} | | |")
    for key in ("plain_peak_rss_bytes", "durable_peak_rss_bytes"):
        if key in results:
            lines.append(f"| {key.replace('_', ' ')} (MB) | {results[key] / 1e6:.0f} | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("FLIGHTBAY_BIN", str(ROOT / "target/release/flightbay")))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--budget-mib", type=int, default=1024)
    parser.add_argument("--catalog-flights", type=int, default=3000, help="flights in the catalog for drops")
    parser.add_argument("--quick", action="store_true", help="200k rows, a budget of 2.75 tables, 300 flights")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.budget_mib, args.catalog_flights = 200_000, 0, 300
    bench = Bench(args)
    print(f"budget benchmark: {args.rows} rows ({bench.nbytes / 1e6:.0f} MB), budget {bench.budget / 1e6:.0f} MB",
          file=sys.stderr)
    results = bench.run()
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
