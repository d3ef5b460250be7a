"""flightbay next to a pyarrow in-memory Flight server and the loopback ceiling, measured with the stock pyarrow client.

``benches/run.sh`` starts the servers and calls this script; run it by hand only against servers you started:

    python benches/flight_bench.py --flightbay grpc://127.0.0.1:PORT --flightbay-pid PID \\
        --reference grpc://127.0.0.1:PORT --reference-pid PID --loopback loopback.json --json out.json

The table is seeded (numpy seed 42): ``id`` int64, ``ts`` timestamp[ms], ``sensor`` int32 (100 values), ``value``
float64 (normal), ``label`` string (20 values), written in 65 536-row batches (about 2.6 MB per message). MB are
10^6 bytes; MB/s is ``table.nbytes`` divided by wall time. Every figure is the median of ``--reps`` runs after
``--warmup`` unmeasured ones, with min and max; the runs of flightbay and the reference alternate so both see the
same background load. Latencies are per call, reported as the median over runs of each run's p50 and p99.

Exits 1 if any measurement failed or returned wrong data (the JSON still lists what did work).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

ROOT = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 65_536
CALL = flight.FlightCallOptions(timeout=600)  # no call may hang the run
MARK_BEGIN = "<!-- results:begin (written by benches/flight_bench.py) -->"
MARK_END = "<!-- results:end -->"

# The queries. The cache-hit ones differ from the recompute ones so the two phases never share a cache entry.
HIT_SQL = "SELECT label, max(value) AS max_value FROM bench GROUP BY label"
HIT_OP = {"op": "filter", "source": "bench", "predicate": "sensor < 10"}
GROUP_BY_SQL = "SELECT sensor, avg(value) AS mean_value, count(*) AS n FROM bench GROUP BY sensor"
SORT_OP = {"op": "sort_by", "source": "bench", "keys": [["value", "descending"]]}


# ---------------------------------------------------------------------------------------------------------------
# data and statistics


def make_table(rows: int, seed: int = 42) -> pa.Table:
    """The benchmark table, in 65 536-row chunks."""
    rng = np.random.default_rng(seed)
    labels = pa.array([f"label-{i}" for i in range(20)])
    codes = pa.array(rng.integers(0, 20, rows, dtype=np.int32))
    ts = np.datetime64("2024-01-01T00:00:00", "ms") + np.arange(rows, dtype=np.int64) * np.timedelta64(100, "ms")
    table = pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "ts": pa.array(ts, pa.timestamp("ms")),
            "sensor": pa.array(rng.integers(0, 100, rows, dtype=np.int32)),
            "value": pa.array(rng.normal(size=rows)),
            "label": pa.DictionaryArray.from_arrays(codes, labels).dictionary_decode(),
        }
    )
    return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK_ROWS))


def summary(values: list[float], digits: int = 3) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, min(len(sorted_values) - 1, int(np.ceil(q / 100 * len(sorted_values))) - 1))
    return sorted_values[k]


def latencies_ms(call: Callable[[], None], calls: int, budget_s: float) -> list[float]:
    """Times up to ``calls`` calls (at least 5, fewer if ``budget_s`` runs out), sorted, in ms."""
    out = []
    deadline = time.perf_counter() + budget_s
    for i in range(calls):
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1e6)
        if i >= 4 and time.perf_counter() > deadline:
            break
    return sorted(out)


class Failed(Exception):
    """A measurement returned something other than what was asked for."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


# ---------------------------------------------------------------------------------------------------------------
# the two servers behind one small interface


