"""Which rows one consumer reads: a framework-free description of data-parallel sharding and epoch shuffling.

A :class:`Shard` is a pure value. :meth:`flightbay.RemoteTable.iter_batches` takes one through ``shard=``, and the
PyTorch dataset (:mod:`flightbay.ml`) builds one per DataLoader worker, so anything that can tell its own rank can
use the same logic (JAX, Ray tasks, plain ``multiprocessing``).

How a table is split
--------------------
The server cuts a flight into ``parts`` contiguous row ranges (one Flight endpoint each; see the ``partition`` op).
``parts`` is a multiple of ``count``, so every consumer gets the same number of parts. For an epoch:

1. the part order is ``0..parts-1``, or, with ``shuffle``, a permutation seeded by ``(seed, epoch)``, identical in
   every process;
2. consumer ``index`` reads ``order[index::count]``, so every row is read by exactly one consumer per epoch;
3. with ``shuffle``, the rows inside each part are also permuted, seeded by ``(seed, epoch, part)``.

``shuffle="global"`` instead asks the server for a fully shuffled copy of the table once per epoch (the ``shuffle``
op, cached on the server, so every consumer asking for the same epoch shares one copy), then splits that in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Shard"]

#: Parts the server may cut a flight into (the ``partition`` op's limit).
MAX_PARTS = 1024
#: Rows per part aimed for when ``parts`` is not given; big enough to stream well, small enough to shuffle in memory.
TARGET_ROWS_PER_PART = 131_072

ShuffleMode = bool | Literal["global"]


def mix_seed(*values: int) -> int:
    """A 63-bit seed derived from ``values``, the same in every process and Python version."""
    digest = hashlib.sha256(":".join(str(int(v)) for v in values).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Shard:
    """One consumer's share of a table for one epoch.

    Parameters
    ----------
    index : int, default 0
        This consumer's position, ``0 <= index < count``. For data-parallel training with DataLoader workers use
        :meth:`for_worker`.
    count : int, default 1
        How many consumers split the table.
    shuffle : bool or "global", default False
        ``False``: parts and rows in table order. ``True``: seeded permutation of the parts, and of the rows inside
        each part. ``"global"``: a server-side shuffled copy of the whole table per epoch.
    seed : int, default 0
        Base seed; the same on every consumer.
    epoch : int, default 0
        Epoch number; each epoch gives a different order (see :meth:`with_epoch`).
    parts : int, optional
        Number of row ranges to cut the table into; rounded up to a multiple of ``count``. By default about
        131,072 rows per part, at most 1024 parts.

    Examples
    --------
    >>> Shard(index=1, count=4).part_order(8)
    [1, 5]
    >>> Shard.for_worker(rank=1, world_size=2, worker=0, num_workers=2)
    Shard(index=2, count=4, shuffle=False, seed=0, epoch=0, parts=None)
    """

    index: int = 0
    count: int = 1
    shuffle: ShuffleMode = False
    seed: int = 0
    epoch: int = 0
    parts: int | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in [0, count), got index={self.index} count={self.count}")
        if self.count > MAX_PARTS:
            raise ValueError(f"at most {MAX_PARTS} shards, got {self.count}")
        if self.shuffle not in (False, True, "global"):
            raise ValueError(f"shuffle must be False, True or 'global', got {self.shuffle!r}")
        if self.parts is not None and self.parts < 1:
            raise ValueError(f"parts must be positive, got {self.parts}")

    @classmethod
    def for_worker(
        cls,
        rank: int,
        world_size: int,
        worker: int = 0,
        num_workers: int = 1,
        **kwargs: ShuffleMode | int | None,
    ) -> Shard:
        """The shard of DataLoader worker ``worker`` (of ``num_workers``) on rank ``rank`` (of ``world_size``).

        Parameters
        ----------
        rank, world_size : int
            Data-parallel rank and number of ranks.
        worker, num_workers : int
            DataLoader worker id and number of workers per rank (``0`` and ``1`` without workers).
        **kwargs
            Other :class:`Shard` fields (``shuffle``, ``seed``, ``epoch``, ``parts``).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank} world_size={world_size}")
        if not 0 <= worker < max(num_workers, 1):
            raise ValueError(f"worker must be in [0, num_workers), got {worker} of {num_workers}")
        workers = max(num_workers, 1)
        return cls(index=rank * workers + worker, count=world_size * workers, **kwargs)  # type: ignore[arg-type]

    def with_epoch(self, epoch: int) -> Shard:
        """The same shard for another epoch."""
        return dataclasses.replace(self, epoch=epoch)

    def num_parts(self, num_rows: int) -> int:
        """How many row ranges to cut a table of ``num_rows`` rows into: a multiple of :attr:`count`."""
        if self.parts is not None:
            wanted = self.parts
        else:
            wanted = max(1, math.ceil(num_rows / TARGET_ROWS_PER_PART))
        per_shard = max(1, math.ceil(wanted / self.count))
        per_shard = min(per_shard, MAX_PARTS // self.count)
        return per_shard * self.count

    def part_order(self, num_parts: int) -> list[int]:
        """The parts this shard reads, in reading order.

        Parameters
        ----------
        num_parts : int
            Parts the table was cut into.

        Returns
        -------
        list of int
            Part indices; over all ``index`` in ``range(count)`` every part appears exactly once.
        """
        order = list(range(num_parts))
        if self.shuffle is True:
            random.Random(mix_seed(self.seed, self.epoch)).shuffle(order)
        return order[self.index :: self.count]

    def row_order(self, part: int, num_rows: int) -> list[int] | None:
        """The row permutation applied inside ``part`` (``None`` when rows keep their order)."""
        if self.shuffle is not True:
            return None
        rows = list(range(num_rows))
        random.Random(mix_seed(self.seed, self.epoch, part)).shuffle(rows)
        return rows

    def global_seed(self) -> int:
        """Seed of the server-side shuffle for ``shuffle="global"``: one per ``(seed, epoch)``."""
        return mix_seed(self.seed, self.epoch)


def as_shard(value: Shard | Sequence[int] | None) -> Shard | None:
    """Accept a :class:`Shard`, an ``(index, count)`` pair or ``None``."""
    if value is None or isinstance(value, Shard):
        return value
    index, count = value
    return Shard(index=int(index), count=int(count))
