"""Run folders: where a run writes (``OUTPUT/NAME/DATE-TIME``, or ``run_dir``), what it
leaves there (:class:`RunSummary` in ``summary.json``, ``config.yaml``), its config's
:func:`fingerprint`, and finding a finished run with the same one to reuse
(:func:`find_finished_run`)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from intriguing.callbacks.registry import CALLBACKS
from intriguing.configs import ConfigError, to_container
from intriguing.errors import first_line
from intriguing.storage import atomic_output

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
WANDB_ID_FILE = "wandb_id.txt"
#: A run's ``status`` in its summary.
FINISHED = "finished"
FAILED = "failed"


@dataclass
class RunSummary:
    """What a finished run measured and where it put its files.

    ``checkpoint`` is the model at the end of the last training epoch (``last.ckpt``), the
    model every figure of ``metrics`` was measured on and the one everything that loads "the
    run's model" reads; ``best_checkpoint`` is the best one by ``checkpoint.monitor`` on the
    validation split (``best-epochNNN.ckpt``; ``None`` without a validation split). ``error``
    names the after-training step that failed (test, evaluation) and why; a summary with an
    error is not a finished run (:func:`find_finished_run` skips it). ``status`` is
    ``"finished"``, or ``"failed"`` for a run that stopped with an error (in training:
    :func:`failed_summary`; or after it: ``error`` says which step).
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
    status: str = FINISHED

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
    # Callbacks switched on under `callbacks` (none, or null: switched off, hash as before the
    # section existed, so that finished runs keep standing in).
    extra = {k: v for k, v in (container.pop(CALLBACKS, None) or {}).items() if v is not None}
    if extra:
        container[CALLBACKS] = extra
    if not container.get("imports", True):  # none: as before the key existed
        del container["imports"]
    trainer = container.get("trainer", {})
    for key in ("enable_progress_bar", "progress_bar_refresh_rate", "log_every_n_steps"):
        trainer.pop(key, None)
    text = json.dumps(container, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_finished_run(config: DictConfig) -> RunSummary | None:
    """The newest finished run below ``output_dir/name`` with this config's fingerprint and
    its checkpoint; a run marked failed, or whose summary records an error, is none."""
    wanted = fingerprint(config)
    found = []
    for path in (Path(config.output_dir) / config.name).glob(f"*/{SUMMARY_FILE}"):
        try:
            summary = RunSummary.load(path.parent)
        except (OSError, ValueError, TypeError):
            continue  # an unreadable summary is not a finished run
        if (
            summary.fingerprint == wanted
            and summary.status == FINISHED
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


class RunError(RuntimeError):
    """A run trained (its checkpoints are written) but a step after training failed; its
    ``summary.json`` is written all the same, with the error in ``error``."""


def failed_summary(
    config: DictConfig, run_dir: Path, error: BaseException, seconds: float
) -> RunSummary:
    """The summary that marks ``run_dir`` as a failed run (``status: "failed"``, the error's
    type and first line): not a finished run, whatever it left (its checkpoints are kept and
    named, for a user who wants them, or to resume from)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return RunSummary(
        name=str(config.name),
        run_dir=str(run_dir),
        checkpoint=str(last) if last.is_file() else None,
        seconds=seconds,
        fingerprint=fingerprint(config),
        error=f"training failed ({type(error).__name__}: {first_line(error, '')})",
        status=FAILED,
    )
