"""Robust error at fixed budgets of checkpoints, or of any ``nn.Module`` a factory builds, per
attack and for their union, with the gradient-masking checks of Carlini et al. (2019): what
``intriguing evaluate`` runs. Callable from a notebook::

    from intriguing.pipelines.evaluate_models import EvaluateModelsSettings, evaluate_models

    results = evaluate_models(
        EvaluateModelsSettings(
            epsilons=[0.1, 0.3], checkpoints=["a.ckpt", "b.ckpt"], attacks=["apgd-ce", "pgd"]
        )
    )
    results.evaluations["a"].budgets[0].robust_error["union"]

:func:`evaluate_models` checks the settings, loads the models and the examples and runs
:func:`analysis.evaluation.evaluate_robustness` per model; :func:`write_results` writes
``results.json``, ``results.md`` and ``robust_error.png``; :func:`log_results` logs them to a
W&B run of their own.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from intriguing.analysis.evaluation import (
    ATTACKS,
    NORMS,
    UNION,
    AttackSettings,
    RobustnessEvaluation,
    evaluate_robustness,
    evaluation_header,
    evaluation_rows,
    robust_error_figure,
)
from intriguing.analysis.plots import save_figure
from intriguing.analysis.tables import markdown_table
from intriguing.analysis.transfer import checkpoint_names
from intriguing.attacks.peers import import_torchattacks
from intriguing.configs import ConfigError
from intriguing.datamodules import TENSOR_SPLITS, build_datamodule
from intriguing.pipelines.checks import (
    check_choice,
    check_count,
    check_number,
    check_sequence,
    check_text,
)
from intriguing.pipelines.data import split_examples
from intriguing.pipelines.models import build_model, load_weights
from intriguing.pipelines.tracking import AnalysisTracking, analysis_run
from intriguing.pipelines.transfer import data_settings
from intriguing.trainers import CheckpointError, load_classifier
from intriguing.trainers.checkpoints import load_lightning_module

#: The attacks that come from torchattacks (the ``eval`` extra).
PEERS = ("autoattack", "autoattack-fast", "apgd-ce", "apgd-t", "fab", "square")
PEER_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class EvaluateModelsSettings:
    """Which models to evaluate, on which examples, at which budgets, with which attacks.

    The models are ``checkpoints`` (this project's classifiers, or any LightningModule's
    with ``target``), or else ``model`` with the weights of ``state_dict``. The ``state_dict``
    is optional: without it the model is evaluated with the weights its factory gives it,
    which are random initial weights unless the factory loads trained ones itself, and
    :func:`evaluate_models` says so through its ``report``.

    Attributes:
        epsilons: the budgets, radii of the ball in pixel units of ``[0, 1]`` images (a list
            or tuple of one or more; :func:`check_settings` refuses those not positive and
            finite).
        checkpoints: checkpoint files, each a model named after its run
            (:func:`analysis.transfer.checkpoint_names`).
        target: with ``checkpoints``: the LightningModule class (``PKG.MOD:CLASS``) they
            were saved from.
        model: ``MODULE:FACTORY`` (:func:`pipelines.models.build_model`): any ``nn.Module``.
        state_dict: with ``model``: the weights to load (a state dict, or a Lightning
            checkpoint's: :func:`pipelines.models.load_weights`); ``None``: the factory's own.
        attacks: names of :data:`analysis.evaluation.ATTACKS` (a list or tuple of one or more),
            each at most once.
        norm: ``linf`` or ``l2``.
        split: the examples' split (``train``, ``val``, ``test``, ``p1``, ``p2``,
            ``full_train``).
        subset: the first ``subset`` examples only, at least 1 (``None``: all).
        dataset: the data set (``None``: the checkpoints', else ``mnist``).
        data_dir: the data folder (``None``: ``$INTRIGUING_DATA_DIR``, else ``data``).
        mean, std: the per-channel normalisation the model expects (its inputs stay
            ``[0, 1]`` pixels); both or neither.
        steps: APGD and FAB iterations (like the other counts, at least 1).
        pgd_steps, pgd_restarts: our PGD's iterations and random restarts.
        square_queries: Square's query budget.
        peer_dtype: the torchattacks attacks' compute dtype, ``float64`` or ``float32``.
        large_epsilon: the budget at which (nearly) 100% error is expected (``None``: 0.5
            L-inf, ``0.5 * sqrt(pixels)`` L2).
        batch_size: examples per attack call.
        seed: the seed of every random attack.
        device: where the models and attacks run.
        progress: show progress bars.

    Raises:
        TypeError: a field of the wrong kind, named with its value: a ``str`` where a
            sequence is expected (``attacks="pgd"``: give ``["pgd"]``), a single number for
            ``epsilons``, a float for a count.
        ValueError: a count below 1 (``"EvaluateModelsSettings: subset=0: must be at least 1
            (or None: the whole split)"``), no budget or no attack, an unknown ``split``. The
            command line's option types refuse the same values before the settings are
            built; what the names and budgets mean is checked by :func:`check_settings`.
    """

    epsilons: Sequence[float]
    checkpoints: Sequence[str | Path] = ()
    target: str | None = None
    model: str | None = None
    state_dict: str | Path | None = None
    attacks: Sequence[str] = ("autoattack",)
    norm: str = "linf"
    split: str = "test"
    subset: int | None = None
    dataset: str | None = None
    data_dir: str | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    steps: int = 100
    pgd_steps: int = 40
    pgd_restarts: int = 5
    square_queries: int = 5000
    peer_dtype: str = "float64"
    large_epsilon: float | None = None
    batch_size: int = 500
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_sequence(owner, "epsilons", self.epsilons, items="number", nonempty=True)
        check_sequence(owner, "checkpoints", self.checkpoints, items="path")
        check_text(owner, "target", self.target, optional=True)
        check_text(owner, "model", self.model, optional=True)
        check_text(owner, "state_dict", self.state_dict, optional=True, path=True)
        check_sequence(owner, "attacks", self.attacks, items="str", nonempty=True)
        check_text(owner, "norm", self.norm)
        check_choice(owner, "split", self.split, TENSOR_SPLITS)
        check_count(owner, "subset", self.subset, none="the whole split")
        check_text(owner, "dataset", self.dataset, optional=True)
        check_text(owner, "data_dir", self.data_dir, optional=True, path=True)
        check_sequence(owner, "mean", self.mean, items="number", optional=True)
        check_sequence(owner, "std", self.std, items="number", optional=True)
        for name in ("steps", "pgd_steps", "pgd_restarts", "square_queries", "batch_size"):
            check_count(owner, name, getattr(self, name))
        check_text(owner, "peer_dtype", self.peer_dtype)
        check_number(owner, "large_epsilon", self.large_epsilon, optional=True)
        check_number(owner, "seed", self.seed, whole=True)

    def attack_settings(self) -> AttackSettings:
        """How hard the attacks try (:class:`analysis.evaluation.AttackSettings`); a
        ``ValueError`` names a setting out of range."""
        if self.peer_dtype not in PEER_DTYPES:
            raise ValueError(f"peer_dtype={self.peer_dtype!r}: expected float32 or float64")
        return AttackSettings(
            steps=self.steps,
            pgd_steps=self.pgd_steps,
            pgd_restarts=self.pgd_restarts,
            square_queries=self.square_queries,
            peer_dtype=PEER_DTYPES[self.peer_dtype],
            batch_size=self.batch_size,
            seed=self.seed,
        )


def check_settings(settings: EvaluateModelsSettings) -> None:
    """Refuse, in one line each, what cannot run, before any model or data is loaded.

    Raises:
        ConfigError: an unknown or repeated attack, an unknown norm, a budget that is not
            positive and finite, an unknown ``peer_dtype``, ``mean`` without ``std`` (or the
            reverse), no model, ``state_dict`` with ``checkpoints``, a missing checkpoint,
            ``target`` without ``checkpoints``, or torchattacks missing for an attack that
            needs it. The messages name the command's options (``--epsilon 0.0: ...``).
    """
    attacks = list(settings.attacks)
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ConfigError(f"--attack {unknown[0]}: unknown attack (known: {', '.join(ATTACKS)})")
    if len(set(attacks)) != len(attacks):
        raise ConfigError(f"--attack {' '.join(attacks)}: each attack at most once")
    if settings.norm not in NORMS:
        raise ConfigError(f"--norm {settings.norm}: expected one of {', '.join(NORMS)}")
    bad = [e for e in settings.epsilons if not (e > 0 and math.isfinite(e))]
    if bad:
        raise ConfigError(f"--epsilon {bad[0]}: budgets must be positive and finite")
    if settings.peer_dtype not in PEER_DTYPES:
        raise ConfigError(f"--peer-dtype {settings.peer_dtype}: expected float32 or float64")
    if (settings.mean is None) != (settings.std is None):
        raise ConfigError("--mean and --std go together")
    if settings.checkpoints:
        if settings.state_dict:
            raise ConfigError("--state-dict goes with --model, not --checkpoint")
        for path in settings.checkpoints:
            if not Path(path).is_file():
                raise ConfigError(f"--checkpoint {path}: no such file")
    elif settings.target:
        raise ConfigError("--target goes with --checkpoint (the class the checkpoints hold)")
    elif not settings.model:
        raise ConfigError("--checkpoint or --model: give the models to evaluate")
    if any(name in PEERS for name in attacks):
        try:
            import_torchattacks()
        except ImportError as error:
            raise ConfigError(f"--attack {' '.join(attacks)}: {error}") from None


def load_models(
    settings: EvaluateModelsSettings, *, report: Callable[[str], None] = print
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]], dict[str, Any]]:
    """The models by name, in eval mode, where each came from (``results.json``'s
    ``source``), and the data settings that select their examples (the checkpoints' data
    set, validation hold-out and P1/P2 halves: :func:`pipelines.transfer.data_settings`).

    ``report`` is told, in one line each, when a ``model`` comes without a ``state_dict``
    (evaluated with its factory's weights: random ones unless the factory loads its own) and
    when a state dict's key prefix is stripped (:func:`pipelines.models.load_weights`)."""
    if settings.checkpoints:
        paths = [Path(p) for p in settings.checkpoints]
        names = checkpoint_names(paths)
        models: dict[str, nn.Module] = {}
        sources: dict[str, dict[str, Any]] = {}
        for name, path in zip(names, paths, strict=True):
            if settings.target:
                models[name] = load_lightning_module(settings.target, path)
            else:
                models[name] = load_classifier(path).network.eval()
            sources[name] = {"checkpoint": str(path), "target": settings.target}
        return models, sources, data_settings(paths, settings.dataset)
    spec = str(settings.model)
    model = build_model(spec)  # ConfigError naming the option
    if settings.state_dict:
        load_weights(model, Path(settings.state_dict), report=report)
    else:
        report(
            f"warning: --model {spec}: no --state-dict given: evaluating the factory's initial "
            "weights (random unless the factory loads trained ones)"
        )
    state_dict = None if settings.state_dict is None else str(settings.state_dict)
    return (
        {spec: model.eval()},
        {spec: {"model": spec, "state_dict": state_dict}},
        {"name": settings.dataset or "mnist", "val_size": 0},
    )


def load_examples(data: dict[str, Any], settings: EvaluateModelsSettings) -> tuple[Tensor, Tensor]:
    """The ``split``'s images ``(N, C, H, W)`` in ``[0, 1]`` and labels ``(N,)`` of the data
    set ``data`` describes, the first ``subset``."""
    data_dir = settings.data_dir or os.environ.get("INTRIGUING_DATA_DIR", "data")
    module = build_datamodule({**data, "data_dir": data_dir, "on_device": False})
    return split_examples(module, settings.split, settings.subset)


@dataclass(frozen=True)
class ModelEvaluations:
    """:func:`evaluate_models`' result.

    Attributes:
        settings: what was asked for.
        described: the examples, in words (``"mnist test, 1000 examples"``).
        evaluations: per model, its budgets (clean error, robust error per attack and for
            :data:`analysis.evaluation.UNION`, examples, seconds) and masking checks.
        seconds: per model, the wall time of its evaluation.
        sources: per model, where it came from (checkpoint and target, or model and weights).
    """

    settings: EvaluateModelsSettings
    described: str
    evaluations: dict[str, RobustnessEvaluation]
    seconds: dict[str, float]
    sources: dict[str, dict[str, Any]]

    def record(self) -> dict[str, Any]:
        """``results.json``: the settings, and per model its budgets and masking checks."""
        s = self.settings
        return {
            "data": self.described,
            "split": s.split,
            "subset": s.subset,
            "norm": s.norm,
            "epsilons": sorted(s.epsilons),
            "attacks": list(s.attacks),
            "settings": {
                "steps": s.steps,
                "pgd_steps": s.pgd_steps,
                "pgd_restarts": s.pgd_restarts,
                "square_queries": s.square_queries,
                "peer_dtype": s.peer_dtype,
                "seed": s.seed,
            },
            "models": {
                name: {
                    "source": self.sources[name],
                    **evaluation.to_dict(),
                    "seconds": self.seconds[name],
                    "masking_violations": [c.name for c in evaluation.masking if c.violated],
                }
                for name, evaluation in self.evaluations.items()
            },
        }

    def markdown(self) -> str:
        """The results table (robust error per attack and the union, per model and budget)
        and each model's masking checks, as markdown (``results.md``)."""
        evaluations = self.evaluations
        rows = [row for name, ev in evaluations.items() for row in evaluation_rows(name, ev)]
        header = evaluation_header(list(self.settings.attacks))
        text = markdown_table(header, rows, right_aligned=[False] + [True] * (len(header) - 1))
        for name, evaluation in evaluations.items():
            text += f"\nGradient-masking checks, {name}:\n\n"
            text += "".join(f"- {check.line()}\n" for check in evaluation.masking)
        return text


def evaluate_models(
    settings: EvaluateModelsSettings, *, report: Callable[[str], None] = print
) -> ModelEvaluations:
    """Clean and robust error of each model at each of ``settings.epsilons``, per attack and
    for their union (an example counts as wrong when it is misclassified clean or any attack
    fools it within the budget), with the masking checks
    (:func:`analysis.evaluation.evaluate_robustness`). ``report`` is told, in one line, what
    is evaluated once the models and examples are loaded, and before that any warning of
    :func:`load_models` (a ``model`` without ``state_dict``).

    Raises:
        ConfigError: settings that cannot run (:func:`check_settings`), or a ``model`` or
            ``state_dict`` that cannot be built or loaded.
        CheckpointError: an unreadable checkpoint, checkpoints of different data sets, or a
            model that cannot take the examples or the ``mean``/``std`` (named).
        DataSourceError: data that cannot be found or fetched.
    """
    check_settings(settings)
    models, sources, data = load_models(settings, report=report)
    images, labels = load_examples(data, settings)
    attack_settings = settings.attack_settings()
    described = f"{data['name']} {settings.split}, {len(labels)} examples"
    report(
        f"evaluate: {len(models)} model(s), {described}, {settings.norm} epsilon "
        f"{' '.join(f'{e:g}' for e in sorted(settings.epsilons))}, "
        f"attacks {' '.join(settings.attacks)}"
    )
    evaluations: dict[str, RobustnessEvaluation] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        started = time.perf_counter()
        try:
            evaluations[name] = evaluate_robustness(
                model.to(settings.device),
                images,
                labels,
                attacks=list(settings.attacks),
                epsilons=list(settings.epsilons),
                norm=settings.norm,
                settings=attack_settings,
                mean=None if settings.mean is None else list(settings.mean),
                std=None if settings.std is None else list(settings.std),
                large=settings.large_epsilon,
                progress=settings.progress,
                description=name,
            )
        except ValueError as error:  # examples the model cannot take, mean/std that do not fit
            raise CheckpointError(f"{name}: {error}") from None
        seconds[name] = time.perf_counter() - started
    return ModelEvaluations(settings, described, evaluations, seconds, sources)


@dataclass(frozen=True)
class ResultFiles:
    """What :func:`write_results` wrote: ``results.json``, ``results.md`` and the robust error
    plot (``robust_error.png``)."""

    json: Path
    markdown: Path
    plot: Path


def write_results(results: ModelEvaluations, out: str | Path) -> ResultFiles:
    """Write :meth:`ModelEvaluations.record` (``results.json``), :meth:`~ModelEvaluations.markdown`
    (``results.md``) and the robust error against epsilon per model
    (``robust_error.png``; :func:`analysis.evaluation.robust_error_figure`) into ``out``
    (made if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results.record(), indent=2) + "\n")
    (out / "results.md").write_text(results.markdown())
    figure = robust_error_figure(results.evaluations, title=results.described)
    plot = save_figure(figure, out / "robust_error.png")
    return ResultFiles(out / "results.json", out / "results.md", plot)


def log_results(results: ModelEvaluations, plot: Path, tracking: AnalysisTracking) -> None:
    """The results table, the plot and each model's union error per budget (run summary:
    ``NAME/robust_error@EPS``, ``NAME/clean_error``, ``NAME/masking_violations``) to a W&B
    run of job type ``evaluate`` when ``tracking.enabled``; the settings are its config."""
    record = results.record()
    config = {key: value for key, value in record.items() if key != "models"}
    attacks = list(results.settings.attacks)
    with analysis_run(tracking, job_type="evaluate", config=config) as wandb_run:
        if wandb_run is None:
            return
        import wandb

        columns = ["model", "epsilon", "clean_error", *attacks, UNION, "examples", "seconds"]
        data = [
            [
                name,
                b.epsilon,
                b.clean_error,
                *(b.robust_error[a] for a in attacks),
                b.robust_error[UNION],
                b.examples,
                b.seconds,
            ]
            for name, ev in results.evaluations.items()
            for b in ev.budgets
        ]
        wandb_run.log(
            {
                "evaluate/results": wandb.Table(columns=columns, data=data),
                "evaluate/robust_error": wandb.Image(str(plot)),
            }
        )
        for name, ev in results.evaluations.items():
            for b in ev.budgets:
                wandb_run.summary[f"{name}/robust_error@{b.epsilon:g}"] = b.robust_error[UNION]
                wandb_run.summary[f"{name}/clean_error"] = b.clean_error
            wandb_run.summary[f"{name}/masking_violations"] = [
                c.name for c in ev.masking if c.violated
            ]
