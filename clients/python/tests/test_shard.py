"""The framework-free sharding and epoch logic, and re-batching, without a server."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from flightbay import Shard
from flightbay._fetch import rebatch
from flightbay.shard import MAX_PARTS, mix_seed


def test_every_part_is_read_once_across_shards() -> None:
    for count in (1, 2, 3, 4, 8):
        for shuffle in (False, True):
            for epoch in range(3):
                shards = [Shard(i, count, shuffle=shuffle, seed=5, epoch=epoch) for i in range(count)]
                parts = shards[0].num_parts(1_000_000)
                assert parts % count == 0
                seen = sorted(p for s in shards for p in s.part_order(parts))
                assert seen == list(range(parts))
                assert len({len(s.part_order(parts)) for s in shards}) == 1  # equal share per shard


def test_unshuffled_order_is_strided() -> None:
    assert Shard(1, 4).part_order(8) == [1, 5]
    assert Shard(0, 1).part_order(3) == [0, 1, 2]
    assert Shard(0, 1).row_order(0, 5) is None


def test_shuffle_depends_on_seed_and_epoch_only() -> None:
    a = Shard(0, 2, shuffle=True, seed=1, epoch=0)
    assert a.part_order(64) == Shard(0, 2, shuffle=True, seed=1, epoch=0).part_order(64)
    assert a.part_order(64) != a.with_epoch(1).part_order(64)
    assert a.part_order(64) != Shard(0, 2, shuffle=True, seed=2).part_order(64)
    rows = a.row_order(3, 1000)
    assert rows is not None and sorted(rows) == list(range(1000)) and rows != list(range(1000))
    assert rows == Shard(1, 2, shuffle=True, seed=1).row_order(3, 1000)  # same on every shard
    assert rows != a.with_epoch(1).row_order(3, 1000)
    assert a.global_seed() == mix_seed(1, 0) != a.with_epoch(1).global_seed()


def test_mix_seed_is_stable() -> None:
    # Fixed value: the order must not change between processes, machines or releases.
    assert mix_seed(0, 0) == mix_seed(0, 0)
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert 0 <= mix_seed(123, 456) < 2**63
    assert mix_seed(7, 1) == 8203323606716338283


def test_num_parts() -> None:
    assert Shard(0, 1).num_parts(0) == 1
    assert Shard(0, 1).num_parts(131_072) == 1
    assert Shard(0, 1).num_parts(131_073) == 2
    assert Shard(0, 4).num_parts(10) == 4
    assert Shard(0, 4, parts=6).num_parts(10) == 8  # rounded up to a multiple of count
    assert Shard(0, 3).num_parts(10**12) == (MAX_PARTS // 3) * 3


def test_for_worker() -> None:
    s = Shard.for_worker(rank=1, world_size=2, worker=1, num_workers=2, shuffle=True, seed=3)
    assert (s.index, s.count, s.shuffle, s.seed) == (3, 4, True, 3)
    assert Shard.for_worker(0, 1) == Shard(0, 1)
    with pytest.raises(ValueError):
        Shard.for_worker(rank=2, world_size=2)
    with pytest.raises(ValueError):
        Shard.for_worker(rank=0, world_size=1, worker=2, num_workers=2)


@pytest.mark.parametrize(
    "kwargs",
    [{"index": 2, "count": 2}, {"index": -1, "count": 2}, {"count": 0}, {"shuffle": "yes"}, {"parts": 0}],
)
def test_invalid_shards(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Shard(**kwargs)


def test_shard_pickles() -> None:
    s = Shard(1, 3, shuffle="global", seed=9, epoch=2, parts=12)
    assert pickle.loads(pickle.dumps(s)) == s


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for n in sizes:
        out.append(pa.record_batch({"x": list(range(start, start + n))}))
        start += n
    return out


def test_rebatch_cuts_exact_sizes() -> None:
    got = list(rebatch(_batches([3, 10, 0, 4, 1]), 4))
    assert [b.num_rows for b in got] == [4, 4, 4, 4, 2]
    assert [x for b in got for x in b.column("x").to_pylist()] == list(range(18))
    assert [b.num_rows for b in rebatch(_batches([3, 10, 0, 4, 1]), 4, drop_last=True)] == [4, 4, 4, 4]
    assert list(rebatch(_batches([]), 4)) == []
    with pytest.raises(ValueError):
        list(rebatch(_batches([1]), 0))
