"""Train a run from its configuration: ``train(cfg) -> RunSummary``, and a run beside its
baseline, ``train_with_baseline(cfg) -> Comparison`` (the demo's comparison).

This is what ``intriguing train`` runs, and what ``reproduce`` (through
:func:`pipelines.zoo.ensure_run`) and ``sweep`` (one process per point) run for each of their
runs: it builds objects from the config (:mod:`pipelines.build`), hands them to Lightning, and
writes what a later step needs (the run folder with its checkpoints, ``config.yaml`` and
``summary.json``; :mod:`pipelines.runs`). Callable from a notebook::

    from intriguing.configs import compose
    from intriguing.pipelines.train import train

    summary = train(compose(["experiment=demo", "trainer.max_epochs=1"]))
    summary.metrics["test/error"]
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from intriguing.analysis.robustness import (
    Figure,
    headline_figures,
)
from intriguing.callbacks.history import HISTORY_FILE, MetricHistory
from intriguing.configs import to_container, to_yaml
from intriguing.datamodules import build_datamodule
from intriguing.errors import first_line
from intriguing.pipelines import tracking
from intriguing.pipelines.build import (
    build_classifier,
    build_trainer,
    checkpoint_callbacks,
    training_callbacks,
)
from intriguing.pipelines.evaluation import evaluate
from intriguing.pipelines.runs import (
    CONFIG_FILE,
    FAILED,
    FINISHED,
    SUMMARY_FILE,
    WANDB_ID_FILE,
    RunError,
    RunSummary,
    choose_run_dir,
    failed_summary,
    find_finished_run,
    fingerprint,
    resolve_resume,
    resumed_tracking,
)
from intriguing.pipelines.validate import validate_run_config
from intriguing.storage import atomic_output

_log = logging.getLogger(__name__)


def train(config: DictConfig, *, extra_callbacks: list[Callback] | None = None) -> RunSummary:
    """Train and test the model ``config`` describes, then run its ``evaluation``; returns
    the run's summary (also written to ``RUN_DIR/summary.json``).

    The whole config is validated first (:func:`pipelines.validate.validate_run_config`),
    before any folder is made. A run that fails once its folder exists is marked failed
    there (``summary.json`` with ``status: "failed"`` and the error's first line; its
    checkpoints are kept), so that no later step takes it for a finished run.

    Args:
        config: a composed config (:func:`intriguing.configs.compose`).
        extra_callbacks: Lightning callbacks added to those the config switches on.

    Raises:
        ConfigError: a config the run would refuse, naming the key.
        RunError: the model trained (checkpoints written) but a step after training (test,
            evaluation) failed; the summary is written all the same, with the error.
    """
    started = time.perf_counter()
    validate_run_config(config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    resume_checkpoint, resume_dir = resolve_resume(config)
    run_dir = choose_run_dir(config, resume_dir)
    if resume_dir is not None:
        config = resumed_tracking(config, resume_dir)
    _write_on_rank_zero(run_dir / CONFIG_FILE, to_yaml(config))
    try:
        summary = _fit_and_test(config, run_dir, resume_checkpoint, extra_callbacks or [], started)
    except BaseException as error:  # also an interrupt: the folder must not look finished
        _save_on_rank_zero(failed_summary(config, run_dir, error, time.perf_counter() - started))
        raise
    if summary.error:
        raise RunError(
            f"{config.name}: trained, but {summary.error} (recorded in {run_dir / SUMMARY_FILE})"
        )
    return summary


def _fit_and_test(
    config: DictConfig,
    run_dir: Path,
    resume_checkpoint: Path | None,
    extra_callbacks: list[Callback],
    started: float,
) -> RunSummary:
    """The run in ``run_dir``: data, model, callbacks, logger, fit, test, evaluation, summary."""
    datamodule = build_datamodule(to_container(config)["data"])
    module = build_classifier(config, datamodule, run_dir, resuming=resume_checkpoint is not None)
    final, best = (
        checkpoint_callbacks(config, run_dir, has_validation=config.data.val_size > 0)
        if config.checkpoint.enabled
        else (None, None)
    )
    callbacks: list[Callback] = [c for c in (final, best) if c is not None]
    callbacks += [*training_callbacks(config), *extra_callbacks]
    callbacks.append(MetricHistory(run_dir / HISTORY_FILE))  # for sweeps' early_terminate
    logger = _run_logger(config, run_dir)
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
        status=FAILED if errors else FINISHED,
    )
    if logger is not None and trainer.is_global_zero:
        logger.log_metrics({"run/seconds": summary.seconds})
    _save_on_rank_zero(summary)
    tracking.finish(logger)
    return summary


def _run_logger(config: DictConfig, run_dir: Path) -> Logger | None:
    """The run's logger (:func:`pipelines.tracking.make_logger`); a resumed run continues its
    W&B run (its id is kept in ``RUN_DIR/wandb_id.txt``)."""
    id_file = run_dir / WANDB_ID_FILE
    logger = tracking.make_logger(
        to_container(config)["logger"],
        run_dir=run_dir,
        name=config.name,
        config=to_container(config),
        run_id=id_file.read_text().strip() if id_file.is_file() else None,
    )
    _remember_wandb_id(logger, id_file)
    return logger


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


@dataclass(frozen=True)
class Comparison:
    """A run and its baseline (the same training without backfeeding), as
    :func:`train_with_baseline` returns them; ``baseline_reused``: the baseline was a
    finished run found, not trained now."""

    run: RunSummary
    baseline: RunSummary
    baseline_reused: bool

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The comparison as a header and rows of text (:func:`comparison_table`)."""
        return comparison_table(self.run, self.baseline)


