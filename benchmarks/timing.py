"""Timing one training epoch through the framework, shared by the benchmarks."""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as pl

from intriguing.configs import compose, to_container
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.build import build_classifier, build_trainer, training_callbacks


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def framework_epoch(overrides: list[str], tmp: str) -> float:
    """Seconds of one training epoch of ``overrides`` (default experiment=fc100-100-10),
    from Lightning's on_train_epoch_start to on_train_epoch_end."""
    config = compose(
        [
            "experiment=fc100-100-10",
            "trainer.max_epochs=1",
            "checkpoint.enabled=false",
            "trainer.limit_val_batches=0",
            f"output_dir={tmp}",
            *overrides,
        ]
    )
    datamodule = build_datamodule(to_container(config)["data"])
    module = build_classifier(config, datamodule, Path(tmp), resuming=False)
    timer = EpochTimer()
    callbacks = [*training_callbacks(config), timer]
    trainer = build_trainer(config, run_dir=Path(tmp), callbacks=callbacks, logger=None)
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds[0]
