"""Argument helpers shared by the commands that work on trained checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from intriguing.configs import ConfigError
from intriguing.datamodules.datamodule import DATA_KEYS
from intriguing.pipelines.tracking import AnalysisTracking
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


def torch_device(word: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when there is a GPU, else the CPU) or a torch device
    name; one this machine lacks is refused by name."""
    if word == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(word)
    except RuntimeError as error:
        raise ConfigError(f"--device {word!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {word}: CUDA is not available here")
    return device


def wandb_tracking(args: Any) -> AnalysisTracking:
    """Where a command's ``--wandb``, ``--wandb-project`` and ``--wandb-group`` options send
    its results (options a command lacks count as not given)."""
    return AnalysisTracking(
        enabled=bool(getattr(args, "wandb", False)),
        project=getattr(args, "wandb_project", None),
        group=getattr(args, "wandb_group", None),
    )
