"""Upper Lipschitz bounds of a model's layers (Szegedy et al. 2013, Section 4.3, Table 5): of a
checkpoint of the project's classifiers, or of any ``nn.Module`` a factory builds. This is what
``intriguing spectral`` runs; callable from a notebook::

    from intriguing.pipelines.spectral import SpectralSettings, spectral_report

    report = spectral_report(SpectralSettings(checkpoint="runs/fc100/last.ckpt"))
    print(report.text())
    report.bounds.summary()["spectral/product"]

:func:`spectral_report` computes the bounds (:func:`analysis.spectral.network_bounds` for a
checkpoint, :func:`analysis.spectral.spectral_bounds` for a built model);
:func:`write_report` writes the tables and the per-layer records, :func:`log_report` logs them
to a W&B run of their own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intriguing.analysis.spectral import (
    ModelBounds,
    SpectralBounds,
    network_bounds,
    spectral_bounds,
)
from intriguing.configs import ConfigError
from intriguing.pipelines.checks import check_number, check_sequence, check_text
from intriguing.pipelines.models import build_model, load_weights
from intriguing.pipelines.tracking import AnalysisTracking, analysis_run
from intriguing.trainers import load_classifier
from intriguing.trainers.stages import StagedNetwork


@dataclass(frozen=True)
class SpectralSettings:
    """What to bound and how precisely.

    Exactly one of ``checkpoint`` and ``model`` is given. With ``model``, ``state_dict`` is
    optional: without it the bounds are those of the weights the factory gives (random initial
    weights unless it loads trained ones), a legitimate question of its own (how a network's
    bounds start out), not an error.

    Attributes:
        checkpoint: an :class:`~intriguing.trainers.ImageClassifier` checkpoint; its network's
            stages and layers are bounded at its own input shape (Table 5's layout).
        model: ``MODULE:FACTORY`` (:func:`pipelines.models.build_model`): any ``nn.Module``.
        state_dict: with ``model``: weights to load (a state dict, or a Lightning
            checkpoint's; :func:`pipelines.models.load_weights`); ``None``: the factory's.
        input_shape: with ``model``: one example's shape ``(C, H, W)`` at the bounded module's
            input, a tuple (or list) of sizes of at least 1 (not needed for a
            :class:`StagedNetwork`, which knows its own).
        module: with ``model``: the dotted name of the submodule to bound instead of the
            whole model.
        fourier: with ``model``: also the Fourier-domain bound of 2-d convolutions (always
            computed for a checkpoint).
        dense_limit: exact Gram eigenvalues when an operator's smaller side is at most this
            long, else Lanczos iteration.
        tol: Lanczos relative tolerance, finite and at least 0.

    Raises:
        ValueError: both or neither of ``checkpoint`` and ``model``; an empty ``input_shape``
            or one with a size below 1; a negative or non-finite ``tol``.
        TypeError: a field of the wrong kind, named with its value (``input_shape=784``:
            give ``(784,)``; a float ``dense_limit``).
    """

    checkpoint: str | Path | None = None
    model: str | None = None
    state_dict: str | Path | None = None
    input_shape: Sequence[int] | None = None
    module: str | None = None
    fourier: bool = False
    dense_limit: int = 1024
    tol: float = 1e-7

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.model is None):
            raise ValueError(
                f"SpectralSettings: checkpoint={self.checkpoint!r}, model={self.model!r}: "
                "give exactly one of them"
            )
        owner = type(self).__name__
        check_text(owner, "checkpoint", self.checkpoint, optional=True, path=True)
        check_text(owner, "model", self.model, optional=True)
        check_text(owner, "state_dict", self.state_dict, optional=True, path=True)
        check_sequence(
            owner, "input_shape", self.input_shape, items="size", optional=True, nonempty=True
        )
        check_text(owner, "module", self.module, optional=True)
        check_number(owner, "dense_limit", self.dense_limit, whole=True)
        check_number(owner, "tol", self.tol, minimum=0)


@dataclass(frozen=True)
class SpectralReport:
    """:func:`spectral_report`'s result.

    Attributes:
        bounds: every layer's (and stage's) upper bound on its L2 operator norm, and the
            network's (the product over stages, or the bound composed over the traced graph).
        title: one line naming the model and its input shape.
        source: what was bounded (``checkpoint``, ``family``, ``tol``; or ``model``,
            ``state_dict``, ``module``, ``input_shape``, ``tol``): the W&B run's config.
    """

    bounds: SpectralBounds | ModelBounds
    title: str
    source: dict[str, Any]

    def text(self) -> str:
        """The title and the bounds' markdown tables, as the command prints them."""
        return f"{self.title}:\n\n{self.bounds.to_markdown()}"

    def record(self) -> dict[str, Any]:
        """The JSON record: what was bounded (a checkpoint's path only), the network's
        values (``spectral/...``) and one row per layer."""
        source = self.source
        if "checkpoint" in source:
            source = {"checkpoint": source["checkpoint"]}
        return {**source, **self.bounds.summary(), "layers": self.bounds.rows()}


def spectral_report(settings: SpectralSettings) -> SpectralReport:
    """The upper Lipschitz bounds of ``settings``' checkpoint or model.

    Raises:
        ConfigError: ``state_dict``, ``input_shape`` or ``module`` with a checkpoint (named as
            the command's options, ``--state-dict goes with --model, not --checkpoint``); no
            ``input_shape`` for a model that is not a StagedNetwork; a ``module`` the model
            lacks; a model, weights or input shape that do not fit (``ValueError`` of the
            bounds, e.g. an input the model cannot take).
        CheckpointError: an unreadable checkpoint, or not an ImageClassifier's.
        LipschitzBoundError: a layer without a known bound (named, with how to register one).
    """
    if settings.checkpoint is not None:
        return _checkpoint_report(Path(settings.checkpoint), settings)
    return _model_report(str(settings.model), settings)


def _checkpoint_report(checkpoint: Path, settings: SpectralSettings) -> SpectralReport:
    for option in ("state_dict", "input_shape", "module"):
        if getattr(settings, option):
            raise ConfigError(f"--{option.replace('_', '-')} goes with --model, not --checkpoint")
    model = load_classifier(checkpoint)
    bounds = network_bounds(model.network, dense_limit=settings.dense_limit, tol=settings.tol)
    shape = "x".join(str(d) for d in model.network.input_shape)
    family = model.model_config.get("family", "?")
    title = f"Upper Lipschitz bounds (L2) of {checkpoint.name} ({family} network, inputs {shape})"
    source = {"checkpoint": str(settings.checkpoint), "family": family, "tol": settings.tol}
    return SpectralReport(bounds, title, source)


def _model_report(spec: str, settings: SpectralSettings) -> SpectralReport:
    model = build_model(spec)
    if settings.state_dict:
        load_weights(model, Path(settings.state_dict))
    target = model
    if settings.module:
        try:
            target = model.get_submodule(settings.module)
        except AttributeError as error:
            raise ConfigError(f"--module {settings.module}: {error}") from error
    shape = tuple(settings.input_shape) if settings.input_shape else None
    if shape is None and not isinstance(target, StagedNetwork):
        raise ConfigError("--input-shape C,H,W is needed with --model (one example's shape)")
    try:
        bounds = spectral_bounds(
            target,
            shape,
            dense_limit=settings.dense_limit,
            tol=settings.tol,
            fourier=settings.fourier,
        )
    except ValueError as error:  # an input shape the model cannot take, no bound, ...
        raise ConfigError(str(error)) from error
    name = spec + (f" ({settings.module})" if settings.module else "")
    inputs = "x".join(str(d) for d in (shape or target.input_shape))  # type: ignore[union-attr]
    source = {
        "model": spec,
        "state_dict": None if settings.state_dict is None else str(settings.state_dict),
        "module": settings.module,
        "input_shape": inputs,
        "tol": settings.tol,
    }
    title = f"Upper Lipschitz bounds (L2) of {name}, inputs {inputs}"
    return SpectralReport(bounds, title, source)


def write_report(
    report: SpectralReport,
    *,
    markdown_path: str | Path | None = None,
    json_path: str | Path | None = None,
) -> list[Path]:
    """Write :meth:`SpectralReport.text` to ``markdown_path`` and :meth:`SpectralReport.record`
    to ``json_path`` (each when given; their folders are made); returns the files written."""
    written: list[Path] = []
    if markdown_path:
        written.append(_write(Path(markdown_path), report.text()))
    if json_path:
        written.append(_write(Path(json_path), json.dumps(report.record(), indent=2) + "\n"))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def log_report(report: SpectralReport, tracking: AnalysisTracking) -> None:
    """The per-layer table (``spectral/layers``) and the per-stage (or per-layer) and network
    values (run summary) to a W&B run of job type ``spectral`` when ``tracking.enabled``
    (:func:`pipelines.tracking.analysis_run`)."""
    with analysis_run(tracking, job_type="spectral", config=report.source) as run:
        if run is None:
            return
        import wandb

        rows = report.bounds.rows()
        columns = list(rows[0])
        table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
        run.log({"spectral/layers": table})
        run.summary.update(report.bounds.summary())
