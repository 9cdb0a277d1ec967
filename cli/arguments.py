"""Argument helpers shared by the commands that work on trained checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datamodules.datamodule import DATA_KEYS
from trainers.checkpoints import read_checkpoint


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


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
