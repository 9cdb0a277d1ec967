"""Data: every registered data set (MNIST, Fashion-MNIST, CIFAR-10, KMNIST, ...) as
LightningDataModules served from memory.

``build_datamodule(config["data"])`` gives an :class:`ImageDataModule`; each data set is
declared once in :mod:`datamodules.datasets` (where a user registers their own), where its
data come from and how they are verified is described in :mod:`datamodules.sources`, the
paper's P1/P2 halves and the validation hold-out in :mod:`datamodules.splits`.

The names below are imported when first used (PEP 562), so that importing
:mod:`datamodules.datasets` (the config schema) imports no torch or Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intriguing.registry import lazy_exports

if TYPE_CHECKING:
    from intriguing.datamodules.datamodule import (
        TENSOR_SPLITS,
        ImageDataModule,
        build_datamodule,
    )
    from intriguing.datamodules.datasets import (
        SPECS,
        DatasetSpec,
        dataset_spec,
        register_dataset,
    )
    from intriguing.datamodules.formats import DataSourceError, NumpyOnlyUnpickler
    from intriguing.datamodules.loaders import SequentialBatches, ShuffledBatches
    from intriguing.datamodules.sources import fetch
    from intriguing.datamodules.splits import halves

#: Where each public name is defined.
_MODULES = {
    "datamodule": ("TENSOR_SPLITS", "ImageDataModule", "build_datamodule"),
    "datasets": ("SPECS", "DatasetSpec", "dataset_spec", "register_dataset"),
    "formats": ("DataSourceError", "NumpyOnlyUnpickler"),
    "loaders": ("SequentialBatches", "ShuffledBatches"),
    "sources": ("fetch",),
    "splits": ("halves",),
}

__all__ = [
    "SPECS",
    "TENSOR_SPLITS",
    "DataSourceError",
    "DatasetSpec",
    "ImageDataModule",
    "NumpyOnlyUnpickler",
    "SequentialBatches",
    "ShuffledBatches",
    "build_datamodule",
    "dataset_spec",
    "fetch",
    "halves",
    "register_dataset",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULES, __all__)
