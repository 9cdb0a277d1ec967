"""A checkpoint's examples: the data settings it was trained with, and the first images of a
split, as the analysis commands (``attack``, ``units``, ``evaluate``) and pipelines read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from intriguing.datamodules import ImageDataModule
from intriguing.datamodules.datamodule import DATA_KEYS
from intriguing.trainers.checkpoints import read_checkpoint


def checkpoint_data(
    checkpoint: str | Path, *, dataset: str | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """The ``data`` section that gives a checkpoint's examples: its own data module settings
    where it saved them (read with ``weights_only=True``), ``dataset`` / ``data_dir`` on top,
    kept on the CPU, the whole test set."""
    saved = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
    data = {key: value for key, value in dict(saved).items() if key in DATA_KEYS}
    data.setdefault("name", "mnist")
    if dataset:
        data["name"] = dataset
    if data_dir:
        data["data_dir"] = data_dir
    data["on_device"] = False
    data.pop("test_subset", None)
    return data


def split_examples(
    module: ImageDataModule, split: str, limit: int | None = None
) -> tuple[Tensor, Tensor]:
    """The images ``(N, C, H, W)`` in ``[0, 1]`` and labels ``(N,)`` of ``split`` (``train``,
    ``val``, ``test``, ``p1``, ``p2``), the first ``limit`` of them (``None``: all); the data
    are prepared (found or downloaded) first."""
    module.prepare_data()
    module.setup("test")
    images, labels = module.tensors(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels
