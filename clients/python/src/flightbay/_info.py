"""Metadata of a stored flight, as the server describes it in ``FlightInfo``, and references to flights."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa
from pyarrow import flight

if TYPE_CHECKING:
    from .table import RemoteTable

#: A flight reference: an id (``42``), a name (``"trips"``, ``"sales.trips"``), ``"f42"``, or a handle.
FlightRef = Union[int, str, "RemoteTable", "TableInfo"]

_ID_NAME = re.compile(r"^f(\d+)$")


@dataclass(frozen=True)
class TableInfo:
    """What the server knows about one flight, without its rows.

    Attributes
    ----------
    id : int
        The flight id; never reused.
    name, namespace : str or None
        The flight's name (the one it was asked by, else its first), if any.
    names : tuple of str
        Every ``namespace.name`` pointing at the flight.
    schema : pyarrow.Schema
        Column names and types.
    num_rows, nbytes : int
        Rows and bytes (as held in memory).
    state : str or None
        ``"memory"`` or ``"spilled"``.
    pinned : bool
        Kept in memory by the ``pin`` action (never spilled).
    lineage : dict
        How the flight was made: ``{"op": ..., "params": {...}, "inputs": [ids]}``.
    created_at : str or None
        Creation time, RFC 3339 UTC.
    """

    id: int
    name: str | None
    namespace: str | None
    names: tuple[str, ...]
    schema: pa.Schema
    num_rows: int
    nbytes: int
    state: str | None
    pinned: bool = False
    lineage: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def op(self) -> str | None:
        """``"upload"`` or the op that derived the flight (``"sql"``, ``"take"``, ...)."""
        return self.lineage.get("op")

    @property
    def inputs(self) -> list[int]:
        """Ids of the flights this one was computed from."""
        return list(self.lineage.get("inputs", []))

    @property
    def qualified_name(self) -> str | None:
        """``namespace.name``, or ``None`` for an unnamed flight."""
        if self.name is None:
            return None
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @classmethod
    def from_flight_info(cls, info: flight.FlightInfo) -> tuple[TableInfo, dict[str, Any]]:
        """Parse a flightbay ``FlightInfo``; also returns its whole ``app_metadata`` JSON."""
        raw = info.app_metadata
        meta: dict[str, Any] = json.loads(raw) if raw else {}
        if "id" not in meta:
            raise ValueError("FlightInfo carries no flightbay metadata; is this a flightbay server?")
        total_records = info.total_records
        total_bytes = info.total_bytes
        return (
            cls(
                id=int(meta["id"]),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                names=tuple(meta.get("names", ())),
                schema=info.schema,
                num_rows=int(total_records) if total_records is not None and total_records >= 0 else 0,
                nbytes=int(total_bytes) if total_bytes is not None and total_bytes >= 0 else 0,
                state=meta.get("state"),
                pinned=bool(meta.get("pinned", False)),
                lineage=meta.get("lineage") or {},
                created_at=meta.get("created_at"),
            ),
            meta,
        )


def split_name(name: str) -> tuple[str | None, str]:
    """``"sales.trips"`` → ``("sales", "trips")``; ``"trips"`` → ``(None, "trips")``."""
    namespace, dot, short = name.rpartition(".")
    return (namespace, short) if dot else (None, name)


def ref_id(ref: FlightRef) -> int | None:
    """The flight id a reference names directly (``42``, ``"42"``, ``"f42"``, a handle), else ``None``."""
    from .table import RemoteTable

    if isinstance(ref, bool):
        raise TypeError("a flight reference is an id, a name or a RemoteTable, not a bool")
    if isinstance(ref, int):
        if ref < 0:
            raise ValueError(f"flight ids are non-negative, got {ref}")
        return ref
    if isinstance(ref, (RemoteTable, TableInfo)):
        return ref.id
    if isinstance(ref, str):
        if ref.isdigit():
            return int(ref)
        m = _ID_NAME.match(ref)
        if m:
            return int(m.group(1))
        return None
    raise TypeError(f"a flight reference is an id, a name or a RemoteTable, got {type(ref).__name__}")


def path_descriptor(ref: FlightRef) -> flight.FlightDescriptor:
    """The PATH descriptor for ``ref``: ``["42"]``, ``["trips"]`` or ``["sales", "trips"]``."""
    id_ = ref_id(ref)
    if id_ is not None:
        return flight.FlightDescriptor.for_path(str(id_))
    assert isinstance(ref, str)
    namespace, short = split_name(ref)
    return flight.FlightDescriptor.for_path(*([namespace] if namespace else []), short)


def source_value(ref: FlightRef) -> int | str:
    """``ref`` as the ``source`` of a JSON op: an id when known, else the name."""
    id_ = ref_id(ref)
    if id_ is not None:
        return id_
    assert isinstance(ref, str)
    return ref


def action_ref(ref: FlightRef) -> dict[str, Any]:
    """``ref`` as an action body reference: ``{"id": 42}`` or ``{"name": "trips", "namespace": "sales"}``."""
    id_ = ref_id(ref)
    if id_ is not None:
        return {"id": id_}
    assert isinstance(ref, str)
    namespace, short = split_name(ref)
    return {"name": short, **({"namespace": namespace} if namespace else {})}


def format_bytes(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
