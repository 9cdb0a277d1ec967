"""Argument helpers shared by the commands: ``--device`` and the ``--wandb`` options."""

from __future__ import annotations

from typing import Any

import torch

from intriguing.configs import ConfigError
from intriguing.pipelines.tracking import AnalysisTracking


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
