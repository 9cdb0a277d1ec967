"""The paper's halves P1 and P2 of a training set, and the validation hold-out.

Both are chosen by hashing, so that they are the same on every machine and with every
version of torch and numpy, whatever the run's training seed:

- P1 / P2 (Szegedy et al. 2013, Table 3, "the MNIST training set split into two disjoint
  halves of 30,000 images each"): training image ``i`` gets the key
  ``blake2b(f"halves:{split_seed}:{i}")``; P1 is the ``n // 2`` images with the smallest keys,
  P2 the others. Random halves keep the classes balanced in both.
- Validation: among the images of the training part in use (all, P1 or P2), the
  ``val_size`` ones with the smallest keys ``blake2b(f"val:{split_seed}:{i}")``. A larger
  ``val_size`` extends a smaller one; the validation images of a P1 run come from P1 only,
  so P2 stays unseen by it.

Indices are returned sorted, in the data set's own order.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

SPLITS: tuple[str, ...] = ("full", "p1", "p2")


@lru_cache(maxsize=8)
def _keys(purpose: str, seed: int, size: int) -> np.ndarray:
    digests = b"".join(
        hashlib.blake2b(f"{purpose}:{seed}:{index}".encode(), digest_size=8).digest()
        for index in range(size)
    )
    keys = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    keys.setflags(write=False)
    return keys


def _smallest(indices: np.ndarray, keys: np.ndarray, count: int) -> np.ndarray:
    order = np.argsort(keys[indices], kind="stable")
    return np.sort(indices[order[:count]])


def halves(size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices of P1 and P2: two disjoint halves of ``range(size)`` that cover it."""
    everything = np.arange(size)
    p1 = _smallest(everything, _keys("halves", seed, size), size // 2)
    p2 = np.setdiff1d(everything, p1, assume_unique=True)
    return torch.from_numpy(p1), torch.from_numpy(p2)


def part_indices(split: str, size: int, seed: int) -> Tensor:
    """Indices of the training part ``split`` ("full", "p1" or "p2") of ``size`` images."""
    if split == "full":
        return torch.arange(size)
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    p1, p2 = halves(size, seed)
    return p1 if split == "p1" else p2


def hold_out(part: Tensor, val_size: int, seed: int, size: int) -> tuple[Tensor, Tensor]:
    """Split ``part`` (indices into a training set of ``size``) into (train, validation)."""
    if not 0 <= val_size < len(part):
        raise ValueError(f"val_size {val_size}: must be in [0, {len(part)})")
    indices = part.numpy()
    val = _smallest(indices, _keys("val", seed, size), val_size)
    train = np.setdiff1d(indices, val, assume_unique=True)
    return torch.from_numpy(train), torch.from_numpy(val)
