"""CIFAR-10 in its python-batch layout, random images of any size, made in a test.

Real CIFAR-10 is not available offline; these files go through the project's own reader
(:class:`~datamodules.sources.CifarFolder`, with the files' MD5s) and cache, so that a data
module or a training run reads them as it would read the real batches.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from intriguing.datamodules import sources
from intriguing.datamodules.sources import CIFAR10, CIFAR10_BATCHES, CifarFolder, DatasetSpec, fetch


def write_cifar(data_dir: Path, *, train: int, test: int, seed: int = 0) -> DatasetSpec:
    """Write ``data_batch_1 .. 5`` and ``test_batch`` of random images to
    ``data_dir/cifar-10-batches-py``, read them with CifarFolder into the cache, and return
    the spec of a CIFAR-10 of ``train`` training and ``test`` test images."""
    rng = np.random.default_rng(seed)
    spec = DatasetSpec(**{**CIFAR10.__dict__, "train_size": train, "test_size": test})
    folder = data_dir / CIFAR10.torchvision_folder
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [len(part) for part in np.array_split(np.arange(train), len(CIFAR10_BATCHES) - 1)]
    md5s = {}
    for name, size in zip(CIFAR10_BATCHES, [*sizes, test], strict=True):
        content = {
            "data": rng.integers(0, 256, (size, 3 * 32 * 32), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, size)],
        }
        data = pickle.dumps(content, protocol=4)
        (folder / name).write_bytes(data)
        md5s[name] = hashlib.md5(data).hexdigest()
    fetch(spec, data_dir, [CifarFolder(spec, folder, "test files", md5s=md5s)])
    return spec


def use_cifar(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **sizes: int) -> DatasetSpec:
    """:func:`write_cifar`, and make ``data.name=cifar10`` mean that small CIFAR-10 for the
    rest of the test (the data module looks sizes up in ``SPECS``)."""
    spec = write_cifar(data_dir, **sizes)
    monkeypatch.setitem(sources.SPECS, "cifar10", spec)  # type: ignore[index]
    return spec
