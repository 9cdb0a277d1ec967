"""Batches straight from in-memory tensors: what a hand-written training loop does.

A torch ``DataLoader`` pays per example (sampler, ``__getitem__``, collate); these loaders pay
one tensor index per batch: one permutation per epoch, then ``images[order[i:i + b]]``.
They are plain iterables with ``__len__``, which Lightning accepts as data loaders.

Under DDP they shard themselves the way ``DistributedSampler`` does (Lightning only injects
its sampler into real ``DataLoader`` objects): every rank draws the same permutation from
``seed + epoch``, pads it by repeating its head to a multiple of the world size and takes
every ``world_size``-th index from its rank on, so ranks see disjoint shards of equal length.
Lightning calls ``set_epoch`` on the object it finds as ``loader.sampler``: here the loader.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
from torch import Tensor


def _check(images: Tensor, labels: Tensor, indices: Tensor | None, batch_size: int) -> None:
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size}: must be at least 1")
    if indices is not None and indices.dtype != torch.int64:
        raise ValueError(f"indices must be int64, not {indices.dtype}")


class ShuffledBatches:
    """Training batches: a new permutation every epoch, a disjoint shard on each rank.

    ``indices`` selects the examples served (all of ``images`` when None); each epoch yields
    each of them exactly once across ranks (plus DistributedSampler's padding when their
    number is not a multiple of ``world_size``).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        indices: Tensor | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        _check(images, labels, indices, batch_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.images, self.labels = images, labels
        self.indices = None if indices is None else indices.cpu()
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @property
    def sampler(self) -> ShuffledBatches:
        """Where Lightning looks for ``set_epoch``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    @property
    def shard_size(self) -> int:
        """Examples this rank sees per epoch."""
        return math.ceil(self.num_examples / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return math.ceil(self.shard_size / self.batch_size)

    def order(self) -> Tensor:
        """This rank's indices into ``images`` for the current epoch, in serving order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_examples, generator=generator)
        if self.world_size > 1:
            padding = self.shard_size * self.world_size - len(order)
            if padding:
                repeats = math.ceil(padding / len(order))
                order = torch.cat([order, order.repeat(repeats)[:padding]])
            order = order[self.rank :: self.world_size]
        if self.indices is not None:
            order = self.indices[order]
        return order.to(self.images.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order, size = self.order(), self.batch_size
        images, labels = self.images, self.labels
        for start in range(0, len(self) * size, size):
            batch = order[start : start + size]
            yield images[batch], labels[batch]


class SequentialBatches:
    """Evaluation batches in order; under DDP each rank a contiguous block, none repeated.

    Every rank yields the same number of batches (batches may then hold up to
    ``batch_size`` examples), so per-batch collective calls stay matched; unlike
    DistributedSampler, no example is counted twice.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        indices: Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check(images, labels, indices, batch_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.images, self.labels = images, labels
        self.indices = None if indices is None else indices.to(images.device)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    @property
    def num_examples(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.num_examples / self.world_size) / self.batch_size)

    def bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of each batch of this rank, positions into the served examples."""
        count = self.num_examples
        low = self.rank * count // self.world_size
        high = (self.rank + 1) * count // self.world_size
        if self.world_size == 1:
            return [(a, min(a + self.batch_size, high)) for a in range(low, high, self.batch_size)]
        batches, span = len(self), high - low
        edges = [low + k * span // batches for k in range(batches + 1)]
        return list(itertools.pairwise(edges))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start, stop in self.bounds():
            if self.indices is None:
                yield self.images[start:stop], self.labels[start:stop]
            else:
                batch = self.indices[start:stop]
                yield self.images[batch], self.labels[batch]
