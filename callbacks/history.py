"""MetricHistory: a run's metrics after every validation epoch, one JSON line each.

A W&B sweep's ``early_terminate`` (hyperband) decides from the history of the sweep's
metric while a run trains. W&B's server reads that history from what the run logs; a sweep
run here, offline or with any logger, reads it from this file in the run folder instead
(:mod:`intriguing.pipelines.sweep`). Each line is ``{"epoch": E, "step": S, KEY: VALUE, ...}``
with every one-number metric Lightning collected by the end of that validation epoch
(``val/*`` of this epoch; ``train/*`` epoch figures of the previous epoch, as Lightning runs
validation before the training epoch's end). A run without a validation split writes none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

HISTORY_FILE = "history.jsonl"


class MetricHistory(Callback):
    """Append the collected metrics to ``path`` after every validation epoch (rank zero).

    Args:
        path: the JSON-lines file; appended to, so that a resumed run continues its history.

    Raises:
        TypeError: ``path`` is not a ``str`` or ``Path``.
    """

    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, str | Path):
            raise TypeError(f"path: expected a str or Path, got {type(path).__name__}")
        self.path = Path(path)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(path=str(self.path))

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if not torch.is_tensor(value) or value.numel() == 1:
                row[key] = float(value)
        with self.path.open("a") as stream:
            stream.write(json.dumps(row, sort_keys=True) + "\n")
            stream.flush()


def read_history(path: str | Path) -> list[dict[str, float]]:
    """The rows of a history file (empty when it does not exist yet); a last line still being
    written is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
