"""Measurements that leave the training run as it was: the global random state untouched.

A callback that only measures (the transfer table, the adversarial validation error) must not
change the run it watches. Iterating a data loader draws its base seed from the global torch
generator, and random attacks (PGD's random start) draw from it too: without care, adding
such a callback would change the shuffling of every later epoch and so the trained weights.
:func:`untouched_rng` runs a measurement on a fork of the global random state (CPU, and the
CUDA device the model is on), as Lightning's own sanity check does with ``isolate_rng``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def untouched_rng(device: torch.device) -> Iterator[None]:
    """Run the block on a fork of the global random state, restored afterwards: the CPU
    generator and, for a CUDA ``device``, that device's generator
    (:func:`torch.random.fork_rng`)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield
