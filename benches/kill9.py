"""kill -9 loop: a durable flightbay with a small memory budget is killed (SIGKILL) again and again while it takes
uploads, appends, spills or sits idle; after every restart each acknowledged upload must be there with its rows.

    python benches/kill9.py --short               # CI: 8 cycles (each phase twice)
    python benches/kill9.py --cycles 200          # long mode

Every cycle starts the server on the same data directory (`--durable --memory-limit 32MiB`), checks every upload
acknowledged so far (rows and the sum of the id column, by name), runs one phase in rotation (upload: new names;
append: appends to one name; spill: uploads then `spill` actions; idle: nothing) from four client threads, and
kills the process at a random moment. An append or upload that was not acknowledged may or may not be there; an
acknowledged one must be. Prints cycles survived, uploads acknowledged and lost, restart times and peak RSS, then
one JSON line. Exits non-zero on any loss, any failed restart, or a wrong row count. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serverproc import Server, grpc_code, percentile  # noqa: E402

PHASES = ["upload", "append", "spill", "idle"]


def table(rows: int, start: int) -> pa.Table:
    return pa.table({
        "id": pa.array(range(start, start + rows), pa.int64()),
        "payload": pa.array([f"row-{i}" for i in range(start, start + rows)]),
    })


def put(client: fl.FlightClient, descriptor: fl.FlightDescriptor, data: pa.Table) -> dict:
    writer, reader = client.do_put(descriptor, data.schema)
    writer.write_table(data, max_chunksize=max(1, data.num_rows // 3))
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())


def read(client: fl.FlightClient, name: str) -> tuple[int, int]:
    info = client.get_flight_info(fl.FlightDescriptor.for_path("k9", name))
    t = pa.concat_tables(client.do_get(e.ticket).read_all() for e in info.endpoints)
    return t.num_rows, pc.sum(t["id"]).as_py() or 0


class Ledger:
    """What was acknowledged: name -> (rows, id sum); for the append target also what may have landed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[int, int]] = {}
        # The append name: every state acknowledged or possibly persisted, in order.
        self.append_states: list[tuple[int, int]] = []
        self.acked_count = 0


