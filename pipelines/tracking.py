"""Experiment tracking: W&B through Lightning's WandbLogger, a CSV logger, or none.

W&B runs are offline unless credentials are found, so a fresh machine works without an
account and a logged-in user gets online runs with nothing changed. W&B's environment
variables are honoured (:func:`make_logger` says how each meets the ``logger`` config):
``WANDB_MODE`` always wins over ``logger.mode`` (``auto`` included); ``WANDB_DIR`` decides
where runs are written (cluster users point it at scratch space); ``WANDB_PROJECT``,
``WANDB_ENTITY``, ``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE`` and ``WANDB_TAGS`` fill what the
config leaves unset.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger


def wandb_credentials_found() -> bool:
    """Whether W&B would find an API key: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


def wandb_mode(requested: str) -> str:
    """The mode a run starts in: ``WANDB_MODE`` if set, else ``requested`` with ``auto``
    meaning online when credentials are found and offline otherwise."""
    environment = os.environ.get("WANDB_MODE")
    if environment:
        return environment
    if requested == "auto":
        return "online" if wandb_credentials_found() else "offline"
    return requested


DEFAULT_PROJECT = "intriguing"
DEFAULT_JOB_TYPE = "train"


def wandb_project(configured: str | None) -> str:
    """The W&B project of a run: ``configured`` (the ``logger.project`` a config or the
    command line gave), else ``WANDB_PROJECT``, else ``intriguing``."""
    return configured or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def wandb_dir(default: Path | str | None) -> str | None:
    """The folder to hand W&B for its ``wandb/`` run folders: ``WANDB_DIR`` when set (it wins,
    as on a cluster pointing it at scratch space), else ``default``.

    ``WANDB_DIR`` is passed explicitly, read when the run starts: W&B itself reads it once per
    process (at its first run), so a process that starts several runs (a reproduction, a
    sweep, the tests) would otherwise keep the first value. Where a run really landed is its
    ``run.dir`` (:func:`run_location`), never an assumed path.
    """
    chosen = os.environ.get("WANDB_DIR") or default
    return None if chosen is None else str(chosen)


def make_logger(
    logger: dict[str, Any],
    *,
    run_dir: Path,
    name: str,
    config: dict[str, Any],
    run_id: str | None = None,
    job_type: str | None = None,
) -> Logger | None:
    """The logger the ``logger`` config section asks for, writing below ``run_dir``.

    For W&B, what the config gives explicitly wins over W&B's environment variables, which
    in turn win over this project's defaults (as ``wandb.init`` arguments win over the
    environment in W&B itself):

    - mode: ``WANDB_MODE`` when set, else ``logger.mode`` (:func:`wandb_mode`);
    - folder: ``WANDB_DIR`` when set (the run goes to ``$WANDB_DIR/wandb/``), else ``run_dir``
      (``run_dir/wandb/``);
    - project: ``logger.project``, else ``WANDB_PROJECT``, else ``intriguing``;
    - entity, group and tags: ``logger.entity``/``group``/``tags``, else ``WANDB_ENTITY``,
      ``WANDB_RUN_GROUP``, ``WANDB_TAGS`` (read by W&B), else none (the account's entity);
    - job type: ``job_type`` (a role the caller imposes, as ``pretrain``), else
      ``logger.job_type``, else ``WANDB_JOB_TYPE``, else ``train``.

    ``run_id`` resumes an earlier W&B run (a resumed training continues its run). Returns
    ``None`` for ``logger.kind=none``.
    """
    kind = logger.get("kind", "wandb")
    if kind == "none":
        return None
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    mode = wandb_mode(str(logger.get("mode", "auto")))
    wandb_logger = WandbLogger(
        project=wandb_project(logger.get("project")),
        entity=logger.get("entity") or None,
        group=logger.get("group") or None,
        name=logger.get("name") or name,
        tags=list(logger.get("tags") or []) or None,
        save_dir=wandb_dir(run_dir),
        log_model=bool(logger.get("log_model", False)),
        id=run_id,
        resume="allow" if run_id else None,
        mode=mode,
        job_type=(
            job_type
            or logger.get("job_type")
            or os.environ.get("WANDB_JOB_TYPE")
            or DEFAULT_JOB_TYPE
        ),
        config=config,
    )
    # Lightning passes `anonymous`, which current W&B only warns about: leave it unset.
    init_arguments = getattr(wandb_logger, "_wandb_init", None)
    if isinstance(init_arguments, dict) and init_arguments.get("anonymous") is None:
        init_arguments.pop("anonymous", None)
    return wandb_logger


def run_location(logger: Logger | None) -> str | None:
    """Where the run can be found: a W&B URL online, the run folder offline, or the CSV dir."""
    if isinstance(logger, WandbLogger):
        experiment = logger.experiment
        url = getattr(experiment, "url", None)
        if url:
            return str(url)
        return str(Path(experiment.dir).parent)
    if isinstance(logger, CSVLogger):
        return logger.log_dir
    return None


def finish(logger: Logger | None) -> None:
    """Close the W&B run, so that the next run of a sweep or reproduction starts a new one."""
    if isinstance(logger, WandbLogger):
        import wandb

        if wandb.run is not None:
            wandb.finish()


@dataclass(frozen=True)
class AnalysisTracking:
    """Whether an analysis (an attack, a transfer study, a report) logs to a W&B run of its
    own, and where: ``project`` (``None``: :func:`wandb_project`'s choice) and ``group``."""

    enabled: bool = False
    project: str | None = None
    group: str | None = None


@contextmanager
def analysis_run(
    tracking: AnalysisTracking,
    *,
    job_type: str,
    config: dict[str, Any],
    name: str | None = None,
    report: Callable[[str], None] = print,
) -> Iterator[Any]:
    """A W&B run for an analysis when ``tracking.enabled``, else ``None``.

    The run is finished when the block ends, so that a process can start several runs;
    its mode follows :func:`wandb_mode` (offline without credentials), its folder
    :func:`wandb_dir` and its project :func:`wandb_project` (``tracking.project`` when
    given, else ``WANDB_PROJECT``, else ``intriguing``). Where the run is (its URL, or its
    folder offline) is given to ``report`` when the block ends without an error.
    """
    if not tracking.enabled:
        yield None
        return
    import wandb

    run = wandb.init(
        project=wandb_project(tracking.project),
        group=tracking.group,
        name=name,
        job_type=job_type,
        mode=wandb_mode("auto"),
        dir=wandb_dir(None),
        config=config,
        reinit="finish_previous",
    )
    try:
        yield run
        report(f"W&B run: {run.url or Path(run.dir).parent}")
    finally:
        run.finish()
