"""Data: MNIST, Fashion-MNIST and CIFAR-10 as LightningDataModules served from memory.

``build_datamodule(config["data"])`` gives an :class:`ImageDataModule`; where the data come
from and how they are verified is described in :mod:`datamodules.sources`, the paper's P1/P2
halves and the validation hold-out in :mod:`datamodules.splits`.
"""

from intriguing.datamodules.datamodule import TENSOR_SPLITS, ImageDataModule, build_datamodule
from intriguing.datamodules.formats import DataSourceError, NumpyOnlyUnpickler
from intriguing.datamodules.loaders import SequentialBatches, ShuffledBatches
from intriguing.datamodules.sources import SPECS, DatasetSpec, fetch
from intriguing.datamodules.splits import halves

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
    "fetch",
    "halves",
]
