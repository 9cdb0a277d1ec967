"""Run one experiment from its configuration: data, model, callbacks, logger, fit, test.

This is the path of ``intriguing train``, and the one ``reproduce`` and ``sweep`` call for
each of their runs: it builds objects from the config and hands them to Lightning, and
writes what a later step needs (the run folder with its checkpoints, ``config.yaml`` and
``summary.json``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from intriguing.analysis.evaluation import AttackSettings
from intriguing.analysis.robustness import (
    OWN_ATTACKS,
    Figure,
    check_budgets,
    check_robust_attacks,
    evaluate_robustness,
    headline_figures,
    robust_attacks_text,
)
from intriguing.callbacks import (
    AdversarialBackfeed,
    PoolExamplesLogger,
    SpectralMonitor,
    transfer_callbacks,
)
from intriguing.callbacks.history import HISTORY_FILE, MetricHistory
from intriguing.configs import ConfigError, building, to_container, to_yaml
from intriguing.datamodules import build_datamodule
from intriguing.errors import first_line
from intriguing.pipelines import tracking
from intriguing.storage import atomic_output
from intriguing.trainers import (
    CheckpointError,
    ImageClassifier,
    SparseAutoencoder,
    load_encoder_state,
)

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
WANDB_ID_FILE = "wandb_id.txt"
_log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a finished run measured and where it put its files.

    ``checkpoint`` is the model at the end of the last training epoch (``last.ckpt``), the
    model every figure of ``metrics`` was measured on and the one everything that loads "the
    run's model" reads; ``best_checkpoint`` is the best one by ``checkpoint.monitor`` on the
    validation split (``best-epochNNN.ckpt``; ``None`` without a validation split). ``error``
    names the after-training step that failed (test, evaluation) and why; a summary with an
    error is not a finished run (:func:`find_finished_run` skips it).
    """

    name: str
    run_dir: str
    checkpoint: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    logs: str | None = None  # the W&B run (URL online, folder offline) or the CSV folder
    seconds: float = 0.0
    epochs: int = 0
    fingerprint: str = ""
    best_checkpoint: str | None = None
    error: str | None = None

    def save(self) -> None:
        with atomic_output(Path(self.run_dir) / SUMMARY_FILE, "w") as stream:
            stream.write(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunSummary:
        return cls(**json.loads((Path(run_dir) / SUMMARY_FILE).read_text()))


RUN_DIR_VARIABLE = "INTRIGUING_RUN_DIR"
# Keys that change where and how a run is recorded, not what it trains.
_UNFINGERPRINTED = ("name", "output_dir", "run_dir", "resume", "logger", "checkpoint")


def fingerprint(config: DictConfig) -> str:
    """A hash of everything that decides what a run trains and measures: equal fingerprints
    mean a finished run can stand in for a new one (``reproduce``, zoos, baselines)."""
    container = to_container(config)
    for key in _UNFINGERPRINTED:
        container.pop(key, None)
    trainer = container.get("trainer", {})
    for key in ("enable_progress_bar", "progress_bar_refresh_rate", "log_every_n_steps"):
        trainer.pop(key, None)
    text = json.dumps(container, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_finished_run(config: DictConfig) -> RunSummary | None:
    """The newest finished run below ``output_dir/name`` with this config's fingerprint."""
    wanted = fingerprint(config)
    found = []
    for path in (Path(config.output_dir) / config.name).glob(f"*/{SUMMARY_FILE}"):
        try:
            summary = RunSummary.load(path.parent)
        except (OSError, ValueError, TypeError):
            continue  # an unreadable summary is not a finished run
        if (
            summary.fingerprint == wanted
            and summary.error is None
            and summary.checkpoint
            and Path(summary.checkpoint).is_file()
        ):
            found.append((path.stat().st_mtime, summary))
    return max(found, key=lambda item: item[0])[1] if found else None


def choose_run_dir(config: DictConfig, resume_dir: Path | None) -> Path:
    """The run's folder, the same in every process of a distributed run.

    ``run_dir=PATH`` names it (needed under torchrun or SLURM, where processes start on
    their own); a resumed run keeps its folder; the processes that Lightning itself starts
    for DDP inherit the folder of the process that started them; else a new folder.
    """
    if config.run_dir:
        path = Path(config.run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if resume_dir is not None:
        return resume_dir
    if started_by_external_launcher():
        raise ConfigError(
            "run_dir: torchrun and srun start every process on its own, and each would make "
            "a folder of its own: give them all the same run_dir=PATH (docs/scaling.md)"
        )
    inherited = os.environ.get(RUN_DIR_VARIABLE)
    if inherited and rank_zero_only.rank != 0:
        return Path(inherited)
    path = new_run_dir(config.output_dir, config.name)
    os.environ[RUN_DIR_VARIABLE] = str(path)  # for the DDP processes Lightning starts next
    return path


def started_by_external_launcher() -> bool:
    """Whether torchrun (``TORCHELASTIC_RUN_ID``, as Lightning's TorchElasticEnvironment
    detects it) or SLURM's srun (``SLURM_NTASKS``, as its SLURMEnvironment does) started this
    process as one of several."""
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and not interactive


def new_run_dir(output_dir: str, name: str) -> Path:
    """A fresh folder ``OUTPUT/NAME/YYYYmmdd-HHMMSS[-k]``: no run overwrites another's files."""
    base = Path(output_dir) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{k}" for k in range(1, 1000))]:
        candidate = base / f"{stamp}{suffix}"
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder below {base}")


def resolve_resume(config: DictConfig) -> tuple[Path | None, Path | None]:
    """(checkpoint, run folder) to resume from: ``resume=PATH`` or ``resume=last``."""
    if not config.resume:
        return None, None
    if config.resume == "last":
        candidates = sorted(
            (Path(config.output_dir) / config.name).glob("*/checkpoints/last.ckpt"),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise ConfigError(
                f"resume=last: no last.ckpt below {Path(config.output_dir) / config.name}"
            )
        checkpoint = candidates[-1]
    else:
        checkpoint = Path(str(config.resume))
        if not checkpoint.is_file():
            raise ConfigError(f"resume={config.resume}: no such checkpoint file")
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None
    return checkpoint, run_dir


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
    """The first of AE400-10's two Lightning runs: the sparse autoencoder, saved for reuse."""
    section = config.model.autoencoder
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
    if config.model.family == "ae" and not resuming:
        encoder = config.model.autoencoder.encoder_checkpoint
        path = Path(encoder) if encoder else pretrain_autoencoder(config, datamodule, run_dir)
        try:
            module.network.stages["code"].load_state_dict(load_encoder_state(path))
        except RuntimeError as error:
            raise CheckpointError(f"checkpoint {path}: encoder does not fit ({error})") from None
    return module


def run_experiment(
    config: DictConfig, *, extra_callbacks: list[Callback] | None = None
) -> RunSummary:
    """Train and test the model ``config`` describes; returns the run's summary."""
    started = time.perf_counter()
    check_evaluation(config)  # before training: what would only fail after it
    pl.seed_everything(config.seed, workers=True, verbose=False)
    resume_checkpoint, resume_dir = resolve_resume(config)
    run_dir = choose_run_dir(config, resume_dir)
    if resume_dir is not None:
        config = resumed_tracking(config, resume_dir)
    _write_on_rank_zero(run_dir / CONFIG_FILE, to_yaml(config))

    datamodule = build_datamodule(to_container(config)["data"])
    module = build_classifier(config, datamodule, run_dir, resuming=resume_checkpoint is not None)
    has_validation = config.data.val_size > 0
    final, best = (
        checkpoint_callbacks(config, run_dir, has_validation)
        if config.checkpoint.enabled
        else (None, None)
    )
    callbacks: list[Callback] = [c for c in (final, best) if c is not None]
    callbacks += training_callbacks(config)
    callbacks += extra_callbacks or []
    callbacks.append(MetricHistory(run_dir / HISTORY_FILE))  # for sweeps' early_terminate

    id_file = run_dir / WANDB_ID_FILE
    logger = tracking.make_logger(
        to_container(config)["logger"],
        run_dir=run_dir,
        name=config.name,
        config=to_container(config),
        run_id=id_file.read_text().strip() if id_file.is_file() else None,
    )
    _remember_wandb_id(logger, id_file)
    trainer = build_trainer(config, run_dir=run_dir, callbacks=callbacks, logger=logger)
    trainer.fit(
        module,
        datamodule=datamodule,
        ckpt_path=str(resume_checkpoint) if resume_checkpoint else None,
    )
    metrics = _scalars(trainer.callback_metrics)
    errors: list[str] = []
    with _recorded("test", errors):
        test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(_scalars(test_metrics[0] if test_metrics else {}))
    if config.evaluation.subset and trainer.is_global_zero:
        with _recorded("evaluation", errors):
            robustness = evaluate(config, module, datamodule)
            metrics.update(robustness)
            if logger is not None:
                logger.log_metrics(robustness)
    summary = RunSummary(
        name=config.name,
        run_dir=str(run_dir),
        checkpoint=_saved(final),
        metrics=metrics,
        logs=tracking.run_location(logger) if trainer.is_global_zero else None,
        seconds=time.perf_counter() - started,
        epochs=trainer.current_epoch,
        fingerprint=fingerprint(config),
        best_checkpoint=_saved(best),
        error="; ".join(errors) or None,
    )
    if logger is not None and trainer.is_global_zero:
        logger.log_metrics({"run/seconds": summary.seconds})
    _save_on_rank_zero(summary)
    tracking.finish(logger)
    if summary.error:
        raise RunError(
            f"{config.name}: trained, but {summary.error} (recorded in {run_dir / SUMMARY_FILE})"
        )
    return summary


class RunError(RuntimeError):
    """A run trained (its checkpoints are written) but a step after training failed; its
    ``summary.json`` is written all the same, with the error in ``error``."""


@contextmanager
def _recorded(step: str, errors: list[str]) -> Iterator[None]:
    """Run an after-training step; a failure is kept as one line in ``errors``, not raised,
    so that the run's summary is always written."""
    try:
        yield
    except Exception as error:  # any failure: it goes into summary.json, then RunError
        text = first_line(error, "")
        errors.append(f"{step} failed ({type(error).__name__}: {text})")
        _log.debug("%s failed", step, exc_info=True)  # the traceback, for debug logging


def check_evaluation(config: DictConfig) -> None:
    """Refuse, before anything is trained, an ``evaluation`` section that would only fail
    after training: a robust attack not known, a bad budget or strength, or torchattacks
    missing for APGD or AutoAttack (the message names ``intriguing[eval]``).

    Raises:
        ConfigError: naming the ``evaluation`` key and its value.
    """
    section = config.evaluation
    if not section.subset:
        return
    robust = section.robust_subset
    if robust is not None and robust < 0:
        raise ConfigError(f"evaluation.robust_subset={robust}: must be 0 (none), more, or null")
    attacks = list(section.robust_attacks)
    if robust == 0 or not attacks:
        return
    for key in ("robust_steps", "pgd_steps", "pgd_restarts"):
        if section[key] < 1:
            raise ConfigError(f"evaluation.{key}={section[key]}: must be at least 1")
    for norm, epsilons in robust_epsilons(config).items():
        try:
            check_budgets(norm, epsilons)
        except ValueError as error:
            raise ConfigError(f"evaluation.{norm}_epsilons={epsilons}: {error}") from None
    named = f"evaluation.robust_attacks=[{', '.join(attacks)}]"
    try:
        check_robust_attacks(attacks)
    except ValueError as error:
        raise ConfigError(f"{named}: {error}") from None
    except ImportError as error:
        ours = ",".join(a for a in attacks if a in OWN_ATTACKS) or "pgd,fgsm"
        raise ConfigError(
            f"{named}: {error} (or only our attacks: evaluation.robust_attacks=[{ours}])"
        ) from None


def robust_epsilons(config: DictConfig) -> dict[str, list[float]]:
    """The ``evaluation`` section's robust-error budgets per norm (``linf``, ``l2``)."""
    section = config.evaluation
    return {
        "linf": [float(e) for e in section.linf_epsilons],
        "l2": [float(e) for e in section.l2_epsilons],
    }


def evaluate(
    config: DictConfig, module: ImageClassifier, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    """The ``evaluation`` section's robustness figures on the first test images: clean error,
    robust error at each budget (on the first ``robust_subset`` of them), the fixed-budget
    attack's error and the mean minimum distortion (:mod:`analysis.robustness`)."""
    datamodule.setup("test")
    images, labels = datamodule.tensors("test")
    count = min(config.evaluation.subset, len(labels))
    section = to_container(config)["evaluation"]
    robustness = evaluate_robustness(
        module.network,
        images[:count],
        labels[:count],
        attack=section["attack"],
        distortion_attack=section["distortion_attack"],
        batch_size=section["batch_size"],
        progress=config.trainer.enable_progress_bar,
        robust_attacks=section["robust_attacks"],
        epsilons=robust_epsilons(config),
        robust_examples=section["robust_subset"],
        settings=AttackSettings(
            steps=section["robust_steps"],
            pgd_steps=section["pgd_steps"],
            pgd_restarts=section["pgd_restarts"],
        ),
    )
    return robustness.as_metrics("eval/")


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats of the one-number metrics Lightning collected."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if not torch.is_tensor(value) or value.numel() == 1
    }


@rank_zero_only
def _save_on_rank_zero(summary: RunSummary) -> None:
    summary.save()


@rank_zero_only
def _write_on_rank_zero(path: Path, text: str) -> None:
    with atomic_output(path, "w") as stream:
        stream.write(text)


def _saved(callback: ModelCheckpoint | None) -> str | None:
    """The file a checkpoint callback kept last (its best, for a monitored one), if any."""
    if callback is None or not callback.best_model_path:
        return None
    return str(callback.best_model_path)


@rank_zero_only
def _remember_wandb_id(logger: Logger | None, id_file: Path) -> None:
    """Keep the W&B run's id beside the checkpoints, so that a resumed training continues it."""
    if isinstance(logger, WandbLogger) and not id_file.is_file():
        with atomic_output(id_file, "w") as stream:
            stream.write(str(logger.experiment.id))


def resumed_tracking(config: DictConfig, run_dir: Path) -> DictConfig:
    """``config`` with the W&B group and job type that the run in ``run_dir`` was started
    with (its ``config.yaml``) where ``config`` leaves them unset: a resumed run stays in its
    group. Returns ``config`` itself when nothing is filled in, else a copy."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return config
    earlier = OmegaConf.load(path).get("logger") or {}
    keep = {
        key: earlier.get(key)
        for key in ("group", "job_type")
        if config.logger.get(key) is None and earlier.get(key)
    }
    if not keep:
        return config
    config = copy.deepcopy(config)
    for key, value in keep.items():
        config.logger[key] = value
    return config


BASELINE_JOB_TYPE = "baseline"
BACKFEED_JOB_TYPE = "backfeed"


def comparison_group(config: DictConfig) -> str:
    """The W&B group of a run and its baseline: ``logger.group`` when given, else
    ``WANDB_RUN_GROUP``, else ``NAME-FINGERPRINT`` (the first 8 hex digits of
    :func:`fingerprint`): the same in every process of a distributed run and for the same
    job started again or resumed."""
    given = config.logger.group or os.environ.get("WANDB_RUN_GROUP")
    return str(given) if given else f"{config.name}-{fingerprint(config)[:8]}"


def baseline_config(config: DictConfig) -> DictConfig:
    """The same run without backfeeding (nor transfer): the comparison of the paper's claim.
    Its W&B job type is ``baseline``, in the group of ``config``."""
    baseline = copy.deepcopy(config)
    baseline.name = f"{config.name}-baseline"
    baseline.logger.job_type = BASELINE_JOB_TYPE
    baseline.backfeed.enabled = False
    baseline.transfer.enabled = False
    baseline.compare_baseline = False
    baseline.resume = None
    baseline.run_dir = None
    return baseline


def run_with_baseline(config: DictConfig) -> tuple[RunSummary, RunSummary, bool]:
    """The baseline (a finished run with the same fingerprint is reused, else trained), then
    the run itself. Returns (run, baseline, whether the baseline was reused).

    Both are one W&B group, job types ``baseline`` and ``backfeed`` (a ``logger.job_type``
    given for the run is kept): ``config.logger.group`` is set in place, before either run
    starts, to :func:`comparison_group`, so that the caller can log into the same group. A
    reused baseline stays in the group it was logged to."""
    config.logger.group = comparison_group(config)
    if config.logger.job_type is None:
        config.logger.job_type = BACKFEED_JOB_TYPE
    reference = baseline_config(config)
    cached = find_finished_run(reference)
    baseline = cached or run_experiment(reference)
    if config.transfer.enabled and baseline.checkpoint:
        # The baseline joins the zoo: transfer between the two, measured while training.
        config = copy.deepcopy(config)
        config.transfer.zoo = [*config.transfer.zoo, baseline.checkpoint]
    return run_experiment(config), baseline, cached is not None


#: The clean error every comparison starts with (the test set, or ``data.test_subset``).
CLEAN_TEST_ERROR = Figure("test/error", "clean test error", True)
COMPARISON_JOB_TYPE = "comparison"


def compared_figures(*runs: RunSummary) -> list[Figure]:
    """The figures of a comparison: clean test error, then the headline figures
    (:func:`analysis.robustness.headline_figures`) that every run measured."""
    keys = set.intersection(*(set(run.metrics) for run in runs)) if runs else set()
    return [f for f in (CLEAN_TEST_ERROR, *headline_figures(keys)) if f.key in keys]


def _cell(value: float, percent: bool) -> str:
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def comparison_table(run: RunSummary, baseline: RunSummary) -> tuple[list[str], list[list[str]]]:
    """The demo's comparison as a header and rows of text: per figure
    (:func:`compared_figures`), its label, the baseline's value and the run's (error rates
    in percent with two decimals, distortions with four)."""
    header = ["figure", baseline.name, run.name]
    rows = [
        [figure.label, *(_cell(r.metrics[figure.key], figure.percent) for r in (baseline, run))]
        for figure in compared_figures(run, baseline)
    ]
    return header, rows


def robust_note(summary: RunSummary) -> str | None:
    """How a run's robust errors were measured, in one line (``None`` without them)."""
    metrics = summary.metrics
    attacks = robust_attacks_text(metrics)
    if not attacks:
        return None
    robust = int(metrics.get("eval/robust_examples", 0))
    examples = int(metrics.get("eval/examples", 0))
    text = (
        f"robust error: an image counts as wrong when misclassified clean or fooled by any of "
        f"{attacks} within the budget, on the first {robust} test images"
    )
    if examples and examples != robust:
        text += f" (a subset, for time); minimum distortion on the first {examples}"
    return text


def masking_note(summary: RunSummary) -> str | None:
    """The gradient-masking checks a run violated, by name (``None`` without robust error)."""
    prefix = "eval/masking/"
    checks = {k[len(prefix) :]: v for k, v in summary.metrics.items() if k.startswith(prefix)}
    if not checks:
        return None
    violated = sorted(name for name, value in checks.items() if value)
    if not violated:
        return f"gradient-masking checks: {len(checks)} passed, none violated"
    return f"gradient-masking checks VIOLATED: {', '.join(violated)}"


def format_comparison(run: RunSummary, baseline: RunSummary, reused: bool) -> str:
    """The demo's closing table (:func:`comparison_table`): the run against its baseline,
    side by side, then how the robust errors were measured and where the baseline is."""
    header, rows = comparison_table(run, baseline)
    first = max([len(row[0]) for row in rows] + [26])
    width = max(len(run.name), len(baseline.name), 12)
    lines = [f"{'':<{first}} {header[1]:>{width}} {header[2]:>{width}}"]
    lines += [f"{row[0]:<{first}} {row[1]:>{width}} {row[2]:>{width}}" for row in rows]
    note = robust_note(run)
    examples = int(run.metrics.get("eval/examples", 0))
    if note:
        lines.append(f"({note})")
    elif examples:
        lines.append(f"(adversarial figures on the first {examples} test images)")
    for summary in (baseline, run):
        masking = masking_note(summary)
        if masking and "VIOLATED" in masking:
            lines.append(f"{summary.name}: {masking}")
    lines.append(f"baseline: {'reused from ' if reused else ''}{baseline.run_dir}")
    return "\n".join(lines)


@rank_zero_only
def log_comparison(config: DictConfig, run: RunSummary, baseline: RunSummary) -> str | None:
    """Log :func:`comparison_table` to W&B as a ``wandb.Table`` (key ``comparison``) in a run
    of its own, job type ``comparison``, in ``config.logger.group`` (the group
    :func:`run_with_baseline` gives the run and its baseline). Returns where the run is, or
    ``None`` when the config logs to no W&B."""
    if config.logger.kind != "wandb":
        return None
    container = to_container(config)
    container["logger"]["job_type"] = COMPARISON_JOB_TYPE
    logger = tracking.make_logger(
        container["logger"],
        run_dir=Path(run.run_dir),
        name=f"{config.name}-{COMPARISON_JOB_TYPE}",
        config=container,
        job_type=COMPARISON_JOB_TYPE,
    )
    if not isinstance(logger, WandbLogger):
        return None
    header, rows = comparison_table(run, baseline)
    logger.log_table(key=COMPARISON_JOB_TYPE, columns=header, data=rows)
    location = tracking.run_location(logger)
    tracking.finish(logger)
    return location


def format_summary(summary: RunSummary) -> str:
    """A few lines for the terminal: errors in percent, then where the run lives."""
    lines = [f"{summary.name}: {summary.epochs} epochs in {summary.seconds:.0f} s"]
    for key in ("train/error", "val/error", "test/error"):
        if key in summary.metrics:
            lines.append(f"  {key:<12} {100 * summary.metrics[key]:6.2f}%")
    figures = headline_figures(summary.metrics)
    width = max([len(figure.label) for figure in figures] + [12])
    for figure in figures:
        lines.append(
            f"  {figure.label:<{width}} {_cell(summary.metrics[figure.key], figure.percent)}"
        )
    for note in (robust_note(summary), masking_note(summary)):
        if note:
            lines.append(f"  ({note})")
    if summary.checkpoint:
        lines.append(f"  checkpoint   {summary.checkpoint}")
    if summary.best_checkpoint:
        lines.append(f"  best         {summary.best_checkpoint}")
    if summary.logs:
        lines.append(f"  run logs     {summary.logs}")
    return "\n".join(lines)
