"""The objects a run is made of, built from its config: the Lightning Trainer, the
research callbacks the config switches on, the checkpoint callbacks and the classifier (with
its autoencoder pretrained first for a family that has a pretrained stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from intriguing.callbacks import (
    AdversarialBackfeed,
    PoolExamplesLogger,
    SpectralMonitor,
    transfer_callbacks,
)
from intriguing.configs import ConfigError, building, to_container
from intriguing.errors import first_line
from intriguing.pipelines import tracking
from intriguing.trainers import (
    CheckpointError,
    ImageClassifier,
    SparseAutoencoder,
    load_encoder_state,
)
from intriguing.trainers.families import family_entry


def build_trainer(
    config: DictConfig,
    *,
    run_dir: Path,
    callbacks: list[Callback],
    logger: Logger | None,
    max_epochs: int | None = None,
) -> pl.Trainer:
    """A Lightning Trainer from the ``trainer`` section."""
    section = to_container(config)["trainer"]
    optional = {
        key: section[key]
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches")
        if section[key] is not None
    }
    if config.data.val_size == 0:  # no validation split: no validation loop
        optional.update(limit_val_batches=0, num_sanity_val_steps=0)
    if section["enable_progress_bar"]:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=section["progress_bar_refresh_rate"])]
    try:
        return _trainer(section, run_dir, callbacks, logger, max_epochs, optional)
    except (ValueError, MisconfigurationException, ImportError) as error:
        # Lightning refuses what the machine or the installed packages cannot serve (an
        # unknown precision, bf16 on a GPU without it, transformer-engine not installed, an
        # accelerator that is not there) when the Trainer is made: before any training.
        message = first_line(error)
        key = "precision" if "precision" in message.lower() else None
        named = f"trainer.{key}={section[key]}" if key else "trainer"
        raise ConfigError(f"{named}: {message}") from None


def _trainer(
    section: dict[str, Any],
    run_dir: Path,
    callbacks: list[Callback],
    logger: Logger | None,
    max_epochs: int | None,
    optional: dict[str, Any],
) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs if max_epochs is not None else section["max_epochs"],
        max_steps=section["max_steps"],
        accelerator=section["accelerator"],
        devices=section["devices"],
        strategy=section["strategy"],
        num_nodes=section["num_nodes"],
        precision=section["precision"],
        deterministic=section["deterministic"],
        log_every_n_steps=section["log_every_n_steps"],
        check_val_every_n_epoch=section["check_val_every_n_epoch"],
        fast_dev_run=section["fast_dev_run"],
        gradient_clip_val=section["gradient_clip_val"],
        enable_progress_bar=section["enable_progress_bar"],
        inference_mode=section["inference_mode"],
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        **optional,
    )


def training_callbacks(config: DictConfig) -> list[Callback]:
    """The research callbacks the config switches on: backfeed, spectral monitor, ..."""
    container = to_container(config)
    callbacks: list[Callback] = []
    if config.backfeed.enabled:
        section = container["backfeed"]
        with building("backfeed"):  # the library's ValueError, naming the backfeed. key
            backfeed = AdversarialBackfeed(
                pool_size=section["pool_size"],
                mix_ratio=section["mix_ratio"],
                mix=section["mix"],
                attack_current_batch=section["attack_current_batch"],
                refresh_fraction=section["refresh_fraction"],
                refresh_every_n_steps=section["refresh_every_n_steps"],
                generator=section["generator"],
                layers=section["layers"],
                alternate=section["alternate"],
                val_attack=section["val_attack"] if section["val_subset"] else None,
                val_subset=section["val_subset"],
                seed=config.seed,
            )
        callbacks.append(backfeed)
        every = section["log_examples_every_n_epochs"]
        if every < 0:
            raise ConfigError(
                f"backfeed.log_examples_every_n_epochs={every}: must be 0 (never) or more"
            )
        if every:
            callbacks.append(PoolExamplesLogger(every_n_epochs=every))
    if config.spectral.enabled:
        with building("spectral"):
            callbacks.append(SpectralMonitor(every_n_epochs=config.spectral.every_n_epochs))
    callbacks += transfer_callbacks(config)
    return callbacks


LAST_CHECKPOINT = "last"
BEST_CHECKPOINT = "best-epoch{epoch:03d}"


def checkpoint_callbacks(
    config: DictConfig, run_dir: Path, has_validation: bool
) -> tuple[ModelCheckpoint, ModelCheckpoint | None]:
    """(final, best): where the run keeps its model at the end of every training epoch, and its
    best models by ``checkpoint.monitor`` (``None`` without a validation split or monitor).

    Two callbacks, because one cannot do both: with a monitor, Lightning 2.6's ``save_last``
    writes ``last.ckpt`` only when a top-k checkpoint is written in the same step, i.e. when
    the monitored metric improves, so ``last.ckpt`` was the best epoch's model (epoch 7 of
    20 in the demo) beside figures measured on the final one. The final callback monitors
    nothing and overwrites one file at the end of every training epoch (after that epoch's
    validation): ``last.ckpt`` with ``checkpoint.save_last`` (what ``resume=last`` finds),
    else ``epochNNN.ckpt``. The best ones are ``best-epochNNN.ckpt``.
    """
    section = config.checkpoint
    directory = run_dir / "checkpoints"
    final = ModelCheckpoint(
        dirpath=directory,
        filename=LAST_CHECKPOINT if section.save_last else "epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=None,
        save_top_k=1,
        save_last=False,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    if not (has_validation and section.monitor and section.save_top_k != 0):
        return final, None
    best = ModelCheckpoint(
        dirpath=directory,
        filename=BEST_CHECKPOINT,
        auto_insert_metric_name=False,
        monitor=section.monitor,
        mode=section.mode,
        save_top_k=section.save_top_k,
        save_last=False,
    )
    return final, best


def pretrain_autoencoder(
    config: DictConfig, datamodule: pl.LightningDataModule, run_dir: Path
) -> Path:
    """The first of AE400-10's two Lightning runs: the sparse autoencoder, saved for reuse
    (the settings of the family's section, an AutoencoderConfig; trainers.families)."""
    section = config.model[family_entry(config.model.family).section]
    module = SparseAutoencoder(
        input_shape=list(datamodule.input_shape),
        hidden=section.hidden,
        sparsity_target=section.sparsity_target,
        sparsity_weight=section.sparsity_weight,
        weight_decay=section.weight_decay,
        lr=section.pretrain_lr,
    )
    pretrain_dir = run_dir / "autoencoder"
    checkpoint = ModelCheckpoint(dirpath=pretrain_dir / "checkpoints", save_last=True, save_top_k=0)
    logger = tracking.make_logger(
        to_container(config)["logger"],
        run_dir=pretrain_dir,
        name=f"{config.name}-autoencoder",
        config=to_container(config),
        job_type="pretrain",
    )
    trainer = build_trainer(
        config,
        run_dir=pretrain_dir,
        callbacks=[checkpoint],
        logger=logger,
        max_epochs=section.pretrain_epochs,
    )
    trainer.fit(module, datamodule=datamodule)
    tracking.finish(logger)
    path = pretrain_dir / "checkpoints" / "last.ckpt"
    if not config.trainer.fast_dev_run and not path.is_file():
        raise RuntimeError(f"autoencoder pretraining wrote no checkpoint at {path}")
    if config.trainer.fast_dev_run:
        path = pretrain_dir / "autoencoder.ckpt"
        trainer.save_checkpoint(path)
    return path


def build_classifier(
    config: DictConfig, datamodule: pl.LightningDataModule, run_dir: Path, resuming: bool
) -> ImageClassifier:
    container = to_container(config)
    module = ImageClassifier(
        model=container["model"],
        optim=container["optim"],
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
    )
    family = family_entry(config.model.family)
    if family.pretrained_stage is not None and not resuming:
        encoder = config.model[family.section].encoder_checkpoint
        path = Path(encoder) if encoder else pretrain_autoencoder(config, datamodule, run_dir)
        try:
            module.network.stages[family.pretrained_stage].load_state_dict(load_encoder_state(path))
        except RuntimeError as error:
            raise CheckpointError(f"checkpoint {path}: encoder does not fit ({error})") from None
    return module
