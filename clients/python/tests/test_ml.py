"""The PyTorch dataset: sharding over ranks and DataLoader workers, epochs, seeds, formats, fork safety."""

from __future__ import annotations

import pickle
import socket

import pyarrow as pa
import pytest
import torch
import torch.distributed as dist

import flightbay

from .conftest import Server, sample

ROWS = 10_000
BATCH = 256


@pytest.fixture(scope="module")
def remote(shared_server: Server) -> flightbay.RemoteTable:
    client = flightbay.connect(shared_server.uri)
    return client.upload(sample(ROWS), "ml_source", mode="replace")


def epoch_batches(ds, epoch: int, workers: int = 2) -> list[list[int]]:
    """The ``id`` values of every batch one rank's DataLoader yields in ``epoch``, in order."""
    ds.set_epoch(epoch)
    return [batch["id"].tolist() for batch in ds.loader(num_workers=workers)]


def test_dataloader_two_workers_two_ranks(remote: flightbay.RemoteTable) -> None:
    def run(seed: int, epoch: int) -> list[list[list[int]]]:
        ranks = [
            remote.to_torch_dataset(BATCH, shuffle=True, seed=seed, rank=r, world_size=2, parts=16) for r in range(2)
        ]
        return [epoch_batches(ds, epoch) for ds in ranks]

    epochs = [run(seed=7, epoch=e) for e in range(2)]
    for per_rank in epochs:
        ids = [i for rank in per_rank for batch in rank for i in batch]
        assert len(ids) == ROWS and sorted(ids) == list(range(ROWS))  # every row exactly once per epoch
        assert all(len(batch) <= BATCH for rank in per_rank for batch in rank)
        assert all(len(rank) >= ROWS // BATCH // 2 for rank in per_rank)
        assert abs(sum(map(len, per_rank[0])) - sum(map(len, per_rank[1]))) <= 16  # balanced ranks
    assert epochs[0][0] != epochs[1][0] and epochs[0][1] != epochs[1][1]  # a new order each epoch
    assert run(seed=7, epoch=0) == epochs[0]  # repeatable with the same seed
    assert run(seed=8, epoch=0) != epochs[0]


def test_global_shuffle_dataset(remote: flightbay.RemoteTable) -> None:
    ds = remote.to_torch_dataset(1000, shuffle="global", seed=3, format="arrow")
    orders = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        ids = [i for b in ds for i in b.column("id").to_pylist()]
        assert sorted(ids) == list(range(ROWS)) and ids != sorted(ids)
        orders.append(ids)
    assert orders[0] != orders[1]


def test_single_process_in_order(remote: flightbay.RemoteTable) -> None:
    ds = remote.to_torch_dataset(BATCH)
    batches = list(ds)
    assert [len(b["id"]) for b in batches] == [BATCH] * (ROWS // BATCH) + [ROWS % BATCH]
    assert torch.cat([b["id"] for b in batches]).tolist() == list(range(ROWS))
    assert [len(b["id"]) for b in remote.to_torch_dataset(BATCH, drop_last=True)] == [BATCH] * (ROWS // BATCH)


def test_torch_format(remote: flightbay.RemoteTable) -> None:
    table = sample(ROWS)
    batch = next(iter(remote.to_torch_dataset(100)))
    assert set(batch) == set(table.column_names)
    assert batch["id"].dtype == torch.int64 and batch["id"].tolist() == list(range(100))
    assert batch["sensor"].dtype == torch.int32
    assert batch["value"].dtype == torch.float64
    assert torch.equal(batch["value"], torch.tensor(table["value"].to_numpy()[:100]))
    assert batch["ts"].dtype == torch.int64  # epoch milliseconds
    assert batch["ts"].tolist() == table["ts"].cast(pa.int64()).to_pylist()[:100]
    assert batch["label"] == table["label"].to_pylist()[:100]
    batch["value"] += 1  # tensors own writable memory
    only = next(iter(remote.to_torch_dataset(10, columns=["value", "id"])))
    assert list(only) == ["value", "id"]
    arrow = next(iter(remote.to_torch_dataset(10, format="arrow")))
    assert isinstance(arrow, pa.RecordBatch) and arrow.num_rows == 10


def test_nulls_in_torch_batches() -> None:
    from flightbay.ml import batch_to_torch

    batch = pa.record_batch({"i": pa.array([1, None, 3]), "b": pa.array([True, None, False]), "f": [1.0, 2.0, 3.0]})
    out = batch_to_torch(batch)
    assert out["i"].dtype == torch.float64 and torch.isnan(out["i"][1])
    assert out["b"] == [True, None, False]
    assert out["f"].tolist() == [1.0, 2.0, 3.0]


def test_rank_from_torch_distributed(remote: flightbay.RemoteTable) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        ds = remote.to_torch_dataset(5000)
        assert ds._position() == (0, 1, 0, 1)
        assert sum(len(b["id"]) for b in ds) == ROWS
    finally:
        dist.destroy_process_group()


def test_dataset_pickles_without_a_connection(remote: flightbay.RemoteTable) -> None:
    ds = remote.to_torch_dataset(BATCH, shuffle=True, seed=1)
    ds.set_epoch(4)
    copy = pickle.loads(pickle.dumps(ds))
    assert type(copy).__name__ == "FlightbayIterableDataset" and copy.epoch == 4
    assert copy.table.id == remote.id and copy.table.client is not remote.client
    assert [b["id"].tolist() for b in copy] == [b["id"].tolist() for b in ds]
    assert "shuffle=True" in repr(ds)


def test_forked_workers_fail_loudly(remote: flightbay.RemoteTable) -> None:
    ds = remote.to_torch_dataset(BATCH)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(flightbay.FlightbayError, match="multiprocessing_context='spawn'"):
        list(loader)


def test_invalid_arguments(remote: flightbay.RemoteTable) -> None:
    with pytest.raises(ValueError):
        remote.to_torch_dataset(0)
    with pytest.raises(ValueError):
        remote.to_torch_dataset(10, format="numpy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        remote.to_torch_dataset(10, rank=0)
    with pytest.raises(ValueError):
        remote.to_torch_dataset(10, rank=2, world_size=2)
