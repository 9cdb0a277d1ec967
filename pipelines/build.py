"""The objects a run is made of, built from its config: the Lightning Trainer, the
research callbacks the config switches on, the checkpoint callbacks and the classifier (with
its autoencoder pretrained first for a family that has a pretrained stage)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from intriguing.callbacks.registry import callback_entry, enabled_callbacks
from intriguing.configs import ConfigError, building, to_container
from intriguing.errors import first_line
from intriguing.pipelines import tracking
from intriguing.registry import Binding
from intriguing.trainers import (
    CheckpointError,
    ImageClassifier,
    SparseAutoencoder,
    load_encoder_state,
)
from intriguing.trainers.families import AutoencoderConfig, family_entry

#: How each config section becomes its object (intriguing.registry.Binding): every key is the
#: keyword parameter of the same name, save those excluded here with the reason; a key added
#: to a section must be one or the other (tests/pipelines/test_build.py). The callbacks'
#: sections are bound where each callback is registered (callbacks.registry).
TRAINER = Binding(
    "trainer",
    pl.Trainer,
    exclude={"progress_bar_refresh_rate": "the refresh_rate of the TQDMProgressBar callback"},
)
BACKFEED = callback_entry("backfeed").binding
SPECTRAL = callback_entry("spectral").binding
#: The best-models callback (the final model's callback takes only ``save_last``).
CHECKPOINT = Binding(
    "checkpoint",
    ModelCheckpoint,
    exclude={
        "enabled": "switches checkpoints on (pipelines.train)",
        "save_last": "names the final model's file last.ckpt (checkpoint_callbacks)",
    },
)
#: The autoencoder's own settings (AutoencoderConfig's keys of a family with a pretrained
#: stage; a family's config derived from it adds keys for its network, not for this).
AUTOENCODER = Binding(
    "model.autoencoder",
    SparseAutoencoder,
    exclude={
        "pretrain_epochs": "the max_epochs of the pretraining Trainer",
        "encoder_checkpoint": "a pretrained autoencoder to load instead (build_classifier)",
        "finetune_encoder": "whether the classifier trains the encoder stage",
    },
    rename={"pretrain_lr": "lr"},
)


def build_trainer(
    config: DictConfig,
    *,
    run_dir: Path,
    callbacks: list[Callback],
    logger: Logger | None,
    max_epochs: int | None = None,
) -> pl.Trainer:
    """A Lightning Trainer from the ``trainer`` section (:data:`TRAINER`), ``max_epochs``
    instead of the section's when given."""
    section = to_container(config)["trainer"]
    if max_epochs is not None:
        section["max_epochs"] = max_epochs
    extra: dict[str, Any] = {}
    if config.data.val_size == 0:  # no validation split: no validation loop
        section["limit_val_batches"] = 0
        extra["num_sanity_val_steps"] = 0
    if section["enable_progress_bar"]:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=section["progress_bar_refresh_rate"])]
    try:
        return TRAINER(
            section,
            enable_model_summary=False,
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
            default_root_dir=str(run_dir),
            callbacks=callbacks,
            logger=logger if logger is not None else False,
            **extra,
        )
    except (ValueError, MisconfigurationException, ImportError) as error:
        # Lightning refuses what the machine or the installed packages cannot serve (an
        # unknown precision, bf16 on a GPU without it, transformer-engine not installed, an
        # accelerator that is not there) when the Trainer is made: before any training.
        message = first_line(error)
        key = "precision" if "precision" in message.lower() else None
        named = f"trainer.{key}={section[key]}" if key else "trainer"
        raise ConfigError(f"{named}: {message}") from None


def training_callbacks(config: DictConfig) -> list[Callback]:
    """The callbacks the config switches on, in the order of :func:`section_callbacks`."""
    return [callback for _, made in section_callbacks(config) for callback in made]


def section_callbacks(config: DictConfig) -> list[tuple[str, list[Callback]]]:
    """The callbacks the config switches on (:func:`callbacks.registry.enabled_callbacks`:
    backfeed, spectral monitor, transfer, then those under ``callbacks``), each section's
    made by its registered entry, with the section's dotted key (``"backfeed"``,
    ``"callbacks.early_stopping"``).

    Raises:
        ConfigError: naming the key of a value a callback refuses
            (:func:`intriguing.configs.config_error`; Lightning's own callbacks raise
            ``MisconfigurationException``, named the same way).
    """
    container = to_container(config)
    try:
        chosen = enabled_callbacks(container)
    except ValueError as error:
        raise ConfigError(first_line(error)) from None
    made: list[tuple[str, list[Callback]]] = []
    for entry, section in chosen:
        run = {key: container[key] for key in entry.run_arguments}
        with building(entry.section):  # the library's ValueError, naming the section's key
            try:
                made.append((entry.section, entry.create(section, **run)))
            except MisconfigurationException as error:  # Lightning's callbacks refuse so
                raise ValueError(first_line(error)) from error
    return made


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
    section = to_container(config)["checkpoint"]
    directory = run_dir / "checkpoints"
    final = ModelCheckpoint(
        dirpath=directory,
        filename=LAST_CHECKPOINT if section["save_last"] else "epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=None,
        save_top_k=1,
        save_last=False,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    if not (has_validation and section["monitor"] and section["save_top_k"] != 0):
        return final, None
    best = CHECKPOINT(
        section,
        dirpath=directory,
        filename=BEST_CHECKPOINT,
        auto_insert_metric_name=False,
        save_last=False,
    )
    return final, best


def pretrain_autoencoder(
    config: DictConfig, datamodule: pl.LightningDataModule, run_dir: Path
) -> Path:
    """The first of AE400-10's two Lightning runs: the sparse autoencoder, saved for reuse
    (the settings of the family's section, an AutoencoderConfig; trainers.families)."""
    section = to_container(config)["model"][family_entry(config.model.family).section]
    own = {item.name: section[item.name] for item in fields(AutoencoderConfig)}
    module = AUTOENCODER(own, input_shape=list(datamodule.input_shape))
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
        max_epochs=section["pretrain_epochs"],
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