def train_with_baseline(config: DictConfig) -> Comparison:
    """The baseline (a finished run with the same fingerprint is reused, else trained), then
    the run itself. ``config`` is validated first (:func:`pipelines.validate.validate_run_config`),
    so that a bad backfeed setting is refused before the baseline trains.

    Both are one W&B group, job types ``baseline`` and ``backfeed`` (a ``logger.job_type``
    given for the run is kept): ``config.logger.group`` is set in place, before either run
    starts, to :func:`comparison_group`, so that the caller can log into the same group. A
    reused baseline stays in the group it was logged to."""
    validate_run_config(config)  # before the baseline trains: its config lacks the backfeed
    config.logger.group = comparison_group(config)
    if config.logger.job_type is None:
        config.logger.job_type = BACKFEED_JOB_TYPE
    reference = baseline_config(config)
    cached = find_finished_run(reference)
    baseline = cached or train(reference)
    if config.transfer.enabled and baseline.checkpoint:
        # The baseline joins the zoo: transfer between the two, measured while training.
        config = copy.deepcopy(config)
        config.transfer.zoo = [*config.transfer.zoo, baseline.checkpoint]
    return Comparison(train(config), baseline, cached is not None)


#: The clean error every comparison starts with (the test set, or ``data.test_subset``).
CLEAN_TEST_ERROR = Figure("test/error", "clean test error", True)
COMPARISON_JOB_TYPE = "comparison"


def compared_figures(*runs: RunSummary) -> list[Figure]:
    """The figures of a comparison: clean test error, then the headline figures
    (:func:`analysis.robustness.headline_figures`) that every run measured."""
    keys = set.intersection(*(set(run.metrics) for run in runs)) if runs else set()
    return [f for f in (CLEAN_TEST_ERROR, *headline_figures(keys)) if f.key in keys]


def figure_text(value: float, percent: bool) -> str:
    """A figure as a table shows it: an error rate in percent with two decimals (``1.61%``),
    a distortion with four (``0.0486``)."""
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def comparison_table(run: RunSummary, baseline: RunSummary) -> tuple[list[str], list[list[str]]]:
    """The demo's comparison as a header and rows of text: per figure
    (:func:`compared_figures`), its label, the baseline's value and the run's (error rates
    in percent with two decimals, distortions with four)."""
    header = ["figure", baseline.name, run.name]
    rows = [
        [
            figure.label,
            *(figure_text(r.metrics[figure.key], figure.percent) for r in (baseline, run)),
        ]
        for figure in compared_figures(run, baseline)
    ]
    return header, rows


@rank_zero_only
def log_comparison(config: DictConfig, run: RunSummary, baseline: RunSummary) -> str | None:
    """Log :func:`comparison_table` to W&B as a ``wandb.Table`` (key ``comparison``) in a run
    of its own, job type ``comparison``, in ``config.logger.group`` (the group
    :func:`train_with_baseline` gives the run and its baseline). Returns where the run is, or
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
