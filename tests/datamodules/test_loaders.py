"""In-memory loaders: every example once per epoch, reshuffled, DDP shards as DistributedSampler."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from intriguing.datamodules.loaders import SequentialBatches, ShuffledBatches


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with i, its label is i: a batch tells which examples it holds."""
    ids = torch.arange(n)
    return ids.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(), ids


def _served(loader) -> list[int]:
    seen = []
    for images, labels in loader:
        assert torch.equal(images[:, 0, 0, 0].long(), labels)  # images and labels stay paired
        seen += labels.tolist()
    return seen


def test_each_training_example_once_per_epoch_and_reshuffled() -> None:
    images, labels = _data(1000)
    loader = ShuffledBatches(images, labels, 64, seed=3)
    epochs = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen = _served(loader)
        assert sorted(seen) == list(range(1000))
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2]
    assert len(loader) == 16 and [len(b[1]) for b in loader][-1] == 1000 - 15 * 64
    loader.set_epoch(1)
    assert _served(loader) == epochs[1]  # an epoch's order is reproducible (resuming)


def test_training_batches_come_from_the_selected_indices_only() -> None:
    images, labels = _data(100)
    indices = torch.arange(10, 100, 3)
    loader = ShuffledBatches(images, labels, 7, indices=indices)
    assert sorted(_served(loader)) == indices.tolist()


def test_drop_last_serves_full_batches_only() -> None:
    images, labels = _data(100)
    loader = ShuffledBatches(images, labels, 32, drop_last=True)
    assert len(loader) == 3 and all(len(y) == 32 for _, y in loader)


@pytest.mark.parametrize(("n", "world_size"), [(1000, 2), (1000, 3), (7, 4), (10, 2)])
def test_ddp_shards_match_distributed_sampler(n: int, world_size: int) -> None:
    """Each rank's order is exactly DistributedSampler's (shuffle, seed + epoch, padding)."""
    images, labels = _data(n)
    for epoch in (0, 5):
        shards = []
        for rank in range(world_size):
            loader = ShuffledBatches(images, labels, 16, seed=7, rank=rank, world_size=world_size)
            loader.set_epoch(epoch)
            sampler = DistributedSampler(
                range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=7
            )
            sampler.set_epoch(epoch)
            served = _served(loader)
            assert served == list(sampler)
            assert len(loader) == -(-len(served) // 16)
            shards.append(served)
        assert len({len(s) for s in shards}) == 1  # equal length: matched collective calls
        counts = Counter(i for shard in shards for i in shard)
        assert set(counts) == set(range(n))  # every example served
        padding = sum(counts.values()) - n
        assert padding < world_size and sum(c - 1 for c in counts.values()) == padding
        if n % world_size == 0:
            assert padding == 0  # disjoint shards


def test_ddp_ranks_share_the_permutation_and_it_changes_with_the_epoch() -> None:
    images, labels = _data(64)
    loaders = [ShuffledBatches(images, labels, 8, rank=r, world_size=2) for r in range(2)]
    first = [_served(loader) for loader in loaders]
    for loader in loaders:
        loader.set_epoch(1)
    second = [_served(loader) for loader in loaders]
    assert not set(first[0]) & set(first[1]) and not set(second[0]) & set(second[1])
    assert first != second


def test_loader_exposes_set_epoch_where_lightning_looks() -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    images, labels = _data(10)
    loader = ShuffledBatches(images, labels, 4)
    _set_sampler_epoch(loader, 4)
    assert loader.epoch == 4


@pytest.mark.parametrize(("n", "world_size", "batch"), [(10_000, 1, 1000), (10_001, 2, 1000),
                                                        (10_001, 3, 1000), (5, 4, 2)])  # fmt: skip
def test_evaluation_batches_cover_each_example_once(n: int, world_size: int, batch: int) -> None:
    images, labels = _data(n)
    loaders = [
        SequentialBatches(images, labels, batch, rank=rank, world_size=world_size)
        for rank in range(world_size)
    ]
    served = [_served(loader) for loader in loaders]
    assert sorted(i for shard in served for i in shard) == list(range(n))  # no repeats
    assert len({len(list(loader)) for loader in loaders}) == 1  # same number of batches
    assert all(len(list(loader)) == len(loader) for loader in loaders)
    assert all(len(y) <= batch for loader in loaders for _, y in loader)
    if world_size == 1:
        assert served[0] == list(range(n)) and len(loaders[0]) == -(-n // batch)


def test_evaluation_batches_of_selected_indices() -> None:
    images, labels = _data(50)
    indices = torch.tensor([3, 9, 27, 40, 41])
    loader = SequentialBatches(images, labels, 2, indices=indices)
    assert _served(loader) == indices.tolist() and len(loader) == 3


def test_bad_arguments_are_refused() -> None:
    images, labels = _data(10)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        ShuffledBatches(images, labels[:9], 4)
    with pytest.raises(ValueError, match="batch_size 0"):
        SequentialBatches(images, labels, 0)
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        ShuffledBatches(images, labels, 4, rank=2, world_size=2)
