"""The reference the benchmark compares flightbay with: a minimal in-memory Flight server written with pyarrow.

It is the server the Apache Arrow cookbook and pyarrow's ``examples/flight/server.py`` show: DoPut reads the whole
upload with ``reader.read_all()`` and keeps the table in a dict under the descriptor's path, DoGet returns
``RecordBatchStream`` over that table, GetFlightInfo describes it with one endpoint. Nothing is tuned; the point is
to measure what a Python user gets from pyarrow's own C++ Flight server.

Run it on its own with ``python benches/reference_server.py --port 0 --ready-file /tmp/ready``; the bound
``host:port`` is written to the ready file once the server listens. The ``drop`` action (body: the key) forgets a
table so repeated uploads do not pile up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight


class InMemoryFlightServer(flight.FlightServerBase):
    """Tables by key (the descriptor path joined with ``/``), uploaded with DoPut and served with DoGet."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._tables: dict[bytes, pa.Table] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(descriptor: flight.FlightDescriptor) -> bytes:
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            return b"/".join(descriptor.path)
        return descriptor.command

    def _info(self, key: bytes, table: pa.Table) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_path(*key.split(b"/"))
        endpoints = [flight.FlightEndpoint(key, [])]
        return flight.FlightInfo(table.schema, descriptor, endpoints, table.num_rows, table.nbytes)

    def list_flights(self, context, criteria):
        with self._lock:
            items = list(self._tables.items())
        for key, table in items:
            yield self._info(key, table)

    def get_flight_info(self, context, descriptor):
        key = self._key(descriptor)
        with self._lock:
            table = self._tables.get(key)
        if table is None:
            raise KeyError(f"unknown flight {key!r}")
        return self._info(key, table)

    def do_put(self, context, descriptor, reader, writer):
        table = reader.read_all()
        with self._lock:
            self._tables[self._key(descriptor)] = table

    def do_get(self, context, ticket):
        with self._lock:
            table = self._tables.get(ticket.ticket)
        if table is None:
            raise KeyError(f"unknown ticket {ticket.ticket!r}")
        return flight.RecordBatchStream(table)

    def list_actions(self, context):
        return [("drop", "forget the table stored under the key given as the body")]

    def do_action(self, context, action):
        if action.type != "drop":
            raise NotImplementedError(action.type)
        with self._lock:
            self._tables.pop(action.body.to_pybytes(), None)
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help="write the bound host:port here once listening")
    args = parser.parse_args()

    server = InMemoryFlightServer(f"grpc://{args.host}:{args.port}")
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{args.host}:{server.port}")
        os.replace(tmp, args.ready_file)

    # The server already listens; the main thread only waits for SIGTERM/SIGINT (a Python handler cannot run while
    # serve() blocks inside C++), then shuts down cleanly.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    while not stop.wait(0.5):
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