class Server:
    """What the benchmark does to a server: upload, fetch, describe, drop."""

    name: str

    def __init__(self, uri: str, pid: int) -> None:
        self.uri = uri
        self.pid = pid
        self.client = self.connect()

    def connect(self) -> flight.FlightClient:
        # A private subchannel pool gives every client its own TCP connection (gRPC otherwise shares one between
        # channels to the same address), so parallel readers do not multiplex over a single socket.
        client = flight.FlightClient(self.uri, generic_options=[("grpc.use_local_subchannel_pool", 1)])
        client.wait_for_available(timeout=30)
        return client

    def put(self, key: str, table: pa.Table) -> None:
        writer, reader = self.client.do_put(self.put_descriptor(key), table.schema, options=CALL)
        writer.write_table(table, max_chunksize=CHUNK_ROWS)
        writer.done_writing()
        self.check_put(reader.read(), table)
        writer.close()

    def put_descriptor(self, key: str) -> flight.FlightDescriptor:
        return flight.FlightDescriptor.for_path(key)

    def check_put(self, metadata: pa.Buffer | None, table: pa.Table) -> None:
        pass

    def ticket(self, key: str) -> flight.Ticket:
        return self.client.get_flight_info(flight.FlightDescriptor.for_path(key), options=CALL).endpoints[0].ticket

    def drop(self, key: str) -> None:
        raise NotImplementedError

    def vm_kb(self, field: str) -> int:
        """A ``Vm*`` line of /proc/<pid>/status, in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise Failed(f"no {field} in /proc/{self.pid}/status")


class Flightbay(Server):
    name = "flightbay"

    def action(self, kind: str, body: dict) -> dict:
        results = list(self.client.do_action(flight.Action(kind, json.dumps(body).encode()), options=CALL))
        return json.loads(results[0].body.to_pybytes())

    def put_descriptor(self, key: str) -> flight.FlightDescriptor:
        return flight.FlightDescriptor.for_command(json.dumps({"op": "put", "name": key, "mode": "replace"}))

    def check_put(self, metadata: pa.Buffer | None, table: pa.Table) -> None:
        check(metadata is not None, "flightbay sent no PutResult")
        meta = json.loads(metadata.to_pybytes())
        check(meta["num_rows"] == table.num_rows, f"flightbay stored {meta['num_rows']} rows")

    def drop(self, key: str) -> None:
        try:
            self.action("drop", {"name": key})
        except (flight.FlightError, pa.ArrowKeyError) as e:  # NOT_FOUND arrives as ArrowKeyError
            if "no flight is named" not in str(e):
                raise

    def command(self, cmd: str | dict) -> tuple[flight.FlightInfo, dict]:
        text = cmd if isinstance(cmd, str) else json.dumps(cmd)
        info = self.client.get_flight_info(flight.FlightDescriptor.for_command(text), options=CALL)
        return info, json.loads(info.app_metadata)


class Reference(Server):
    name = "pyarrow server"

    def drop(self, key: str) -> None:
        list(self.client.do_action(flight.Action("drop", key.encode()), options=CALL))


# ---------------------------------------------------------------------------------------------------------------
# measurements


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.fb = Flightbay(args.flightbay, args.flightbay_pid)
        self.ref = Reference(args.reference, args.reference_pid)
        self.table = make_table(args.rows)
        self.nbytes = self.table.nbytes
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []

    def rounds(self) -> range:
        """Warm-up rounds (negative) then measured ones."""
        return range(-self.args.warmup, self.args.reps)

    def measure(self, key: str, fn: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            self.results[key] = fn()
            skipped = self.results[key].get("skipped") if isinstance(self.results[key], dict) else None
            status = f"skipped ({skipped})" if skipped else "ok"
        except Exception as e:  # record, keep going, fail at the end
            self.results[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
            self.failures.append(key)
            status = "FAILED: " + self.results[key]["error"]
        print(f"  {key:<28} {time.perf_counter() - started:6.1f}s  {status}", file=sys.stderr, flush=True)

    def mb_s(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e6

    # --- transfer

    def do_put(self) -> dict:
        runs: dict[str, list[float]] = {"flightbay": [], "reference": []}
        for r in self.rounds():
            for label, server in (("flightbay", self.fb), ("reference", self.ref)):
                server.drop("bench_put")
                t0 = time.perf_counter()
                server.put("bench_put", self.table)
                elapsed = time.perf_counter() - t0
                server.drop("bench_put")
                if r >= 0:
                    runs[label].append(self.mb_s(elapsed))
        return {k: summary(v, 1) for k, v in runs.items()}

    def upload_bench(self) -> dict:
        """The flight every later measurement reads (not timed), checked once end to end on both servers."""
        out = {}
        for server in (self.fb, self.ref):
            server.put("bench", self.table)
            got = server.client.do_get(server.ticket("bench"), options=CALL).read_all()
            check(got.equals(self.table), f"{server.name} returned different data")
            out[server.name] = {"rows": got.num_rows, "nbytes": self.nbytes}
        return out

    def do_get(self) -> dict:
        tickets = {"flightbay": self.fb.ticket("bench"), "reference": self.ref.ticket("bench")}
        runs: dict[str, list[float]] = {"flightbay": [], "reference": []}
        for r in self.rounds():
            for label, server in (("flightbay", self.fb), ("reference", self.ref)):
                t0 = time.perf_counter()
                got = server.client.do_get(tickets[label], options=CALL).read_all()
                elapsed = time.perf_counter() - t0
                check(got.num_rows == self.table.num_rows, f"{server.name} DoGet returned {got.num_rows} rows")
                del got
                if r >= 0:
                    runs[label].append(self.mb_s(elapsed))
        return {k: summary(v, 1) for k, v in runs.items()}

    def do_get_spilled(self) -> dict:
        """DoGet of a copy of the table after the ``spill`` action wrote it to disk (skipped without spill)."""
        self.fb.put("bench_spilled", self.table)
        try:
            try:
                self.fb.action("spill", {"name": "bench_spilled"})
            except flight.FlightUnimplementedError:
                return {"skipped": "this flightbay has no spill action"}
            info = self.fb.client.get_flight_info(flight.FlightDescriptor.for_path("bench_spilled"), options=CALL)
            runs = []
            for r in self.rounds():
                t0 = time.perf_counter()
                got = self.fb.client.do_get(info.endpoints[0].ticket, options=CALL).read_all()
                elapsed = time.perf_counter() - t0
                check(got.num_rows == self.table.num_rows, f"spilled DoGet returned {got.num_rows} rows")
                del got
                state = json.loads(
                    self.fb.client.get_flight_info(
                        flight.FlightDescriptor.for_path("bench_spilled"), options=CALL
                    ).app_metadata
                )["state"]
                check(state == "spilled", f"the flight is {state} after DoGet, not spilled")
                if r >= 0:
                    runs.append(self.mb_s(elapsed))
            return summary(runs, 1)
        finally:
            self.fb.drop("bench_spilled")

    def adbc_fetch(self) -> dict:
        """A query result fetched through ADBC (Flight SQL: CreatePreparedStatement, GetFlightInfo, DoGet, close) vs
        the same SQL as a plain CMD (GetFlightInfo, DoGet), alternated; after the first, both are cache hits of one
        flight, so this measures the protocols, not the query."""
        import adbc_driver_flightsql.dbapi as dbapi

        query = "SELECT * FROM bench"
        self.fb.client.get_flight_info(flight.FlightDescriptor.for_command(query), options=CALL)  # compute it once
        runs: dict[str, list[float]] = {"flight_sql_adbc": [], "plain_flight": []}
        with dbapi.connect(self.args.flightbay, autocommit=True) as conn, conn.cursor() as cur:
            for r in self.rounds():
                t0 = time.perf_counter()
                cur.execute(query)
                got = cur.fetch_arrow_table()
                adbc_s = time.perf_counter() - t0
                check(got.num_rows == self.table.num_rows, f"ADBC returned {got.num_rows} rows")
                del got
                t0 = time.perf_counter()
                info = self.fb.client.get_flight_info(flight.FlightDescriptor.for_command(query), options=CALL)
                got = self.fb.client.do_get(info.endpoints[0].ticket, options=CALL).read_all()
                plain_s = time.perf_counter() - t0
                check(got.num_rows == self.table.num_rows, f"plain DoGet returned {got.num_rows} rows")
                del got
                if r >= 0:
                    runs["flight_sql_adbc"].append(self.mb_s(adbc_s))
                    runs["plain_flight"].append(self.mb_s(plain_s))
        return {k: summary(v, 1) for k, v in runs.items()}

    def do_get_parallel(self, parts: int) -> dict:
        info, _ = self.fb.command({"op": "partition", "source": "bench", "parts": parts})
        check(len(info.endpoints) == parts, f"partition returned {len(info.endpoints)} endpoints")
        clients = [self.fb.connect() for _ in range(parts)]
        barrier = threading.Barrier(parts + 1)

        def read(client: flight.FlightClient, ticket: flight.Ticket) -> int:
            barrier.wait(timeout=60)
            return client.do_get(ticket, options=CALL).read_all().num_rows

        runs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=parts) as pool:
            for r in self.rounds():
                futures = [pool.submit(read, c, ep.ticket) for c, ep in zip(clients, info.endpoints)]
                barrier.wait(timeout=60)
                t0 = time.perf_counter()
                rows = sum(f.result() for f in futures)
                elapsed = time.perf_counter() - t0
                check(rows == self.table.num_rows, f"{parts} endpoints returned {rows} rows")
                if r >= 0:
                    runs.append(self.mb_s(elapsed))
        for c in clients:
            c.close()
        return summary(runs, 1)

    # --- latency

    def latency(self, calls: Callable[[], Callable[[], None]], count: int, budget_s: float) -> dict:
        p50, p99, n = [], [], []
        for r in self.rounds():
            samples = latencies_ms(calls(), count, budget_s)
            if r >= 0:
                p50.append(percentile(samples, 50))
                p99.append(percentile(samples, 99))
                n.append(len(samples))
        return {"p50_ms": summary(p50), "p99_ms": summary(p99), "calls_per_run": n}

    def get_flight_info_path(self) -> dict:
        out = {}
        for label, server in (("flightbay", self.fb), ("reference", self.ref)):
            descriptor = flight.FlightDescriptor.for_path("bench")

            def call(client: flight.FlightClient = server.client, d: flight.FlightDescriptor = descriptor) -> None:
                client.get_flight_info(d, options=CALL)

            out[label] = self.latency(lambda: call, self.args.latency_calls, budget_s=30)
        return out

    def cache_hit(self, cmd: str | dict) -> dict:
        _, meta = self.fb.command(cmd)  # computes (or finds) the result once
        first = meta["cache"]
        result_id = meta["id"]

        def call() -> None:
            _, m = self.fb.command(cmd)
            check(m["cache"] == "hit" and m["id"] == result_id, f"expected a cache hit on flight {result_id}: {m}")

        out = self.latency(lambda: call, self.args.hit_calls, budget_s=10)
        out["first_request"] = first
        out["result_rows"] = self.fb.client.get_flight_info(
            flight.FlightDescriptor.for_path(str(result_id)), options=CALL
        ).total_records
        self.fb.action("drop", {"id": result_id})
        return out

    def recompute(self, cmd: str | dict) -> dict:
        runs = []
        rows = None
        for r in self.rounds():
            t0 = time.perf_counter()
            info, meta = self.fb.command(cmd)
            elapsed = time.perf_counter() - t0
            check(meta["cache"] == "miss", f"expected a recomputation, got cache {meta['cache']}")
            rows = info.total_records
            self.fb.action("drop", {"id": meta["id"]})  # so the next round computes again
            if r >= 0:
                runs.append(elapsed * 1e3)
        return {"ms": summary(runs, 2), "result_rows": rows}

    def local(self, fn: Callable[[pa.Table], pa.Table]) -> dict:
        runs = []
        rows = None
        for r in self.rounds():
            t0 = time.perf_counter()
            out = fn(self.table)
            elapsed = time.perf_counter() - t0
            rows = out.num_rows
            del out
            if r >= 0:
                runs.append(elapsed * 1e3)
        return {"ms": summary(runs, 2), "result_rows": rows}

    # --- memory

    def memory(self, phase: str) -> dict:
        stats = self.fb.action("stats", {})
        fb_peak_data = stats["store"]["peak_resident_bytes"]
        fb_hwm = self.fb.vm_kb("VmHWM") * 1024
        ref_hwm = self.ref.vm_kb("VmHWM") * 1024
        # The reference holds at most one copy of the table at a time (each upload is dropped before the next).
        return {
            "phase": phase,
            "flightbay": {
                "vm_hwm_bytes": fb_hwm,
                "vm_rss_bytes": self.fb.vm_kb("VmRSS") * 1024,
                "peak_data_bytes": fb_peak_data,
                "hwm_per_data": round(fb_hwm / max(fb_peak_data, 1), 2),
            },
            "reference": {
                "vm_hwm_bytes": ref_hwm,
                "vm_rss_bytes": self.ref.vm_kb("VmRSS") * 1024,
                "peak_data_bytes": self.nbytes,
                "hwm_per_data": round(ref_hwm / self.nbytes, 2),
            },
        }

    # --- the whole run

    def run(self) -> dict:
        a = self.args
        m = self.measure
        print(
            f"flight_bench: {a.rows} rows, {self.nbytes / 1e6:.1f} MB, {a.warmup} warm-up + {a.reps} runs",
            file=sys.stderr,
        )
        m("do_put_mb_s", self.do_put)
        m("upload_check", self.upload_bench)
        m("do_get_mb_s", self.do_get)
        m("do_get_spilled_mb_s", self.do_get_spilled)
        for parts in (2, 4, 8):
            m(f"do_get_parallel_{parts}_mb_s", lambda parts=parts: self.do_get_parallel(parts))
        m("adbc_fetch_mb_s", self.adbc_fetch)
        m("memory_after_transfer", lambda: self.memory("after DoPut and DoGet"))
        m("get_flight_info_path", self.get_flight_info_path)
        m("cache_hit_sql", lambda: self.cache_hit(HIT_SQL))
        m("cache_hit_op", lambda: self.cache_hit(HIT_OP))
        m("recompute_group_by_sql", lambda: self.recompute(GROUP_BY_SQL))
        m("recompute_sort_by_op", lambda: self.recompute(SORT_OP))
        m("local_group_by_label", lambda: self.local(lambda t: t.group_by("label").aggregate([("value", "max")])))
        m("local_filter", lambda: self.local(lambda t: t.filter(pc.field("sensor") < 10)))
        m(
            "local_group_by_sensor",
            lambda: self.local(lambda t: t.group_by("sensor").aggregate([("value", "mean"), ("value", "count")])),
        )
        m("local_sort_by", lambda: self.local(lambda t: t.sort_by([("value", "descending")])))
        m("memory_at_end", lambda: self.memory("end of run (after the sort_by recomputes)"))
        return self.results


# ---------------------------------------------------------------------------------------------------------------
# machine facts, targets, output


def command_output(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_facts(args: argparse.Namespace) -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    if args.commit:
        commit, dirty = args.commit, ""
    else:
        commit = command_output("git", "rev-parse", "--short=12", "HEAD")
        dirty = command_output("git", "status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "rustc": command_output("rustc", "--version"),
        "flightbay_commit": commit + (" (src modified)" if dirty else ""),
        "flightbay_binary": args.build or "unknown",
        "rows": args.rows,
        "table_bytes": None,
        "warmup_runs": args.warmup,
        "measured_runs": args.reps,
    }


def med(results: dict, *path: str) -> float | None:
    node: Any = results
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node.get("median") if isinstance(node, dict) else None


def targets(results: dict, loopback: dict) -> list[dict]:
    fb_get = med(results, "do_get_mb_s", "flightbay")
    ref_get = med(results, "do_get_mb_s", "reference")
    fb_put = med(results, "do_put_mb_s", "flightbay")
    ref_put = med(results, "do_put_mb_s", "reference")
    ceiling = loopback.get("median_mb_s")
    out = []

    def add(name: str, value: float | None, goal: float | None, shown: str, note: str = "") -> None:
        met = None if value is None or goal is None else value >= goal
        out.append({"target": name, "value": value, "goal": goal, "shown": shown, "met": met, "note": note})

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    def times(x: float | None) -> str:
        return "–" if x is None else f"{x}×"

    r = ratio(fb_get, ref_get)
    add("DoGet one stream ≥ 1.3× the pyarrow server", r, 1.3, times(r))
    note = ""
    goal: float | None = 2000.0
    if ceiling is not None and ceiling < 2000:
        note = f"the loopback ceiling itself is {ceiling:.0f} MB/s, so 2 GB/s cannot be reached here"
        goal = None
    add("DoGet one stream ≥ 2 GB/s (where loopback allows)", fb_get, goal, f"{fb_get} MB/s", note)
    r = ratio(fb_put, ref_put)
    add("DoPut ≥ 1.2× the pyarrow server", r, 1.2, times(r))
    best = None
    for parts in (2, 4, 8):
        r = ratio(med(results, f"do_get_parallel_{parts}_mb_s"), fb_get)
        if r is not None and (best is None or r > best[1]):
            best = (parts, r)
    add(
        "aggregate DoGet over parallel endpoints ≥ 1.5× one stream",
        best[1] if best else None,
        1.5,
        f"{best[1]}× ({best[0]} endpoints, the best of 2/4/8)" if best else "n/a",
    )
    r = ratio(med(results, "adbc_fetch_mb_s", "flight_sql_adbc"), med(results, "adbc_fetch_mb_s", "plain_flight"))
    add("query result through ADBC ≥ 0.9× plain DoGet", r, 0.9, times(r))
    for key, label in (("cache_hit_sql", "SQL"), ("cache_hit_op", "JSON op")):
        p50 = med(results, key, "p50_ms")
        met = None if p50 is None else p50 < 1.0
        out.append(
            {
                "target": f"cache hit p50 < 1 ms ({label})",
                "value": p50,
                "goal": 1.0,
                "shown": f"{p50} ms",
                "met": met,
                "note": "",
            }
        )
    return out


def num(x: float, digits: int = 0) -> str:
    """A number with thin-space thousands (1 234.5)."""
    return f"{x:,.{digits}f}".replace(",", " ")


def fmt(node: Any, digits: int = 0, unit: str = "") -> str:
    """``median (min–max)`` of a summary; ``failed`` for a recorded error."""
    if not isinstance(node, dict) or "median" not in node:
        return "failed" if isinstance(node, dict) and "error" in node else "–"
    if node["min"] == node["max"]:
        return f"{num(node['median'], digits)}{unit}"
    return f"{num(node['median'], digits)}{unit} ({num(node['min'], digits)}–{num(node['max'], digits)})"


def ratio_text(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict) and a.get("median") and b.get("median"):
        return f"{a['median'] / b['median']:.2f}×"
    return "–"


def markdown(doc: dict) -> str:
    r = doc["results"]
    facts = doc["machine"]
    lb = doc["loopback"]

    def g(*path: str) -> dict:
        node: Any = r
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        return node

    lines = [
        f"Command: `{doc['command']}` · {facts['date_utc']} UTC · {num(facts['rows'])} rows "
        f"({num(facts['table_bytes'] / 1e6, 1)} MB) · median of {facts['measured_runs']} runs after "
        f"{facts['warmup_runs']} warm-up, (min–max) in brackets · MB = 10⁶ bytes",
        "",
        "| measurement | flightbay | pyarrow server | flightbay ÷ pyarrow | pyarrow locally (no network) |",
        "|---|---|---|---|---|",
        f"| loopback TCP ceiling, one stream ({lb['method']}) | {fmt(lb_summary(lb))} MB/s | | | |",
        f"| DoPut, MB/s | {fmt(g('do_put_mb_s', 'flightbay'))} | {fmt(g('do_put_mb_s', 'reference'))} "
        f"| {ratio_text(g('do_put_mb_s', 'flightbay'), g('do_put_mb_s', 'reference'))} | |",
        f"| DoGet one stream, MB/s | {fmt(g('do_get_mb_s', 'flightbay'))} | {fmt(g('do_get_mb_s', 'reference'))} "
        f"| {ratio_text(g('do_get_mb_s', 'flightbay'), g('do_get_mb_s', 'reference'))} | |",
    ]
    for parts in (2, 4, 8):
        node = g(f"do_get_parallel_{parts}_mb_s")
        lines.append(
            f"| DoGet {parts} partition endpoints in parallel (aggregate), MB/s | {fmt(node)} | | "
            f"{ratio_text(node, g('do_get_mb_s', 'flightbay'))} of one stream | |"
        )
    gfi = g("get_flight_info_path")
    for q in ("p50", "p99"):
        lines.append(
            f"| GetFlightInfo on a PATH, {q} of {gfi.get('flightbay', {}).get('calls_per_run', ['?'])[0]} calls, ms "
            f"| {fmt(gfi.get('flightbay', {}).get(q + '_ms'), 3)} | {fmt(gfi.get('reference', {}).get(q + '_ms'), 3)} "
            f"| | |"
        )
    for key, label, local in (
        ("cache_hit_sql", f"cache hit, SQL `{HIT_SQL}`", "local_group_by_label"),
        ("cache_hit_op", f"cache hit, JSON op `{json.dumps(HIT_OP)}`", "local_filter"),
    ):
        node = g(key)
        calls = node.get("calls_per_run", ["?"])
        lines.append(
            f"| {label}: p50 / p99 of {min(calls) if calls else '?'}+ calls, ms | {fmt(node.get('p50_ms'), 3)} / "
            f"{fmt(node.get('p99_ms'), 3)} | | | {fmt(g(local, 'ms'), 1)} (computing it) |"
        )
    for key, label, local in (
        ("recompute_group_by_sql", f"recompute group-by, SQL `{GROUP_BY_SQL}`", "local_group_by_sensor"),
        ("recompute_sort_by_op", f"recompute sort_by, JSON op `{json.dumps(SORT_OP)}`", "local_sort_by"),
    ):
        lines.append(f"| {label}, ms | {fmt(g(key, 'ms'), 1)} | | | {fmt(g(local, 'ms'), 1)} |")
    for key in ("memory_after_transfer", "memory_at_end"):
        node = g(key)
        if "flightbay" in node:
            fbm, refm = node["flightbay"], node["reference"]
            lines.append(
                f"| peak RSS ÷ data held, {node['phase']} | {fbm['hwm_per_data']} "
                f"({num(fbm['vm_hwm_bytes'] / 1e6)} MB ÷ {num(fbm['peak_data_bytes'] / 1e6)} MB) "
                f"| {refm['hwm_per_data']} ({num(refm['vm_hwm_bytes'] / 1e6)} MB ÷ {num(refm['peak_data_bytes'] / 1e6)} MB) "
                f"| | |"
            )
    adbc = g("adbc_fetch_mb_s")
    lines.append(
        f"| `SELECT * FROM bench` through ADBC (Flight SQL) vs the same SQL as a plain CMD, MB/s "
        f"| {fmt(adbc.get('flight_sql_adbc'))} vs {fmt(adbc.get('plain_flight'))} | | "
        f"{ratio_text(adbc.get('flight_sql_adbc'), adbc.get('plain_flight'))} ADBC ÷ plain | |"
    )
    spilled = g("do_get_spilled_mb_s")
    shown = f"not measured: {spilled['skipped']}" if "skipped" in spilled else fmt(spilled)
    lines.insert(
        lines.index(next(x for x in lines if x.startswith("| DoGet 2 "))),
        f"| DoGet one stream of a spilled flight (read from disk), MB/s | {shown} | | | |",
    )
    lines += [
        "",
        "| target | this run | met |",
        "|---|---|---|",
    ]
    for t in doc["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {t['shown']}{note} | {met} |")
    lines += [
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {facts['cores']} cores, {facts['cpu_model']}; {facts['memory_gib']} GiB RAM; Linux {facts['kernel']} |",
        f"| load average (1/5/15 min) at start · at end | {' / '.join(str(x) for x in facts['load_average_at_start'])}"
        f" · {' / '.join(str(x) for x in facts.get('load_average_at_end', []))} |",
        f"| flightbay | commit {facts['flightbay_commit']}, {facts['flightbay_binary']} |",
        f"| rustc | {facts['rustc']} |",
        f"| client and reference | Python {facts['python']}, pyarrow {facts['pyarrow']}, numpy {facts['numpy']} |",
    ]
    return "\n".join(lines) + "\n"


def lb_summary(lb: dict) -> dict:
    return {"median": lb.get("median_mb_s", 0), "min": lb.get("min_mb_s", 0), "max": lb.get("max_mb_s", 0)}


def write_markdown(path: Path, body: str) -> None:
    """Replaces the text between the result markers, keeping everything written around them."""
    block = f"{MARK_BEGIN}\n{body}{MARK_END}"
    if path.exists():
        text = path.read_text()
        pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.DOTALL)
        if pattern.search(text):
            path.write_text(pattern.sub(lambda _: block, text))
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Benchmarks\n\n{block}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flightbay", required=True, help="grpc://host:port of a running flightbay")
    parser.add_argument("--flightbay-pid", type=int, required=True, help="its pid, for /proc/<pid>/status")
    parser.add_argument("--reference", required=True, help="grpc://host:port of benches/reference_server.py")
    parser.add_argument("--reference-pid", type=int, required=True)
    parser.add_argument("--loopback", required=True, help="the JSON written by benches/loopback.py")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=5, help="measured runs per figure")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs before them")
    parser.add_argument("--latency-calls", type=int, default=1000, help="GetFlightInfo calls per latency run")
    parser.add_argument("--hit-calls", type=int, default=200, help="calls per cache-hit run (10 s at most)")
    parser.add_argument("--build", help="how the flightbay binary was built, for the record")
    parser.add_argument("--commit", help="the commit the binary was built from (default: the checkout's HEAD)")
    parser.add_argument("--command", default="benches/run.sh", help="the command line to print with the results")
    parser.add_argument("--json", required=True, help="write the results here")
    parser.add_argument("--markdown", help="update the results block of this Markdown file")
    args = parser.parse_args()

    machine = machine_facts(args)
    bench = Bench(args)
    machine["table_bytes"] = bench.nbytes
    with open(args.loopback) as f:
        loopback = json.load(f)
    results = bench.run()
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = {
        "command": args.command,
        "machine": machine,
        "loopback": loopback,
        "results": results,
        "targets": targets(results, loopback),
        "failures": bench.failures,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    table = markdown(doc)
    if args.markdown:
        write_markdown(Path(args.markdown), table)
    print(table)
    if bench.failures:
        print(
            f"flight_bench: {len(bench.failures)} measurement(s) failed: {', '.join(bench.failures)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
