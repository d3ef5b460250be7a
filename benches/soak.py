"""Mixed-load soak: many clients at once against one flightbay, each running a random mix of uploads, appends,
DoGets, identical SQL bursts, other SQL, native ops, a deadline-bound heavy query and drops, for a fixed time.

    python benches/soak.py --short                # CI: 32 clients, 15 s
    python benches/soak.py --clients 64 --seconds 600 --rows 200000    # long mode

Prints the operations done, p50/p99 latency per op, errors by gRPC code, acknowledged and lost uploads (every
acknowledged upload that its client did not drop is read back at the end and must have its rows) and the server's
peak RSS, then one JSON line with the same figures. Exits non-zero when an acknowledged upload is lost, the server
dies, or any call fails with a code other than the load-shedding ones (UNAVAILABLE, DEADLINE_EXCEEDED for the
deadline-bound query). Uses FLIGHTBAY_BIN (default target/ci/flightbay); traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serverproc import Server, grpc_code, percentile  # noqa: E402

EXPECTED_UNDER_LOAD = {"UNAVAILABLE"}
BURST_SQL = "SELECT name, count(*) AS n, sum(value) AS total FROM soak.base GROUP BY name ORDER BY name"


def table(rows: int, start: int = 0) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table({
        "id": ids,
        "name": pa.array([f"name-{i % 13}" for i in range(start, start + rows)]),
        "value": pa.array([i * 0.5 for i in range(start, start + rows)], pa.float64()),
    })


def put(client: fl.FlightClient, descriptor: fl.FlightDescriptor, data: pa.Table) -> dict:
    writer, reader = client.do_put(descriptor, data.schema)
    writer.write_table(data, max_chunksize=max(1, data.num_rows // 2))
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())


def fetch_rows(client: fl.FlightClient, descriptor: fl.FlightDescriptor, options=None) -> int:
    info = client.get_flight_info(descriptor, options) if options else client.get_flight_info(descriptor)
    rows = 0
    for endpoint in info.endpoints:
        rows += client.do_get(endpoint.ticket).read_all().num_rows
    return rows


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter = collections.Counter()
        self.error_examples: dict[str, str] = {}
        self.acked: dict[str, int] = {}  # name -> rows of the last acknowledged upload or append
        self.dropped: set[str] = set()

    def record(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latency[op].append(seconds)

    def error(self, op: str, e: BaseException) -> None:
        code = grpc_code(e)
        with self.lock:
            self.errors[(op, code)] += 1
            self.error_examples.setdefault(f"{op} {code}", str(e)[:300])


def client_loop(uri: str, index: int, deadline: float, rows: int, stats: Stats, seed: int, heavy: bool) -> None:
    rng = random.Random(seed * 1000 + index)
    client = fl.connect(uri)
    mine: list[str] = []
    n = 0
    ops = ["upload"] * 3 + ["append"] * 2 + ["get"] * 4 + ["burst"] * 3 + ["sql"] * 2 + ["op"] * 3 + \
        ["drop"] + (["deadline"] if heavy else [])
    while time.monotonic() < deadline:
        op = rng.choice(ops)
        started = time.monotonic()
        try:
            if op == "upload":
                name = f"c{index}_{n}"
                n += 1
                count = rng.randint(1, rows)
                meta = put(client, fl.FlightDescriptor.for_path("soak", name), table(count, n))
                assert meta["num_rows"] == count, meta
                with stats.lock:
                    stats.acked[name] = count
                mine.append(name)
            elif op == "append":
                if not mine:
                    continue
                name = rng.choice(mine)
                count = rng.randint(1, 100)
                cmd = json.dumps({"op": "put", "name": name, "namespace": "soak", "mode": "append"})
                meta = put(client, fl.FlightDescriptor.for_command(cmd), table(count, n))
                with stats.lock:
                    stats.acked[name] = meta["num_rows"]
            elif op == "get":
                target = rng.choice(mine) if mine and rng.random() < 0.5 else "base"
                fetch_rows(client, fl.FlightDescriptor.for_path("soak", target))
            elif op == "burst":
                fetch_rows(client, fl.FlightDescriptor.for_command(BURST_SQL))
            elif op == "sql":
                low = rng.randint(0, rows)
                sql = f"SELECT id, value * 2 AS v FROM soak.base WHERE id BETWEEN {low} AND {low + 500} ORDER BY id"
                fetch_rows(client, fl.FlightDescriptor.for_command(sql))
            elif op == "op":
                kind = rng.choice(["sort_by", "filter", "take", "head"])
                body = {
                    "sort_by": {"op": "sort_by", "source": "soak.base", "keys": [["value", "descending"]]},
                    "filter": {"op": "filter", "source": "soak.base", "predicate": f"id % {rng.randint(2, 50)} = 0"},
                    "take": {"op": "take", "source": "soak.base", "indices": [rng.randint(0, rows - 1) for _ in range(50)]},
                    "head": {"op": "head", "source": "soak.base", "num_rows": rng.randint(1, 1000)},
                }[kind]
                op = kind
                fetch_rows(client, fl.FlightDescriptor.for_command(json.dumps(body)))
            elif op == "drop":
                if not mine:
                    continue
                name = mine.pop(rng.randrange(len(mine)))
                list(client.do_action(fl.Action("drop", json.dumps({"name": f"soak.{name}"}).encode())))
                with stats.lock:
                    stats.dropped.add(name)
            elif op == "deadline":
                # A query far too heavy to finish: the client's 300 ms deadline must stop it on the server.
                sql = f"SELECT sum(a.id * b.id + {rng.randint(0, 10**9)}) FROM soak.base a, soak.base b"
                options = fl.FlightCallOptions(timeout=0.3)
                try:
                    fetch_rows(client, fl.FlightDescriptor.for_command(sql), options)
                except fl.FlightTimedOutError:
                    pass
                except fl.FlightCancelledError:
                    pass
            stats.record(op, time.monotonic() - started)
        except Exception as e:  # noqa: BLE001 - every failure is counted by its code
            stats.error(op, e)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="CI mode: 32 clients for 15 s, 2 000-row uploads")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the shared base flight; uploads up to this")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--memory-limit", default="512MiB")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flightbay flag (repeatable)")
    parser.add_argument("--no-heavy", action="store_true", help="leave out the deadline-bound heavy query")
    args = parser.parse_args()
    if args.short:
        args.clients, args.seconds, args.rows = max(args.clients, 32), 15, 2000

    with tempfile.TemporaryDirectory(prefix="flightbay-soak-") as tmp:
        server = Server(Path(tmp) / "data", "--ephemeral", "--memory-limit", args.memory_limit, *args.server_arg)
        try:
            admin = fl.connect(server.uri)
            put(admin, fl.FlightDescriptor.for_path("soak", "base"), table(args.rows))
            stats = Stats()
            deadline = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client_loop,
                                 args=(server.uri, i, deadline, args.rows, stats, args.seed, not args.no_heavy))
                for i in range(args.clients)
            ]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + 600)
            elapsed = time.monotonic() - started
            alive = server.alive()
            lost = []
            if alive:
                for name, rows in sorted(stats.acked.items()):
                    if name in stats.dropped:
                        continue
                    try:
                        got = fetch_rows(admin, fl.FlightDescriptor.for_path("soak", name))
                    except Exception as e:  # noqa: BLE001
                        got = f"{grpc_code(e)}"
                    if got != rows:
                        lost.append((name, rows, got))
        finally:
            peak = server.peak_rss_mb
            code = server.stop()

    total_ops = sum(len(v) for v in stats.latency.values())
    print(f"soak: {args.clients} clients, {elapsed:.1f}s, {total_ops} operations, server exit {code}")
    print(f"  {'op':<10}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}")
    figures = {}
    for op in sorted(stats.latency):
        values = stats.latency[op]
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        figures[op] = {"count": len(values), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
        print(f"  {op:<10}{len(values):>8}{p50:>10.1f}{p99:>10.1f}")
    everything = [v for values in stats.latency.values() for v in values]
    print(f"  {'all':<10}{len(everything):>8}{percentile(everything, 0.5) * 1000:>10.1f}"
          f"{percentile(everything, 0.99) * 1000:>10.1f}")
    errors = {f"{op} {code}": n for (op, code), n in sorted(stats.errors.items())}
    print(f"errors by code: {errors or 'none'}")
    for key, example in stats.error_examples.items():
        print(f"  e.g. {key}: {example}")
    acked = len([n for n in stats.acked if n not in stats.dropped])
    print(f"uploads: {len(stats.acked)} acknowledged, {len(stats.dropped)} dropped by their clients, "
          f"{acked} read back, {len(lost)} lost")
    for name, rows, got in lost[:10]:
        print(f"  lost {name}: acknowledged {rows} rows, read {got}")
    print(f"peak RSS: {peak:.0f} MB")
    print(json.dumps({"clients": args.clients, "seconds": round(elapsed, 1), "ops": figures, "errors": errors,
                      "acknowledged": len(stats.acked), "lost": len(lost), "peak_rss_mb": round(peak)}))
    unexpected = {k: v for k, v in errors.items() if k.split()[1] not in EXPECTED_UNDER_LOAD}
    failed = False
    if not alive or code not in (0, None):
        print("FAILED: the server died or did not stop cleanly", file=sys.stderr)
        failed = True
    if lost:
        print("FAILED: acknowledged uploads were lost", file=sys.stderr)
        failed = True
    if unexpected:
        print(f"FAILED: unexpected errors {unexpected}", file=sys.stderr)
        failed = True
    if total_ops == 0:
        print("FAILED: no operation completed", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
