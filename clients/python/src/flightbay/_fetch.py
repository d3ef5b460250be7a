"""Reading flight endpoints: streamed one after another, or fetched in parallel threads over one client."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pyarrow as pa
from pyarrow import flight

from ._progress import Progress
from .errors import translated

if TYPE_CHECKING:
    from .client import Client

#: Most endpoints fetched at once. pyarrow's FlightClient serves concurrent DoGets on one connection.
MAX_FETCH_THREADS = 8


def stream_endpoint(client: Client, endpoint: flight.FlightEndpoint, bar: Progress) -> Iterator[pa.RecordBatch]:
    """The record batches of one endpoint, as they arrive."""
    with translated():
        reader = client._client_for(endpoint).do_get(endpoint.ticket, client._options())
    while True:
        with translated():
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
        bar.update(chunk.data.nbytes)
        yield chunk.data


def read_endpoint(client: Client, endpoint: flight.FlightEndpoint, bar: Progress) -> pa.Table:
    """All rows of one endpoint as a table."""
    with translated():
        reader = client._client_for(endpoint).do_get(endpoint.ticket, client._options())
        if not bar.active:
            return reader.read_all()  # no bar to feed: let pyarrow collect the batches without a Python loop
        schema = reader.schema
    batches = []
    while True:
        with translated():
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
        bar.update(chunk.data.nbytes)
        batches.append(chunk.data)
    return pa.Table.from_batches(batches, schema=schema)


def read_endpoints(client: Client, endpoints: Sequence[flight.FlightEndpoint], bar: Progress) -> list[pa.Table]:
    """Every endpoint as a table, in endpoint order; several endpoints are fetched in parallel threads."""
    if len(endpoints) <= 1:
        return [read_endpoint(client, e, bar) for e in endpoints]
    with ThreadPoolExecutor(max_workers=min(len(endpoints), MAX_FETCH_THREADS)) as pool:
        return list(pool.map(lambda e: read_endpoint(client, e, bar), endpoints))


def concat(batches: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch holding ``batches`` (copies unless there is only one)."""
    if len(batches) == 1:
        return batches[0]
    concat_batches = getattr(pa, "concat_batches", None)  # pyarrow >= 19
    if concat_batches is not None:
        return concat_batches(batches)
    combined = pa.Table.from_batches(batches).combine_chunks().to_batches()
    return combined[0]


def rebatch(batches: Iterable[pa.RecordBatch], size: int, drop_last: bool = False) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly ``size`` rows (the last one may be shorter).

    Parameters
    ----------
    batches : iterable of RecordBatch
        Input batches of any size.
    size : int
        Rows per output batch.
    drop_last : bool, default False
        Leave out a shorter final batch.
    """
    if size < 1:
        raise ValueError(f"batch_size must be positive, got {size}")
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            take = min(size - rows, batch.num_rows - start)
            pending.append(batch.slice(start, take))
            rows += take
            start += take
            if rows == size:
                yield concat(pending)
                pending, rows = [], 0
    if rows and not drop_last:
        yield concat(pending)
