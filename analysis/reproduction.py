"""The measurements of the paper's MNIST study, model by model and over seeds.

Szegedy et al. (2013), Table 1 gives, per model, its training and test error and "the
minimum average distortion needed to reach 0% accuracy on the training set";
:func:`measure_model` measures exactly these on a trained network: both errors in eval mode
on the whole part of the training set the model was trained on and on the test set, and the
mean minimum distortion of the paper's L-BFGS attack over the first images of that training
part (already misclassified images count with distortion 0). The adversarial sets go through
:class:`~analysis.transfer.AdversarialCache`, so a resumed study does not attack again.

:class:`SeedComparison` holds Section 4.2's comparison for one backfeed variant: the same
training with and without adversarial backfeeding, over several seeds, as mean and spread of
each figure. A study compares several variants with one shared baseline.

:class:`StudyResults` collects everything a reproduction measured, for
:mod:`analysis.report` to render beside the paper's figures.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from intriguing.analysis.robustness import ROBUST_ERROR, Figure, headline_figures
from intriguing.analysis.spectral import SpectralBounds
from intriguing.analysis.transfer import (
    AdversarialCache,
    TransferStudy,
    adversarial_set,
    error_rate,
)
from intriguing.analysis.units import UnitAnalysis


@dataclass
class ModelMeasurement:
    """One model's row of Table 1 (or Table 3's distortion).

    Attributes:
        name: the model's name in the tables (``FC10(1e-4)``).
        experiment: the experiment preset that trained it.
        train_error, train_examples: error on the part of the training set it was trained
            on (all of it), in eval mode.
        test_error, test_examples: error on the test set.
        distortion: mean minimum distortion over the first ``distortion_examples`` images
            of the training part, over the examples the attack succeeded on (``nan``: none).
        distortion_success: fraction of those examples the attack succeeded on.
        distortions: each successful example's distortion (for histograms).
        cached: whether the adversarial set was read from the cache.
        seconds: wall time of the measurement.
    """

    name: str
    experiment: str
    train_error: float
    train_examples: int
    test_error: float
    test_examples: int
    distortion: float
    distortion_success: float
    distortion_examples: int
    distortions: Tensor
    cached: bool
    seconds: float

    def record(self) -> dict[str, Any]:
        """Plain numbers for JSON and W&B."""
        return {
            "model": self.name,
            "experiment": self.experiment,
            "train_error": self.train_error,
            "train_examples": self.train_examples,
            "test_error": self.test_error,
            "test_examples": self.test_examples,
            "min_distortion": self.distortion,
            "min_distortion_success": self.distortion_success,
            "distortion_examples": self.distortion_examples,
            "cached": self.cached,
            "seconds": self.seconds,
        }


def measure_model(
    network: nn.Module,
    *,
    name: str,
    experiment: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    attack: Mapping[str, Any],
    examples: int | None,
    checkpoint: str | Path | None = None,
    cache: AdversarialCache | None = None,
    batch_size: int = 500,
    progress: bool = False,
) -> ModelMeasurement:
    """Table 1's figures of one trained network (see the module's docstring).

    ``train`` is the part of the training set the model was trained on, ``test`` the test
    set; ``examples`` of ``train`` (``None``: all) are attacked with ``attack`` (an attack
    config mapping; the paper's is L-BFGS, which minimises the distortion itself).
    """
    started = time.perf_counter()
    count = len(train[1]) if examples is None else min(examples, len(train[1]))
    attacked = adversarial_set(
        network,
        train[0][:count],
        train[1][:count],
        attack,
        name=name,
        checkpoint=checkpoint,
        cache=cache,
        batch_size=batch_size,
        progress=progress,
    )
    success = attacked.success
    assert success is not None
    return ModelMeasurement(
        name=name,
        experiment=experiment,
        train_error=error_rate(network, *train),
        train_examples=len(train[1]),
        test_error=error_rate(network, *test),
        test_examples=len(test[1]),
        distortion=attacked.mean_distortion,
        distortion_success=float(success.float().mean()) if count else math.nan,
        distortion_examples=count,
        distortions=attacked.distortion[success].cpu(),
        cached=attacked.cached,
        seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------ seeds


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (``n - 1``; ``nan`` for one value) of a figure
    over seeds; missing values (``nan``) are left out and counted."""

    mean: float
    std: float
    count: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        present = [float(v) for v in values if not math.isnan(float(v))]
        mean = statistics.fmean(present) if present else math.nan
        std = statistics.stdev(present) if len(present) > 1 else math.nan
        return cls(mean, std, len(present), tuple(float(v) for v in values))


#: The clean test error every adversarial-training comparison starts with (whole test set).
CLEAN_FIGURE = Figure("test_error", "clean test error", True)


def recorded_figures(metrics: Mapping[str, float]) -> dict[str, float]:
    """What the comparison keeps of a run's metrics (its ``evaluation`` section): robust
    error per budget (the union and each attack), clean error on the same images and how
    many, the fixed-budget attack's error, the gradient-masking violations and the mean
    minimum distortion."""
    kept = (
        "eval/robust_clean_error",
        "eval/robust_examples",
        "eval/adversarial_error",
        "eval/masking_violations",
        "eval/min_distortion",
    )
    return {
        key: float(value)
        for key, value in metrics.items()
        if key in kept or key.startswith(f"eval/{ROBUST_ERROR}/")
    }


@dataclass
class SeedComparison:
    """One backfeed variant trained with and without adversarial backfeeding, over seeds
    (Section 4.2).

    ``runs[arm][i]`` holds the figures of seed ``seeds[i]`` for ``arm`` (``backfeed`` or
    ``baseline``): ``test_error`` and :func:`recorded_figures` of the run's metrics.
    ``experiment`` names the variant (its preset), ``description`` its pool in a few words
    (``L-BFGS pools at input, fc1, fc2``), ``settings`` in full (generator, pool size, refresh
    schedule, mix ratio); ``attack`` says how the robust and adversarial figures were
    measured, on the first ``examples`` test images (robust error on the first
    ``robust_examples`` of them).
    """

    seeds: list[int]
    runs: dict[str, list[dict[str, float]]]
    experiment: str = ""
    description: str = ""
    settings: str = ""
    attack: str = ""  # how the adversarial figures were measured
    examples: int = 0  # test images they were measured on
    robust_examples: int = 0  # test images of the robust error (the first of those)

    def spread(self, arm: str, key: str) -> Spread:
        return Spread.of([run.get(key, math.nan) for run in self.runs[arm]])

    def figures(self) -> list[Figure]:
        """The figures a table shows, in order: clean test error, then the headline figures
        (:func:`analysis.robustness.headline_figures`) that any run of either arm has."""
        keys = {key for runs in self.runs.values() for run in runs for key in run}
        return [CLEAN_FIGURE, *headline_figures(keys)]

    def records(self) -> list[dict[str, Any]]:
        return [
            {"experiment": self.experiment, "arm": arm, "seed": seed, **figures}
            for arm, runs in self.runs.items()
            for seed, figures in zip(self.seeds, runs, strict=True)
        ]


# ------------------------------------------------------------------------------ a study


@dataclass
class TrainedRun:
    """A training run of the study: reused (same config fingerprint) or trained now."""

    key: str
    experiment: str
    run_dir: str
    checkpoint: str
    reused: bool
    seconds: float
    logs: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SpectralModel:
    """A network's per-layer upper Lipschitz bounds, named as in the study."""

    name: str
    description: str
    bounds: SpectralBounds


@dataclass
class StudyResults:
    """What a reproduction measured and how, for :func:`analysis.report.build_report`.

    Attributes:
        budget: the budget's name; ``budget_text`` its YAML; ``departures`` how it departs
            from the paper's setting (empty: paper scale).
        table1: Table 1's models, measured (:func:`measure_model`).
        table2: Table 2 (:func:`analysis.transfer.transfer_study`, layout 2).
        table3: Table 3's models measured like Table 1's.
        table4: Tables 3 and 4 (:func:`analysis.transfer.transfer_study`, layout 4).
        adversarial_training: Section 4.2's comparison over seeds, one per backfeed
            variant, all against the same baseline runs.
        units: Section 3's unit analysis, ``units_model`` its network's name.
        spectral: Table 5's layout for our networks.
        runs: every training run the study used.
        steps: wall time of each step, in order.
        machine: what it ran on (CPU count, threads, torch, device, load).
        commands: the command lines that reproduce it.
        figures: PNG files of the plots, by name.
    """

    budget: str
    budget_text: str
    departures: list[str]
    table1: list[ModelMeasurement]
    table2: TransferStudy
    table3: list[ModelMeasurement]
    table4: TransferStudy
    adversarial_training: list[SeedComparison]
    units: UnitAnalysis
    units_model: str
    spectral: list[SpectralModel]
    runs: list[TrainedRun]
    steps: dict[str, float] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())
