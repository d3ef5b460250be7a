"""flightbay: a Python client for the flightbay Arrow Flight server.

Tables stay on the server as numbered, immutable *flights*. A :class:`RemoteTable` is a handle on one; its
operations (``take``, ``filter``, ``sort_by``, ``join``, ``resample``, ``sql``, ...) run on the server and return
new handles, and rows travel only when asked for (``to_arrow``, ``to_pandas``, ``to_polars``, ``iter_batches``,
``to_torch_dataset``).

>>> import flightbay                                                    # doctest: +SKIP
>>> client = flightbay.connect("grpc://127.0.0.1:8815")
>>> trips = client.upload("trips.parquet", "trips")
>>> busy = trips.filter("passengers > 2").sort_by([("fare", "descending")])
>>> busy.head(10).to_pandas()
"""

from __future__ import annotations

from ._info import TableInfo
from .client import Client, connect
from .errors import (
    AlreadyExists,
    FlightbayError,
    InvalidRequest,
    MemoryBudgetExceeded,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unsupported,
)
from .shard import Shard
from .table import RemoteTable

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Client",
    "FlightbayError",
    "InvalidRequest",
    "MemoryBudgetExceeded",
    "NotFound",
    "PermissionDenied",
    "RemoteTable",
    "Shard",
    "TableInfo",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
    "__version__",
    "connect",
]
