"""The LightningDataModule of every registered data set (:mod:`datamodules.datasets`: MNIST,
Fashion-MNIST, CIFAR-10, KMNIST, ...), served from memory.

``prepare_data`` (one process per node, Lightning's rule) fetches the data set into the
cache of :mod:`datamodules.sources`; ``setup`` (every process) reads the cache and keeps the
images as float32 tensors in [0, 1], shape (N, C, H, W), labels int64, on the training device
when ``on_device`` is set. The loaders index those tensors batch by batch
(:mod:`datamodules.loaders`); the splits (full / P1 / P2, validation) are those of
:mod:`datamodules.splits`.

Training batches are augmented (``augment``: per-example random crop and horizontal flip, see
:mod:`datamodules.augment`) on the device, in :meth:`ImageDataModule.on_after_batch_transfer`.
Lightning calls that hook of the data module *instead of* the LightningModule's (its
``_call_batch_hook``); it is a plain override that returns the new batch, so a callback that
wraps the instance's hook (the adversarial backfeed does) sees the augmented batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from intriguing.datamodules.augment import RandomCropFlip, batch_seed
from intriguing.datamodules.datasets import dataset_names, dataset_spec
from intriguing.datamodules.loaders import SequentialBatches, ShuffledBatches
from intriguing.datamodules.sources import RawData, cache_path, fetch
from intriguing.datamodules.splits import SPLITS, halves, hold_out, part_indices

TENSOR_SPLITS: tuple[str, ...] = ("train", "val", "test", "p1", "p2", "full_train")


#: How the data module's errors name it (before the parameter and its value).
_OWNER = "ImageDataModule"


class ImageDataModule(pl.LightningDataModule):
    """An image classification data set held in memory (any registered in
    :mod:`datamodules.datasets`).

    ``input_shape``, ``num_classes``, ``name`` and the declared normalisation ``mean`` and
    ``std`` are known at construction. ``split``
    chooses the training part: the whole training set or one of the paper's halves P1 / P2
    (Szegedy et al. 2013, Table 3); ``val_size`` images of that part are held out for
    validation, and ``train_subset`` keeps the first images of what remains.

    ``augment`` (``random_crop_padding``, ``horizontal_flip``; default: none) augments the
    training batches only, each example with its own random crop and flip, drawn on the device
    from a stream fixed by the run's seed, the process's rank and the batch's number in the
    fit (so the same on a rerun and on resume); validation, test batches and
    :meth:`tensors` are never augmented.

    Raises:
        ValueError: at construction, for a data set not registered, a split not known or a
            size out of range, naming the parameter and its value
            (``"ImageDataModule: test_subset=0: must be null or in [1, 10000]"``); for an
            ``augment`` setting, naming its ``data.augment.`` key.
        TypeError: for an ``augment`` value of the wrong type.
    """

    def __init__(
        self,
        *,
        name: str = "mnist",
        data_dir: str | Path = "data",
        split: str = "full",
        val_size: int = 5000,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        train_subset: int | None = None,
        test_subset: int | None = None,
        split_seed: int = 0,
        on_device: bool = True,
        download_timeout: float = 30.0,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        name, split = str(name), str(split)
        try:
            self.spec = dataset_spec(name)
        except ValueError:
            names = ", ".join(dataset_names())
            raise ValueError(f"{_OWNER}: name={name!r}: expected one of {names}") from None
        if split not in SPLITS:
            raise ValueError(f"{_OWNER}: split={split!r}: expected one of {', '.join(SPLITS)}")
        self.name: str = name
        self.input_shape: tuple[int, ...] = self.spec.input_shape
        self.num_classes: int = self.spec.num_classes
        # The data set's per-channel statistics (None: not declared); inputs stay in [0, 1].
        self.mean: tuple[float, ...] | None = self.spec.mean
        self.std: tuple[float, ...] | None = self.spec.std
        self.data_dir = Path(data_dir).expanduser()
        self.split, self.split_seed = split, int(split_seed)
        self.val_size, self.batch_size, self.eval_batch_size = val_size, batch_size, eval_batch_size
        self.train_subset, self.test_subset = train_subset, test_subset
        self.on_device, self.download_timeout = bool(on_device), float(download_timeout)
        self.augmentation = RandomCropFlip.from_config(augment)
        self._check_sizes()
        self.save_hyperparameters(
            {
                "name": name,
                "data_dir": str(data_dir),
                "split": split,
                "val_size": val_size,
                "batch_size": batch_size,
                "eval_batch_size": eval_batch_size,
                "train_subset": train_subset,
                "test_subset": test_subset,
                "split_seed": self.split_seed,
                "on_device": self.on_device,
                "download_timeout": self.download_timeout,
                "augment": self.augmentation.as_config(),
            },
            logger=False,  # the run's whole config is logged already, under "data"
        )
        self._raw: RawData | None = None
        self._tensors: dict[str, Tensor] | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    def _check_sizes(self) -> None:
        spec = self.spec
        part = spec.train_size if self.split == "full" else spec.train_size // 2
        checks: list[tuple[str, Any, bool, str]] = [
            ("val_size", self.val_size, 0 <= self.val_size < part,
             f"must be in [0, {part}), the {self.split} part of {spec.title}'s training set"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be at least 1"),
            ("eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1,
             "must be at least 1"),
            ("train_subset", self.train_subset,
             self.train_subset is None or 1 <= self.train_subset <= part - self.val_size,
             f"must be null or in [1, {part - self.val_size}]"),
            ("test_subset", self.test_subset,
             self.test_subset is None or 1 <= self.test_subset <= spec.test_size,
             f"must be null or in [1, {spec.test_size}]"),
            ("download_timeout", self.download_timeout, self.download_timeout >= 0,
             "must be >= 0 (0: no download)"),
        ]  # fmt: skip
        for key, value, valid, rule in checks:
            if not valid:
                raise ValueError(f"{_OWNER}: {key}={value}: {rule}")

    # --- Lightning hooks ---------------------------------------------------------------

    def prepare_data(self) -> None:
        """Fetch the data set into the cache (called once per node by Lightning)."""
        if self._tensors is not None or self._raw is not None:
            return
        if not cache_path(self.spec, self.data_dir).is_file():
            rank_zero_info(f"{self.spec.title}: not cached in {self.data_dir}, fetching it")
        self._raw, source = fetch(self.spec, self.data_dir, download_timeout=self.download_timeout)
        rank_zero_info(f"{self.spec.title}: from {source}")

    def setup(self, stage: str | None = None) -> None:
        """Load the cache into memory (every process); idempotent, and follows the device."""
        if self._tensors is None:
            raw = self._raw
            if raw is None:
                raw, _ = fetch(self.spec, self.data_dir, download_timeout=self.download_timeout)
            self._raw = None
            self._tensors = self._build(raw)
        device = self._device()
        if self._tensors["images"].device != device:
            self._tensors = {key: value.to(device) for key, value in self._tensors.items()}

    def train_dataloader(self) -> ShuffledBatches:
        tensors, (rank, world_size) = self._ready(), self._shard()
        return ShuffledBatches(
            tensors["images"],
            tensors["labels"],
            self.batch_size,
            indices=tensors["train"],
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),
            rank=rank,
            world_size=world_size,
        )

    def val_dataloader(self) -> SequentialBatches | list[Any]:
        """Batches of the held-out images; an empty list (no validation) when val_size is 0."""
        if self.val_size == 0:
            return []
        tensors, (rank, world_size) = self._ready(), self._shard()
        return SequentialBatches(
            tensors["images"],
            tensors["labels"],
            self.eval_batch_size,
            indices=tensors["val"],
            rank=rank,
            world_size=world_size,
        )

    def test_dataloader(self) -> SequentialBatches:
        tensors, (rank, world_size) = self._ready(), self._shard()
        return SequentialBatches(
            tensors["test_images"],
            tensors["test_labels"],
            self.eval_batch_size,
            rank=rank,
            world_size=world_size,
        )

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches ``(images, labels, ...)``: the images augmented on their device.

        Other batches (validation, test, predict, sanity check) and training without
        ``augment`` pass unchanged. Each training batch's crops and flips come from a
        generator on the images' device seeded with :func:`~datamodules.augment.batch_seed`
        of the run's seed (``PL_GLOBAL_SEED``, as the loaders' shuffling), this process's
        rank and the number of training batches fetched before it in the fit (restored on
        resume).
        """
        trainer = self.trainer
        if trainer is None or not trainer.training or not self.augmentation.enabled:
            return batch
        images = batch[0]
        fetched = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        seed = batch_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)), self._shard()[0], fetched)
        generator = self._generators.get(images.device)
        if generator is None:
            generator = self._generators[images.device] = torch.Generator(images.device)
        generator.manual_seed(seed)
        return type(batch)((self.augmentation(images, generator), *batch[1:]))

    # --- tensors -----------------------------------------------------------------------

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """Images (N, C, H, W) float32 in [0, 1] and labels (N,) int64 of ``split``.

        ``train``: the images trained on (after the P1/P2 choice, the validation hold-out
        and ``train_subset``); ``val``; ``test`` (after ``test_subset``); ``p1``, ``p2``: the
        paper's halves; ``full_train``: the whole training set. Sets up on first use.
        """
        if split not in TENSOR_SPLITS:
            raise ValueError(f"split {split!r}: expected one of {', '.join(TENSOR_SPLITS)}")
        tensors = self._ready()
        if split == "full_train":
            return tensors["images"], tensors["labels"]
        if split == "test":
            return tensors["test_images"], tensors["test_labels"]
        index = tensors[split].to(tensors["images"].device)
        return tensors["images"][index], tensors["labels"][index]

    def indices(self, split: str) -> Tensor:
        """Positions in the full training set of ``train``, ``val``, ``p1`` or ``p2``."""
        if split not in ("train", "val", "p1", "p2"):
            raise ValueError(f"split {split!r}: expected train, val, p1 or p2")
        return self._ready()[split]

    def _build(self, raw: RawData) -> dict[str, Tensor]:
        spec, seed = self.spec, self.split_seed
        size = spec.train_size
        train, val = hold_out(part_indices(self.split, size, seed), self.val_size, seed, size)
        if self.train_subset is not None:
            train = train[: self.train_subset]
        p1, p2 = halves(size, seed)
        test = slice(None, self.test_subset)
        test_images, test_labels = raw.test_images[test], raw.test_labels[test]
        return {
            "images": _as_float(raw.train_images, spec.input_shape),
            "labels": raw.train_labels.long(),
            "test_images": _as_float(test_images, spec.input_shape),
            "test_labels": test_labels.long(),
            # Index sets stay on the CPU; the loaders move what they serve.
            "train": train,
            "val": val,
            "p1": p1,
            "p2": p2,
        }

    def _ready(self) -> dict[str, Tensor]:
        if self._tensors is None:
            self.setup()
        assert self._tensors is not None
        return self._tensors

    def _device(self) -> torch.device:
        trainer = self.trainer
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of data parallelism under the attached trainer."""
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not kwargs:
            return 0, 1
        return int(kwargs["rank"]), int(kwargs["num_replicas"])


def _as_float(images: Tensor, input_shape: tuple[int, ...]) -> Tensor:
    return images.reshape(len(images), *input_shape).to(torch.float32).div_(255)


DATA_KEYS: tuple[str, ...] = (
    "name",
    "data_dir",
    "split",
    "val_size",
    "batch_size",
    "eval_batch_size",
    "train_subset",
    "test_subset",
    "split_seed",
    "on_device",
    "download_timeout",
    "augment",
)


def build_datamodule(data: Mapping[str, Any]) -> ImageDataModule:
    """The data module the ``data`` section of a run's config describes (see DataConfig).

    Raises:
        ValueError: for a key :class:`ImageDataModule` does not take, or a value it refuses,
            naming the parameter (the config layer names the ``data.`` key:
            :func:`intriguing.configs.config_error`).
    """
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f"{_OWNER}: {unknown[0]}: unknown key (known: {', '.join(DATA_KEYS)})")
    return ImageDataModule(**dict(data))