def worker(uri: str, phase: str, index: int, cycle: int, stop: threading.Event, ledger: Ledger, rng: random.Random):
    try:
        client = fl.connect(uri)
    except Exception:  # noqa: BLE001 - the server may already be dead
        return
    n = 0
    while not stop.is_set():
        try:
            if phase in ("upload", "spill"):
                name = f"u{cycle}_{index}_{n}"
                rows = rng.randint(1, 20_000)
                data = table(rows, n * 100_000)
                meta = put(client, fl.FlightDescriptor.for_path("k9", name), data)
                with ledger.lock:
                    ledger.acked[name] = (rows, pc.sum(data["id"]).as_py())
                    ledger.acked_count += 1
                if phase == "spill":
                    list(client.do_action(fl.Action("spill", json.dumps({"id": meta["id"]}).encode())))
            elif phase == "append" and index == 0:
                rows = rng.randint(1, 5_000)
                start = rng.randint(0, 10**9)
                data = table(rows, start)
                with ledger.lock:
                    last_rows, last_sum = ledger.append_states[-1]
                    maybe = (last_rows + rows, last_sum + pc.sum(data["id"]).as_py())
                    ledger.append_states.append(maybe)
                cmd = json.dumps({"op": "put", "name": "appended", "namespace": "k9", "mode": "append"})
                meta = put(client, fl.FlightDescriptor.for_command(cmd), data)
                assert meta["num_rows"] == maybe[0], (meta, maybe)
                with ledger.lock:
                    ledger.acked["appended"] = maybe
                    ledger.acked_count += 1
            else:
                time.sleep(0.05)
            n += 1
        except Exception:  # noqa: BLE001 - the kill ends every call in flight
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="CI mode: 8 cycles")
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    if args.short:
        args.cycles = 8
    rng = random.Random(args.seed)
    ledger = Ledger()
    restarts: list[float] = []
    peak = 0.0
    lost: list[str] = []
    failures: list[str] = []
    survived = 0
    with tempfile.TemporaryDirectory(prefix="flightbay-kill9-") as tmp:
        data = Path(tmp) / "data"
        server = Server(data, "--durable", "--memory-limit", "32MiB")
        first = fl.connect(server.uri)
        seed = table(100, 0)
        put(first, fl.FlightDescriptor.for_path("k9", "appended"), seed)
        ledger.append_states.append((100, pc.sum(seed["id"]).as_py()))
        ledger.acked["appended"] = ledger.append_states[-1]
        ledger.acked_count += 1
        server.stop()
        for cycle in range(args.cycles):
            phase = PHASES[cycle % len(PHASES)]
            started = time.monotonic()
            try:
                server = Server(data, "--durable", "--memory-limit", "32MiB")
            except Exception as e:  # noqa: BLE001
                failures.append(f"cycle {cycle}: restart failed: {e}")
                break
            restarts.append(time.monotonic() - started)
            client = fl.connect(server.uri)
            with ledger.lock:
                expected = dict(ledger.acked)
                append_states = list(ledger.append_states)
            for name, (rows, total) in sorted(expected.items()):
                try:
                    got = read(client, name)
                except Exception as e:  # noqa: BLE001
                    lost.append(f"cycle {cycle}: {name} unreadable ({grpc_code(e)})")
                    continue
                if name == "appended":
                    # Acknowledged state or a later one that reached disk before the kill.
                    states = append_states[append_states.index((rows, total)):]
                    if got not in states:
                        lost.append(f"cycle {cycle}: appended has {got}, acknowledged {(rows, total)}")
                    else:
                        # What is on disk now is where the next append starts; later unacknowledged states
                        # did not land.
                        with ledger.lock:
                            ledger.acked["appended"] = got
                            ledger.append_states = [got]
                elif got != (rows, total):
                    lost.append(f"cycle {cycle}: {name} has {got}, acknowledged {(rows, total)}")
            stop = threading.Event()
            threads = [
                threading.Thread(target=worker, args=(server.uri, phase, i, cycle, stop, ledger,
                                                      random.Random(rng.random())))
                for i in range(4)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 2.0))
            server.kill()
            peak = max(peak, server.peak_rss_mb)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            survived += 1
            print(f"  cycle {cycle:>3} {phase:<6} killed; {ledger.acked_count} acknowledged so far", flush=True)
        # Final check after a clean start.
        server = Server(data, "--durable", "--memory-limit", "32MiB")
        client = fl.connect(server.uri)
        for name, (rows, total) in sorted(ledger.acked.items()):
            try:
                got = read(client, name)
            except Exception as e:  # noqa: BLE001
                lost.append(f"final: {name} unreadable ({grpc_code(e)})")
                continue
            if name != "appended" and got != (rows, total):
                lost.append(f"final: {name} has {got}, acknowledged {(rows, total)}")
        code = server.stop()
        if code != 0:
            failures.append(f"final graceful stop exited {code}")

    print(f"kill -9 loop: {survived} of {args.cycles} cycles survived, {ledger.acked_count} uploads and appends "
          f"acknowledged, {len(lost)} lost")
    print(f"restart: p50 {percentile(restarts, 0.5):.2f}s, max {max(restarts, default=0):.2f}s; "
          f"peak RSS {peak:.0f} MB")
    for line in (lost + failures)[:20]:
        print(f"  {line}")
    print(json.dumps({"cycles": args.cycles, "survived": survived, "acknowledged": ledger.acked_count,
                      "lost": len(lost), "restart_p50_s": round(percentile(restarts, 0.5), 2),
                      "peak_rss_mb": round(peak)}))
    return 1 if lost or failures or survived != args.cycles else 0


if __name__ == "__main__":
    sys.exit(main())
