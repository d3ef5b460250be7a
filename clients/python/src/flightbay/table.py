""":class:`RemoteTable`: a handle on one flight. Operations run on the server and return new handles; rows travel
only when a ``to_*`` or ``iter_*`` method asks for them."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from ._display import table_html
from ._fetch import MAX_FETCH_THREADS, read_endpoint, read_endpoints, rebatch, stream_endpoint
from ._info import FlightRef, TableInfo, format_bytes, source_value
from ._progress import Progress
from ._sql import expression_to_sql, with_self_alias
from .errors import Unsupported
from .shard import Shard, ShuffleMode, as_shard

if TYPE_CHECKING:
    import pandas
    import polars

    from .client import Client
    from .ml import FlightbayIterableDataset

__all__ = ["RemoteTable"]

#: Flights at least this big are fetched by ``to_arrow`` as several row ranges in parallel.
PARALLEL_FETCH_BYTES = 64 << 20

Aggregation = Literal["mean", "avg", "sum", "min", "max", "count", "first", "last", "median"]
SortOrder = Literal["ascending", "descending"]
Mask: TypeAlias = str | pc.Expression | pa.Array | pa.ChunkedArray | Sequence[bool] | Any


class RemoteTable:
    """A flight on a flightbay server, used like a ``pyarrow.Table`` whose rows stay on the server.

    Every operation (``take``, ``filter``, ``sort_by``, ``sql``, ...) returns a **new** ``RemoteTable``: a new
    flight, computed on the server, or found in its result cache. Metadata properties never fetch rows.

    Get one from :meth:`Client.upload`, :meth:`Client.table` (``client[42]``, ``client["trips"]``) or
    :meth:`Client.sql`.
    """

    def __init__(self, client: Client, info: TableInfo, *, cache: str | None = None) -> None:
        self._client = client
        self._info = info
        self._cache = cache

    # -- metadata (no rows) ----------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client this handle talks through."""
        return self._client

    @property
    def info(self) -> TableInfo:
        """The flight's metadata as of when this handle was made."""
        return self._info

    @property
    def id(self) -> int:
        """The flight id (``f<id>`` in SQL)."""
        return self._info.id

    @property
    def name(self) -> str | None:
        """The flight's name, if it has one."""
        return self._info.name

    @property
    def namespace(self) -> str | None:
        """The namespace of :attr:`name`."""
        return self._info.namespace

    @property
    def schema(self) -> pa.Schema:
        """Column names and types."""
        return self._info.schema

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        return self._info.num_rows

    @property
    def nbytes(self) -> int:
        """Bytes the flight holds in server memory."""
        return self._info.nbytes

    @property
    def num_columns(self) -> int:
        """Number of columns."""
        return len(self._info.schema)

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_rows, num_columns)``."""
        return (self.num_rows, self.num_columns)

    @property
    def column_names(self) -> list[str]:
        """Column names, in order."""
        return list(self._info.schema.names)

    @property
    def lineage(self) -> dict[str, Any]:
        """How the flight was made: ``{"op": "take", "params": {...}, "inputs": [7]}``.

        ``client.do_action("lineage", id=t.id)`` returns the whole ancestry back to the uploads.
        """
        return self._info.lineage

    @property
    def cache(self) -> str | None:
        """For a handle returned by an operation: ``"hit"`` if the server reused a flight, ``"miss"`` if it
        computed it; ``None`` for handles from uploads or lookups."""
        return self._cache

    @property
    def state(self) -> str | None:
        """``"memory"`` or ``"spilled"``, asked from the server now."""
        return self._client.table(self.id).info.state

    def refresh(self) -> RemoteTable:
        """A handle with freshly read metadata (state, names)."""
        return self._client.table(self.id)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        label = f" {self._info.qualified_name!r}" if self._info.name else ""
        schema = self.schema.to_string(show_schema_metadata=False)
        return (
            f"<flightbay.RemoteTable f{self.id}{label}: {self.num_rows:,} rows x {self.num_columns} columns, "
            f"{format_bytes(self.nbytes)}, {self._info.state or 'unknown'}>\n{schema}"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: id, names, rows, size, state, lineage and schema as of this handle, no rows."""
        return table_html(self._info)

    # -- operations (each returns a new flight) --------------------------------------------------------------

    def _derive(self, op: str, **params: Any) -> RemoteTable:
        return self._client._derive({"op": op, "source": self.id, **params})

    def take(self, indices: Sequence[int] | pa.Array | pa.ChunkedArray | Any) -> RemoteTable:
        """Rows at the given positions, in that order (as ``pyarrow.Table.take``).

        Parameters
        ----------
        indices : sequence of int, numpy array or pyarrow integer array
            0-based row positions; may repeat.
        """
        return self._derive("take", indices=_int_list(indices, "indices"))

    def slice(self, offset: int = 0, length: int | None = None) -> RemoteTable:
        """``length`` rows from ``offset`` (to the end when ``length`` is None)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be non-negative")
        return self._derive("slice", offset=int(offset), length=None if length is None else int(length))

    def filter(self, mask: Mask) -> RemoteTable:
        """Rows where ``mask`` holds.

        Parameters
        ----------
        mask : str, pyarrow.compute.Expression or boolean array
            A SQL predicate (``"fare > 10 AND city = 'Oslo'"``); a pyarrow expression
            (``pc.field("fare") > 10``), translated to SQL (:class:`~flightbay.Unsupported` if it cannot be); or
            a boolean array with one value per row (rows where it is null are dropped).
        """
        if isinstance(mask, str):
            return self._derive("filter", predicate=mask)
        if isinstance(mask, pc.Expression):
            return self._derive("filter", predicate=expression_to_sql(mask))
        selection = mask if isinstance(mask, (pa.Array, pa.ChunkedArray)) else pa.array(mask, pa.bool_())
        if len(selection) != self.num_rows:
            raise ValueError(f"boolean mask has {len(selection)} values for {self.num_rows} rows")
        return self.take(pc.indices_nonzero(pc.fill_null(selection, False)))

    def sort_by(
        self,
        sorting: str | Sequence[str | tuple[str, SortOrder] | tuple[str, SortOrder, str]],
        *,
        null_placement: str | None = None,
    ) -> RemoteTable:
        """Rows sorted by one or more columns (stable, as ``pyarrow.Table.sort_by``).

        Parameters
        ----------
        sorting : str or list
            A column name (ascending), or keys such as ``[("fare", "descending"), "city"]``. A key may carry
            its null placement as a third item, as in pyarrow >= 25 (``("fare", "descending", "at_start")``);
            the server applies one placement to all keys.
        null_placement : {"at_end", "at_start"}, optional
            Where nulls go (default ``"at_end"``).
        """
        keys: list[list[str]] = []
        placements = {null_placement} if null_placement is not None else set()
        for key in [sorting] if isinstance(sorting, str) else sorting:
            column, order, *rest = (key, "ascending") if isinstance(key, str) else key
            if order not in ("ascending", "descending"):
                raise ValueError(f"sort order must be 'ascending' or 'descending', got {order!r}")
            keys.append([column, order])
            placements.update(rest)
        if len(placements) > 1:
            raise Unsupported(f"the server sorts with one null placement for all keys, got {sorted(placements)}")
        placement = placements.pop() if placements else "at_end"
        if placement not in ("at_end", "at_start"):
            raise ValueError(f"null_placement must be 'at_end' or 'at_start', got {placement!r}")
        return self._derive("sort_by", keys=keys, null_placement=placement)

    def select(self, columns: Sequence[str | int]) -> RemoteTable:
        """Only these columns, in this order (names or positions)."""
        return self._derive("select", columns=self._names(columns))

    def drop_columns(self, columns: str | Sequence[str]) -> RemoteTable:
        """All columns but these."""
        return self._derive("drop_columns", columns=self._names([columns] if isinstance(columns, str) else columns))

    def rename_columns(self, names: Sequence[str] | Mapping[str, str]) -> RemoteTable:
        """The same rows with new column names: one per column, or a mapping ``{old: new}``."""
        if isinstance(names, Mapping):
            return self._derive("rename_columns", names=dict(names))
        new = list(names)
        if len(new) != self.num_columns:
            raise ValueError(f"{len(new)} names given for {self.num_columns} columns")
        return self._derive("rename_columns", names=new)

    def head(self, num_rows: int = 5) -> RemoteTable:
        """The first ``num_rows`` rows."""
        return self._derive("head", num_rows=int(num_rows))

    def join(
        self,
        right_table: FlightRef,
        keys: str | Sequence[str],
        right_keys: str | Sequence[str] | None = None,
        join_type: str = "left outer",
        left_suffix: str | None = None,
        right_suffix: str | None = None,
        coalesce_keys: bool = True,
    ) -> RemoteTable:
        """Join with another flight, as ``pyarrow.Table.join``.

        Parameters
        ----------
        right_table : RemoteTable, int or str
            The right side (a handle, id or name on the same server).
        keys, right_keys : str or list of str
            Key columns of the left and right side (``right_keys`` defaults to ``keys``).
        join_type : str, default "left outer"
            ``"inner"``, ``"left outer"``, ``"right outer"``, ``"full outer"``, ``"left semi"``,
            ``"right semi"``, ``"left anti"`` or ``"right anti"``.
        left_suffix, right_suffix : str, optional
            Suffixes for clashing non-key column names.
        coalesce_keys : bool, default True
            Show key columns once.
        """
        return self._derive(
            "join",
            right=source_value(right_table),
            keys=keys,
            right_keys=right_keys,
            join_type=join_type,
            left_suffix=left_suffix,
            right_suffix=right_suffix,
            coalesce_keys=coalesce_keys,
        )

    def resample(
        self,
        rule: str,
        *,
        on: str,
        agg: Aggregation | Mapping[str, Aggregation],
        by: str | Sequence[str] | None = None,
    ) -> RemoteTable:
        """Downsample a time series into fixed bins labelled by their left edge (as pandas' ``resample``).

        Parameters
        ----------
        rule : str
            Bin width: ``"30s"``, ``"15min"``, ``"1h"``, ``"1D"``, ...
        on : str
            Timestamp column.
        agg : str or mapping
            One aggregation for every other column (``"mean"``), or ``{"price": "mean", "qty": "sum"}``. Known:
            mean, sum, min, max, count, first, last, median.
        by : str or list of str, optional
            Group columns: one series per distinct value.

        Returns
        -------
        RemoteTable
            One row per non-empty bin (and group).
        """
        params: dict[str, Any] = {"time_column": on, "every": rule}
        if isinstance(agg, str):
            params["aggregation_func"] = agg
        else:
            params["aggregations"] = dict(agg)
        if by is not None:
            params["by"] = [by] if isinstance(by, str) else list(by)
        return self._derive("resample", **params)

    def shuffle(self, seed: int) -> RemoteTable:
        """All rows in a random order; the same ``seed`` gives the same order (and the cached flight)."""
        return self._derive("shuffle", seed=int(seed))

    def sql(self, query: str, *, name: str | None = None) -> RemoteTable:
        """Run SQL in which ``self`` and ``t`` stand for this flight.

        Parameters
        ----------
        query : str
            e.g. ``"SELECT city, avg(fare) AS fare FROM t GROUP BY city"``. Other flights are reachable by name.
        name : str, optional
            Name the result.
        """
        return self._client._derive({"op": "sql", "query": with_self_alias(query, f"f{self.id}")}, name=name)

    def _names(self, columns: Sequence[str | int]) -> list[str]:
        names = self.column_names
        out = []
        for c in columns:
            if isinstance(c, int) and not isinstance(c, bool):
                out.append(names[c])
            elif isinstance(c, str):
                out.append(c)
            else:
                raise TypeError(f"columns are names or positions, got {c!r}")
        return out

    # -- fetching rows ---------------------------------------------------------------------------------------

    def _auto_parts(self) -> int:
        return max(1, min(MAX_FETCH_THREADS, self.nbytes // PARALLEL_FETCH_BYTES))

    def to_arrow(self, *, progress: bool | None = None, parts: int | None = None) -> pa.Table:
        """Fetch every row as a ``pyarrow.Table``.

        Parameters
        ----------
        progress : bool, optional
            Show a tqdm bar (bytes received); by default only on a terminal or in a notebook.
        parts : int, optional
            Fetch as this many row ranges in parallel threads. By default one range per 64 MiB, at most 8.
        """
        count = self._auto_parts() if parts is None else parts
        endpoints = self._client._endpoints(self.id, count if count > 1 else None)
        with Progress(self.nbytes, f"fetch f{self.id}", progress) as bar:
            tables = read_endpoints(self._client, endpoints, bar)
        if not tables:
            return self.schema.empty_table()
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    to_table = to_arrow

    def to_pandas(self, **kwargs: Any) -> pandas.DataFrame:
        """Fetch every row as a pandas DataFrame; ``kwargs`` go to ``pyarrow.Table.to_pandas``."""
        frame: pandas.DataFrame = self.to_arrow().to_pandas(**kwargs)
        return frame

    def to_polars(self) -> polars.DataFrame:
        """Fetch every row as a polars DataFrame."""
        import polars as pl

        frame = pl.from_arrow(self.to_arrow())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def to_batches(self, max_chunksize: int | None = None) -> list[pa.RecordBatch]:
        """Fetch every row as a list of record batches of at most ``max_chunksize`` rows."""
        return list(self.to_arrow().to_batches(max_chunksize=max_chunksize))

    def to_reader(self, *, progress: bool | None = None) -> pa.RecordBatchReader:
        """A ``pyarrow.RecordBatchReader`` that streams the rows as they arrive."""
        return pa.RecordBatchReader.from_batches(self.schema, self._stream(progress))

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The Arrow C stream interface: ``pa.table(t)``, ``pl.DataFrame(t)`` and other readers take the rows."""
        return self.to_reader(progress=False).__arrow_c_stream__(requested_schema)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """Stream the rows as record batches."""
        return self._stream(False)

    def _stream(self, progress: bool | None) -> Iterator[pa.RecordBatch]:
        endpoints = self._client._endpoints(self.id)
        with Progress(self.nbytes, f"fetch f{self.id}", progress) as bar:
            for endpoint in endpoints:
                yield from stream_endpoint(self._client, endpoint, bar)

    def iter_batches(
        self,
        batch_size: int | None = None,
        *,
        columns: Sequence[str] | None = None,
        progress: bool | None = None,
        shard: Shard | tuple[int, int] | None = None,
        drop_last: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows as record batches.

        Parameters
        ----------
        batch_size : int, optional
            Rows per batch (the last one may be shorter). By default batches are passed on as they arrive.
        columns : list of str, optional
            Only these columns (a ``select`` on the server, so only they travel).
        progress : bool, optional
            Show a tqdm bar (bytes received).
        shard : Shard or (index, count), optional
            Read only this consumer's share: the table is cut into row ranges on the server and the consumer
            reads every ``count``-th one (see :class:`~flightbay.Shard` for shuffling and epochs).
        drop_last : bool, default False
            Leave out a final batch shorter than ``batch_size``.

        Yields
        ------
        pyarrow.RecordBatch
        """
        source = self if columns is None or list(columns) == self.column_names else self.select(list(columns))
        spec = as_shard(shard)
        batches = source._stream(progress) if spec is None else source._stream_shard(spec, progress)
        if batch_size is None:
            return batches
        return rebatch(batches, batch_size, drop_last)

    def _stream_shard(self, shard: Shard, progress: bool | None) -> Iterator[pa.RecordBatch]:
        base = self.shuffle(shard.global_seed()) if shard.shuffle == "global" else self
        endpoints = self._client._endpoints(base.id, shard.num_parts(base.num_rows))
        order = shard.part_order(len(endpoints))
        total = math.ceil(base.nbytes * len(order) / max(len(endpoints), 1))
        with Progress(total, f"fetch f{base.id} shard {shard.index}/{shard.count}", progress) as bar:
            for part in order:
                if shard.shuffle is True:
                    rows = read_endpoint(self._client, endpoints[part], bar)
                    permutation = shard.row_order(part, rows.num_rows)
                    yield from rows.take(pa.array(permutation, pa.int64())).to_batches()
                else:
                    yield from stream_endpoint(self._client, endpoints[part], bar)

    # -- machine learning ------------------------------------------------------------------------------------

    def to_torch_dataset(
        self,
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        shuffle: ShuffleMode = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        parts: int | None = None,
        format: Literal["torch", "arrow"] = "torch",
    ) -> FlightbayIterableDataset:
        """A ``torch.utils.data.IterableDataset`` yielding batches of this flight.

        Use it with ``DataLoader(ds, batch_size=None, num_workers=k)``: the dataset already yields whole batches.
        Rows are sharded over ranks and DataLoader workers so each row is served once per epoch; call
        ``ds.set_epoch(n)`` before each epoch for a new order. See :mod:`flightbay.ml`.

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        columns : list of str, optional
            Only these columns.
        shuffle : bool or "global", default False
            See :class:`~flightbay.Shard`.
        seed : int, default 0
            Base seed, the same on every rank.
        drop_last : bool, default False
            Leave out each worker's final short batch.
        rank, world_size : int, optional
            Data-parallel position; by default from ``torch.distributed`` when initialized, else 0 and 1.
        parts : int, optional
            Row ranges to cut the table into (default about 131,072 rows each).
        format : {"torch", "arrow"}, default "torch"
            Yield ``dict[str, torch.Tensor]`` (non-numeric columns as lists) or ``pyarrow.RecordBatch``.
        """
        from .ml import FlightbayIterableDataset

        return FlightbayIterableDataset(
            self,
            batch_size,
            columns=columns,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            parts=parts,
            format=format,
        )


def _int_list(values: Any, what: str) -> list[int]:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count:
            raise ValueError(f"{what} must not contain nulls")
        return [int(v) for v in values.to_pylist()]
    if hasattr(values, "tolist"):  # numpy arrays, pandas Series
        values = values.tolist()
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what} must be integers, got {v!r}")
        if v < 0:
            raise ValueError(f"{what} must be non-negative, got {v}")
        out.append(v)
    return out
