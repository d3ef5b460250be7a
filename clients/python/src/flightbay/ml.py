"""PyTorch integration: :class:`FlightbayIterableDataset`, made by :meth:`RemoteTable.to_torch_dataset`.

torch is imported only when the dataset class is first used, so ``import flightbay`` stays light. The sharding and
epoch logic lives in :mod:`flightbay.shard` and works without torch.

Rules the dataset follows
-------------------------
- **Sharding.** Inside ``__iter__`` it reads its DataLoader worker (``get_worker_info()``) and its rank, and
  reads only :meth:`Shard.for_worker` ``(rank, world_size, worker, num_workers)``, so across all ranks and workers
  each row is served exactly once per epoch (``drop_last=False``).
- **Fork safety.** gRPC does not survive ``fork()``: a worker forked from a process that has used a connection
  hangs on its first call. Workers must therefore be started with ``spawn`` (what
  :meth:`~FlightbayIterableDataset.loader` sets) or ``forkserver``, and a script needs the usual
  ``if __name__ == "__main__":`` guard. The dataset pickles as the flight id and the connection settings, and each
  worker opens its own connection on first use. A forked worker raises :class:`~flightbay.FlightbayError` saying
  so instead of hanging.
- **Epochs.** ``set_epoch(n)`` changes the shuffled order, identically on every rank. DataLoader workers get a
  copy of the dataset when an epoch starts, so call it before iterating the loader, and do not use
  ``persistent_workers=True`` with shuffling (the workers would keep the old epoch).

Example
-------
>>> ds = client["trips"].to_torch_dataset(1024, columns=["x", "y"], shuffle=True, seed=1)   # doctest: +SKIP
>>> loader = ds.loader(num_workers=2)          # a DataLoader with spawned workers       # doctest: +SKIP
>>> for epoch in range(3):                                                                # doctest: +SKIP
...     ds.set_epoch(epoch)
...     for batch in loader:
...         loss = model(batch["x"]).sub(batch["y"]).pow(2).mean()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from .shard import Shard, ShuffleMode

if TYPE_CHECKING:
    from .table import RemoteTable

__all__ = ["FlightbayIterableDataset", "batch_to_torch"]


def batch_to_torch(batch: pa.RecordBatch) -> dict[str, Any]:
    """Columns of ``batch`` as torch tensors (numbers, booleans, timestamps as int64); other columns as lists.

    Integer columns with nulls become float tensors with NaN, as in pandas.
    """
    import torch

    out: dict[str, Any] = {}
    for name, column in zip(batch.schema.names, batch.columns):
        t = column.type
        if pa.types.is_temporal(t) and column.null_count == 0:
            column = column.view(pa.int32() if t.bit_width == 32 else pa.int64())
            t = column.type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
        if numeric or (pa.types.is_boolean(t) and column.null_count == 0):
            out[name] = torch.from_numpy(column.to_numpy(zero_copy_only=False, writable=True))
        else:
            out[name] = column.to_pylist()
    return out


def _dataset_class() -> type:
    import torch
    import torch.distributed
    import torch.utils.data
    from torch.utils.data import IterableDataset, get_worker_info

    class FlightbayIterableDataset(IterableDataset[Any]):
        """Batches of a flight for a PyTorch ``DataLoader`` (with ``batch_size=None``).

        Made by :meth:`flightbay.RemoteTable.to_torch_dataset`, whose parameters it takes.
        """

        def __init__(
            self,
            table: RemoteTable,
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
        ) -> None:
            super().__init__()
            if batch_size < 1:
                raise ValueError(f"batch_size must be positive, got {batch_size}")
            if format not in ("torch", "arrow"):
                raise ValueError(f"format must be 'torch' or 'arrow', got {format!r}")
            if (rank is None) != (world_size is None):
                raise ValueError("give both rank and world_size, or neither")
            self.table = table
            self.batch_size = batch_size
            self.columns = None if columns is None else list(columns)
            self.shuffle = shuffle
            self.seed = seed
            self.drop_last = drop_last
            self.rank = rank
            self.world_size = world_size
            self.parts = parts
            self.format = format
            self.epoch = 0
            # Checks the arguments now rather than in a worker.
            self.shard(rank or 0, world_size or 1, 0, 1)

        def set_epoch(self, epoch: int) -> None:
            """Use the order of epoch ``epoch`` from the next ``iter()`` on (same on every rank)."""
            self.epoch = int(epoch)

        def shard(self, rank: int, world_size: int, worker: int, num_workers: int) -> Shard:
            """The :class:`~flightbay.Shard` one worker of one rank reads in the current epoch."""
            return Shard.for_worker(
                rank,
                world_size,
                worker,
                num_workers,
                shuffle=self.shuffle,
                seed=self.seed,
                epoch=self.epoch,
                parts=self.parts,
            )

        def _position(self) -> tuple[int, int, int, int]:
            rank, world_size = self.rank, self.world_size
            if rank is None or world_size is None:
                distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
                rank = torch.distributed.get_rank() if distributed else 0
                world_size = torch.distributed.get_world_size() if distributed else 1
            info = get_worker_info()
            worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
            return rank, world_size, worker, num_workers

        def __iter__(self) -> Iterator[Any]:
            shard = self.shard(*self._position())
            batches = self.table.iter_batches(
                self.batch_size, columns=self.columns, progress=False, shard=shard, drop_last=self.drop_last
            )
            for batch in batches:
                yield batch if self.format == "arrow" else batch_to_torch(batch)

        def loader(self, num_workers: int = 0, **kwargs: Any) -> torch.utils.data.DataLoader[Any]:
            """A ``DataLoader`` over this dataset: ``batch_size=None`` (batches are already made) and, with
            workers, the ``spawn`` start method (gRPC cannot be used in forked workers).

            Parameters
            ----------
            num_workers : int, default 0
                Worker processes per rank.
            **kwargs
                Other ``DataLoader`` arguments (``pin_memory``, ``prefetch_factor``, ...).
            """
            if num_workers > 0:
                kwargs.setdefault("multiprocessing_context", "spawn")
            return torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

        def __repr__(self) -> str:
            return (
                f"<FlightbayIterableDataset f{self.table.id} batch_size={self.batch_size} "
                f"shuffle={self.shuffle!r} seed={self.seed} epoch={self.epoch}>"
            )

    # Built inside a function, but pickled (to spawn/forkserver workers) by reference to this module's attribute.
    FlightbayIterableDataset.__module__ = __name__
    FlightbayIterableDataset.__qualname__ = "FlightbayIterableDataset"
    return FlightbayIterableDataset


if TYPE_CHECKING:
    FlightbayIterableDataset: Any


def __getattr__(name: str) -> Any:
    # The class derives from torch's IterableDataset, so it is built on first use; pickle finds it here too.
    if name == "FlightbayIterableDataset":
        cls = _dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
