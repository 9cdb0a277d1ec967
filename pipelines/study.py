"""The paper's MNIST study, step by step: what ``intriguing reproduce`` runs.

:func:`plan_study` composes every training run a budget asks for (and so checks all of them
before anything is trained): the models of Table 1 (``configs/zoo/table2.yaml``) and of
Table 3 (``table4.yaml``), the adversarial-training comparison (each backfeed variant and
the one baseline they share, :func:`pipelines.train.baseline_config`, once per seed), the
network of the unit analysis and, if the budget asks, that network trained with backfeeding.
:func:`run_study` then trains what has no finished run (:func:`pipelines.zoo.ensure_run`: a run
with the same config fingerprint is reused), measures Tables 1 to 5, the adversarial-
training comparison and the unit analysis, and returns
:class:`~analysis.reproduction.StudyResults`. Adversarial sets are cached
(:class:`~analysis.transfer.AdversarialCache`), so an interrupted study that is started again
trains nothing and attacks nothing it has finished.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import torch
from omegaconf import DictConfig, OmegaConf

from intriguing.analysis.reproduction import (
    CLEAN_FIGURE,
    ModelMeasurement,
    SeedComparison,
    SpectralModel,
    StudyResults,
    TrainedRun,
    measure_model,
    recorded_figures,
)
from intriguing.analysis.robustness import ATTACK_LABELS, headline_figures
from intriguing.analysis.spectral import network_bounds
from intriguing.analysis.transfer import AdversarialCache, TransferStudy, error_rate, transfer_study
from intriguing.analysis.units import UnitAnalysis, analyse_units
from intriguing.attacks.registry import attack_entry
from intriguing.configs import ConfigError, compose, to_container
from intriguing.configs.budget import ReproduceBudget
from intriguing.configs.schema import AttackConfig
from intriguing.datamodules import ImageDataModule, build_datamodule
from intriguing.pipelines.runs import fingerprint
from intriguing.pipelines.train import baseline_config
from intriguing.pipelines.units import save_outputs
from intriguing.pipelines.zoo import Zoo, ensure_run, load_zoo
from intriguing.trainers import load_classifier
from intriguing.trainers.stages import StagedNetwork

TABLE1_ZOO = "table2"  # the models of Tables 1 and 2
TABLE3_ZOO = "table4"  # the models of Tables 3 and 4
#: Overrides that change how a run is recorded or shown, not what it trains.
_BOOKKEEPING = (
    "logger",
    "trainer.enable_progress_bar",
    "trainer.progress_bar_refresh_rate",
    "output_dir",
    "run_dir",
    "name",
    "checkpoint",
)


@dataclass
class PlannedRun:
    """One training run of the study: its key in the study, experiment and config."""

    key: str
    experiment: str
    config: DictConfig
    name: str = ""  # the model's name in the tables


@dataclass
class BackfeedVariant:
    """A backfeed experiment of the adversarial-training comparison: its run per seed (in
    the budget's order of seeds), its pool in a few words and in full."""

    experiment: str
    runs: list[PlannedRun]
    description: str
    settings: str


@dataclass
class StudyPlan:
    """Every training run a budget asks for, composed and checked.

    ``variants`` are the adversarial-training comparison's backfeed experiments and
    ``baselines`` the run without backfeeding that all of them share, one per seed
    (``budget.adversarial_training.seeds``).
    """

    budget: ReproduceBudget
    overrides: list[str]
    table1: list[PlannedRun]
    table3: list[PlannedRun]
    baselines: list[PlannedRun]
    variants: list[BackfeedVariant]
    units: PlannedRun
    units_backfeed: PlannedRun | None = None
    trained: dict[str, TrainedRun] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return list(self.budget.adversarial_training.seeds)

    def runs(self) -> list[PlannedRun]:
        """Each run once, in training order (seed by seed: the baseline, then each variant)."""
        ordered = [*self.table1, *self.table3]
        for index, baseline in enumerate(self.baselines):
            ordered += [baseline, *(variant.runs[index] for variant in self.variants)]
        ordered.append(self.units)
        if self.units_backfeed is not None:
            ordered.append(self.units_backfeed)
        unique: dict[str, PlannedRun] = {}
        for run in ordered:
            unique.setdefault(run.key, run)
        return list(unique.values())

    def by_experiment(self, experiment: str) -> PlannedRun | None:
        for run in [*self.table1, *self.table3, self.units]:
            if run.experiment == experiment:
                return run
        return None


@dataclass(frozen=True)
class RunComposer:
    """Composes the study's runs: the budget's overrides for every run, then its overrides
    for the experiment, then ``extra`` (the command line's, and the W&B group), then the
    run's role as its W&B job type, then ``more``."""

    budget: ReproduceBudget
    extra: tuple[str, ...] = ()

    def run(
        self, experiment: str, *more: str, role: str, key: str | None = None, name: str = ""
    ) -> PlannedRun:
        """The run of ``experiment`` (keyed ``key``, else the experiment's name)."""
        words = [
            f"experiment={experiment}",
            *self.budget.training.overrides,
            *self.budget.training.experiments.get(experiment, []),
            *self.extra,
            f"logger.job_type={role}",
            *more,
        ]
        return PlannedRun(key or experiment, experiment, compose(words), name or experiment)

    def zoo_runs(self, zoo: Zoo, role: str) -> list[PlannedRun]:
        """One run per model of ``zoo``, named as its tables name it."""
        return [self.run(m.experiment, role=role, name=m.name) for m in zoo.models]

    def variant(self, experiment: str) -> BackfeedVariant:
        """A backfeed experiment of the adversarial-training comparison, one run per seed.

        Raises:
            ConfigError: when its backfeed callback is off.
        """
        seeds = self.budget.adversarial_training.seeds
        runs = [
            self.run(experiment, f"seed={seed}", role="backfeed", key=f"{experiment}/seed{seed}")
            for seed in seeds
        ]
        backfeed = runs[0].config.backfeed
        if not backfeed.enabled:
            raise ConfigError(
                f"adversarial_training.experiments: {experiment}'s backfeed callback is off "
                "(backfeed.enabled=false), there is nothing to compare"
            )
        return BackfeedVariant(
            experiment, runs, backfeed_text(backfeed), backfeed_settings(backfeed)
        )


def plan_study(
    budget: ReproduceBudget, overrides: Sequence[str] = (), *, group: str | None = None
) -> StudyPlan:
    """Compose every run of the study (:class:`RunComposer`: the budget's overrides for every
    run, then its overrides for the experiment, then ``overrides`` (the command line's), then
    ``logger.group=group`` and the run's role as its W&B job type: ``table1``, ``table3``,
    ``backfeed``, ``baseline``, ``units``, ``units-backfeed``).

    Raises:
        ConfigError: a run that does not compose, a compared experiment without backfeeding,
            variants that cannot share one baseline, a spectral model not in the study.
    """
    composer = RunComposer(budget, (*overrides, *([f"logger.group={group}"] if group else [])))
    section = budget.adversarial_training
    variants = [composer.variant(experiment) for experiment in section.experiments]
    baselines = [
        shared_baseline([variant.runs[index] for variant in variants], seed)
        for index, seed in enumerate(section.seeds)
    ]
    plan = StudyPlan(
        budget,
        list(overrides),
        composer.zoo_runs(load_zoo(TABLE1_ZOO), "table1"),
        composer.zoo_runs(load_zoo(TABLE3_ZOO), "table3"),
        baselines,
        variants,
        composer.run(budget.units.experiment, role="units"),
    )
    plan.units = plan.by_experiment(budget.units.experiment) or plan.units
    if budget.spectral.backfeed_experiment is not None:
        plan.units_backfeed = composer.run(
            budget.spectral.backfeed_experiment, role="units-backfeed"
        )
        if not plan.units_backfeed.config.backfeed.enabled:
            raise ConfigError(
                f"spectral.backfeed_experiment={budget.spectral.backfeed_experiment}: its "
                "backfeed callback is off (backfeed.enabled=false)"
            )
    for model in budget.spectral.models:
        if plan.by_experiment(model) is None:
            raise ConfigError(
                f"spectral.models: {model} is not a model of the study (its experiments: "
                + ", ".join(run.experiment for run in [*plan.table1, *plan.table3, plan.units])
                + ")"
            )
    return plan


def shared_baseline(runs: Sequence[PlannedRun], seed: int) -> PlannedRun:
    """The run without backfeeding that every variant in ``runs`` (one seed's runs) is
    compared with: :func:`pipelines.train.baseline_config` of the first. The others' baselines
    must train the same (equal fingerprints once their switched-off ``backfeed`` and
    ``transfer`` sections are set aside), else the variants would not share one baseline
    and the error names the keys in which they differ."""
    first = runs[0]
    reference = baseline_config(first.config)
    for run in runs[1:]:
        other = baseline_config(run.config)
        other.name = reference.name
        other.backfeed = copy.deepcopy(reference.backfeed)
        other.transfer = copy.deepcopy(reference.transfer)
        if fingerprint(other) != fingerprint(reference):
            ours, theirs = _leaves(to_container(reference)), _leaves(to_container(other))
            keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            raise ConfigError(
                f"adversarial_training.experiments: {first.experiment} and {run.experiment} "
                "are compared with one baseline, the same training without backfeeding, so "
                "they may differ only in their backfeed settings; they also differ in "
                + ", ".join(f"{key} ({ours.get(key)} and {theirs.get(key)})" for key in keys)
                + " (give both the same training overrides in the budget)"
            )
    return PlannedRun(f"{reference.name}/seed{seed}", first.experiment, reference, reference.name)


def _leaves(container: Any, prefix: str = "") -> dict[str, Any]:
    """``{"trainer.max_epochs": 15, ...}``: the leaves of a nested config container."""
    if not isinstance(container, dict) or not container:
        return {prefix: container}
    found: dict[str, Any] = {}
    for key, value in container.items():
        found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def backfeed_text(backfeed: DictConfig) -> str:
    """A backfeed config's pool in a few words: ``L-BFGS pools at input, fc1 and fc2, taking
    turns, refreshed every 50 steps``, ``FGSM pool at input, refreshed every step``."""
    layers = list(backfeed.layers)
    where = ", ".join(layers[:-1]) + f" and {layers[-1]}" if len(layers) > 1 else layers[0]
    pools = "pools" if len(layers) > 1 else "pool"
    turns = ", taking turns" if backfeed.alternate and len(layers) > 1 else ""
    return (
        f"{attack_entry(str(backfeed.generator.name)).label} {pools} at {where}{turns}, "
        f"refreshed {_every_n_steps(backfeed.refresh_every_n_steps)}"
    )


def backfeed_settings(backfeed: DictConfig) -> str:
    """A backfeed config in full: generator, layers, pool size, refresh schedule, mix."""
    layers = list(backfeed.layers)
    return (
        f"{attack_text(attack_settings(backfeed.generator))} examples at "
        f"{', '.join(layers)}"
        + (" (one pool per step, taking turns)" if backfeed.alternate and len(layers) > 1 else "")
        + f"; {backfeed.pool_size:,} examples per pool, {100 * backfeed.refresh_fraction:g}% of "
        f"them replaced {_every_n_steps(backfeed.refresh_every_n_steps)}; mix ratio "
        f"{backfeed.mix_ratio:g}"
    )


def _every_n_steps(steps: int) -> str:
    return "every step" if steps == 1 else f"every {steps} steps"


# ------------------------------------------------------------------------------ steps


class StepTimer:
    """Wall time of each named step, in order."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.seconds: dict[str, float] = {}
        self.report = report

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.report(f"== {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started
            self.report(f"== {name}: {self.seconds[name]:.0f} s")


def attack_settings(attack: AttackConfig | DictConfig) -> dict[str, Any]:
    """The name and the settings given of an attack config, without those every attack takes
    (:attr:`attacks.registry.AttackEntry.own_keys`; the rest would only split the cache)."""
    container = OmegaConf.to_container(OmegaConf.structured(attack), enum_to_str=True)
    assert isinstance(container, dict)
    name = str(container["name"])
    return {
        "name": name,
        **{k: container[k] for k in attack_entry(name).own_keys if container.get(k) is not None},
    }


def attack_text(attack: dict[str, Any]) -> str:
    """``L-BFGS (search_steps 4)``, ``FGSM (epsilon 0.1, linf)``."""
    settings = ", ".join(f"{k} {v}" for k, v in attack.items() if k != "name")
    return attack_entry(attack["name"]).label + (f" ({settings})" if settings else "")


class StudyData:
    """The data sets of the study's runs, loaded once per distinct data configuration and
    kept on the CPU; the test set always whole."""

    IGNORED = ("batch_size", "eval_batch_size", "on_device", "test_subset", "download_timeout")

    def __init__(self) -> None:
        self._modules: dict[str, ImageDataModule] = {}

    def module(self, config: DictConfig) -> ImageDataModule:
        data = {k: v for k, v in to_container(config)["data"].items() if k not in self.IGNORED}
        key = json.dumps(data, sort_keys=True)
        if key not in self._modules:
            module = build_datamodule({**data, "on_device": False})
            module.prepare_data()
            module.setup("test")
            self._modules[key] = module
        return self._modules[key]


class StudyRunner:
    """The steps of a study on one device: training what has no finished run, then each
    measurement, with the data sets (:class:`StudyData`), the adversarial cache and the
    trained networks shared between steps. ``report`` takes each line of progress."""

    def __init__(
        self,
        plan: StudyPlan,
        *,
        cache_dir: Path,
        device: torch.device,
        progress: bool = False,
        report: Callable[[str], None] = print,
    ) -> None:
        self.plan = plan
        self.cache = AdversarialCache(cache_dir)
        self.device = device
        self.progress = progress
        self.report = report
        self.data = StudyData()
        self._figures: dict[str, dict[str, float]] = {}

    def train(self) -> None:
        """Train every run of the plan that has no finished run (:func:`ensure_run`)."""
        runs = self.plan.runs()
        for index, run in enumerate(runs, start=1):
            summary, reused = ensure_run(
                run.config, step=f"[{index}/{len(runs)}] {run.key}", report=self.report
            )
            self.plan.trained[run.key] = TrainedRun(
                key=run.key,
                experiment=run.experiment,
                run_dir=str(summary.run_dir),
                checkpoint=str(summary.checkpoint),
                reused=reused,
                seconds=summary.seconds,
                logs=summary.logs,
                metrics=dict(summary.metrics),
            )

    def network(self, run: PlannedRun) -> StagedNetwork:
        """The trained network of ``run`` (after :meth:`train`), in eval mode on the device."""
        module = self.data.module(run.config)
        path = self.plan.trained[run.key].checkpoint
        classifier = load_classifier(path, input_shape=module.input_shape)
        return classifier.network.eval().to(self.device)

    def measure(
        self, runs: list[PlannedRun]
    ) -> tuple[list[ModelMeasurement], dict[str, StagedNetwork]]:
        """Tables 1 and 3: each run's training and test error and minimum distortion on the
        first training images; returns the measurements and the networks by model name."""
        section = self.plan.budget.distortion
        attack = attack_settings(section.attack)
        measurements, networks = [], {}
        for run in runs:
            module = self.data.module(run.config)
            networks[run.name] = self.network(run)
            measurement = measure_model(
                networks[run.name],
                name=run.name,
                experiment=run.experiment,
                train=module.tensors("train"),
                test=module.tensors("test"),
                attack=attack,
                examples=section.examples,
                checkpoint=self.plan.trained[run.key].checkpoint,
                cache=self.cache,
                batch_size=section.batch_size,
                progress=self.progress,
            )
            how = "from the cache" if measurement.cached else "attacked"
            self.report(
                f"{run.name}: train error {measurement.train_error:.2%}, test error "
                f"{measurement.test_error:.2%}, min distortion {measurement.distortion:.4f} "
                f"({measurement.distortion_examples} training images, {how})"
            )
            measurements.append(measurement)
        return measurements, networks

    def transfer(
        self,
        runs: list[PlannedRun],
        networks: dict[str, StagedNetwork],
        table: int,
        split_distortions: dict[str, float],
    ) -> TransferStudy:
        """Table 2 (``table=2``) or Tables 3 and 4 (``table=4``, with the P1/P2 splits) of
        ``runs``' networks, on the first test images of the budget's ``transfer`` section."""
        section = self.plan.budget.transfer
        attack = attack_settings(section.attack)
        module = self.data.module(runs[0].config)
        images, labels = module.tensors("test")
        count = len(labels) if section.examples is None else min(section.examples, len(labels))
        described = (
            f"{module.name} test, "
            + (f"all {count:,} images" if count == len(labels) else f"first {count:,} images")
            + f", {attack_text(attack)}"
        )
        splits = None
        if table == 4:
            splits = {
                "P1": module.tensors("p1"),
                "P2": module.tensors("p2"),
                "test": (images, labels),
            }
        return transfer_study(
            networks,
            images[:count],
            labels[:count],
            attack,
            table=table,
            checkpoints={run.name: self.plan.trained[run.key].checkpoint for run in runs},
            cache=self.cache,
            splits=splits,
            split_distortions=split_distortions,
            split_distortion_note="the average minimum distortion on its training images, "
            "as in Table 1",
            described=described,
            grid_examples=section.grid_examples,
            batch_size=section.batch_size,
            seed=section.seed,
            progress=self.progress,
            report=self.report,
        )

    def units(self, out: Path) -> tuple[UnitAnalysis, dict[str, Path]]:
        """Units versus random directions of the budget's ``units`` section, its figures
        written below ``out/units``; returns the analysis and the figures' paths by name.

        Raises:
            ConfigError: when the network has no layer ``units.layer``.
        """
        section = self.plan.budget.units
        run = self.plan.units
        module = self.data.module(run.config)
        images, labels = module.tensors("test")
        count = len(labels) if section.images is None else min(section.images, len(labels))
        network = self.network(run)
        if section.layer not in network.layer_names:
            raise ConfigError(
                f"units.layer={section.layer}: {run.experiment} has no such layer "
                f"(its layers: {', '.join(network.layer_names)})"
            )
        units = analyse_units(
            network,
            section.layer,
            images[:count],
            labels[:count],
            directions=section.directions,
            top_k=section.top_k,
            seed=section.seed,
            num_classes=module.num_classes,
        )
        paths = save_outputs(
            units, images[:count], labels[:count], out / "units", rows=section.rows, split="test"
        )
        self.report(units.to_markdown())
        return units, {f"units_{kind}": p for kind, p in paths.items() if p.suffix == ".png"}

    def adversarial_training(self) -> list[SeedComparison]:
        """One comparison per backfeed variant, each with the shared baseline: clean test
        error (measured here, whole test set, eval mode) and the runs' own robust error at
        each budget, FGSM error and minimum distortion (their ``evaluation`` section,
        :func:`analysis.reproduction.recorded_figures`)."""
        plan = self.plan
        comparisons = []
        for variant in plan.variants:
            runs: dict[str, list[dict[str, float]]] = {"backfeed": [], "baseline": []}
            for seed, baseline, run in zip(plan.seeds, plan.baselines, variant.runs, strict=True):
                runs["baseline"].append(self.figures(baseline, seed, "without backfeeding"))
                runs["backfeed"].append(self.figures(run, seed, variant.experiment))
            evaluation = variant.runs[0].config.evaluation  # the baseline's too (shared_baseline)
            metrics = plan.trained[variant.runs[0].key].metrics
            comparisons.append(
                SeedComparison(
                    seeds=plan.seeds,
                    runs=runs,
                    experiment=variant.experiment,
                    description=variant.description,
                    settings=variant.settings,
                    attack=evaluation_text(evaluation),
                    examples=int(metrics.get("eval/examples", 0)),
                    robust_examples=int(metrics.get("eval/robust_examples", 0)),
                )
            )
        return comparisons

    def figures(self, run: PlannedRun, seed: int, label: str) -> dict[str, float]:
        """A compared run's figures (measured once per run): its clean test error and the
        figures its own evaluation recorded; reported as one line."""
        if run.key not in self._figures:
            images, labels = self.data.module(run.config).tensors("test")
            found = {
                "test_error": error_rate(self.network(run), images, labels),
                **recorded_figures(self.plan.trained[run.key].metrics),
            }
            self._figures[run.key] = found
            shown = [CLEAN_FIGURE, *headline_figures(found)]
            self.report(
                f"seed {seed}, {label}: "
                + ", ".join(
                    f"{f.label} {found[f.key]:.2%}"
                    if f.percent
                    else f"{f.label} {found[f.key]:.4f}"
                    for f in shown
                )
            )
        return self._figures[run.key]

    def spectral(self) -> list[SpectralModel]:
        """Table 5: the upper Lipschitz bounds of the budget's ``spectral`` models, of the
        first seed's compared runs when asked, and of the units network with backfeeding."""
        plan = self.plan
        section = plan.budget.spectral
        chosen: list[tuple[PlannedRun, str]] = []
        for experiment in section.models:
            run = plan.by_experiment(experiment)
            assert run is not None  # checked by plan_study
            chosen.append((run, "without backfeeding"))
        if section.adversarial_training and plan.baselines:
            seed = plan.seeds[0]
            chosen.append((plan.baselines[0], f"seed {seed}, without backfeeding"))
            for variant in plan.variants:
                chosen.append((variant.runs[0], f"seed {seed}, {variant.description}"))
        if plan.units_backfeed is not None:
            chosen.append((plan.units_backfeed, "with backfeeding"))
        models = []
        for run, description in chosen:
            bounds = network_bounds(self.network(run))
            self.report(f"{run.key}: product of the layers' bounds {bounds.product:.4g}")
            models.append(SpectralModel(run.key, description, bounds))
        return models


def run_study(
    plan: StudyPlan,
    *,
    out: Path,
    cache_dir: Path,
    device: torch.device,
    progress: bool = False,
    report: Callable[[str], None] = print,
    commands: Sequence[str] = (),
    budget_text: str = "",
) -> StudyResults:
    """Train, measure and collect everything the report shows (see the module docstring):
    the steps of :class:`StudyRunner`, each timed."""
    budget = plan.budget
    timer = StepTimer(report)
    load = os.getloadavg()
    runner = StudyRunner(plan, cache_dir=cache_dir, device=device, progress=progress, report=report)
    with timer.step(f"Train the models ({len(plan.runs())} runs)"):
        runner.train()
    with timer.step("Tables 1 and 3: errors and minimum distortion on training images"):
        table1, table1_networks = runner.measure(plan.table1)
        table3, table3_networks = runner.measure(plan.table3)
    distortions = {m.name: m.distortion for m in table3}
    with timer.step("Table 2: cross-model generalisation"):
        table2 = runner.transfer(plan.table1, table1_networks, 2, distortions)
    with timer.step("Tables 3 and 4: cross-training-set generalisation"):
        table4 = runner.transfer(plan.table3, table3_networks, 4, distortions)
    with timer.step("Adversarial training: with and without backfeeding"):
        comparisons = runner.adversarial_training()
    with timer.step("Units versus random directions"):
        units, figures = runner.units(out)
    with timer.step("Table 5: upper Lipschitz bounds"):
        spectral = runner.spectral()
    return StudyResults(
        budget=budget.name,
        budget_text=budget_text or OmegaConf.to_yaml(OmegaConf.structured(budget)),
        departures=departures(plan),
        table1=table1,
        table2=table2,
        table3=table3,
        table4=table4,
        adversarial_training=comparisons,
        units=units,
        units_model=f"{plan.units.experiment} ({plan.units.config.model.family} network)",
        spectral=spectral,
        runs=list(plan.trained.values()),
        steps=timer.seconds,
        machine=machine(device, load),
        commands=list(commands),
        figures=figures,
    )


def evaluation_text(evaluation: DictConfig) -> str:
    """How an ``evaluation`` section measures, in words: the robust error's attacks and
    strength, the fixed-budget attack and the minimum-distortion one."""
    if not evaluation.subset:
        return "not measured (evaluation.subset=0)"
    parts = []
    attacks = list(evaluation.robust_attacks)
    if attacks and evaluation.robust_subset != 0:
        named = ", ".join(
            f"PGD ({evaluation.pgd_steps} steps, {evaluation.pgd_restarts} restarts)"
            if name == "pgd"
            else ATTACK_LABELS.get(name, name)
            for name in attacks
        )
        parts.append(
            f"robust error: per image the worst of {named} (APGD: {evaluation.robust_steps} steps)"
        )
    parts.append(f"{attack_text(attack_settings(evaluation.attack))} for the adversarial error")
    parts.append(f"{attack_text(attack_settings(evaluation.distortion_attack))} for the distortion")
    return "; ".join(parts)


def departures(plan: StudyPlan) -> list[str]:
    """How the budget departs from the paper's setting, in words (empty: paper scale)."""
    budget = plan.budget
    found: list[str] = []
    changed: dict[str, list[str]] = {}
    for run in plan.runs():
        preset = compose([f"experiment={run.experiment}"])
        words = [
            *budget.training.overrides,
            *budget.training.experiments.get(run.experiment, []),
            *plan.overrides,
        ]
        changes = changed.setdefault(run.experiment, [])
        for word in words:
            key = word.partition("=")[0].strip()
            if key.startswith(_BOOKKEEPING) or _inactive(run.config, key):
                continue
            new = OmegaConf.select(run.config, key, default=None)
            old = OmegaConf.select(preset, key, default=None)
            if new != old and f"{key}={new} (preset: {old})" not in changes:
                changes.append(f"{key}={new} (preset: {old})")
    common = [c for c in next(iter(changed.values()), []) if all(c in v for v in changed.values())]
    if common and len(changed) > 1:
        found.append("Every model trained with " + ", ".join(common))
    for experiment, changes in changed.items():
        rest = [change for change in changes if change not in common]
        if rest:
            found.append(f"`{experiment}` trained with " + ", ".join(rest))
    if budget.distortion.examples is not None:
        found.append(
            f"Tables 1 and 3: minimum distortion on the first {budget.distortion.examples:,} "
            "training images of each model (the paper: its whole training set)"
        )
    if budget.transfer.examples is not None and budget.transfer.examples < 10_000:
        found.append(
            f"Tables 2 and 4: adversarial examples made for the first "
            f"{budget.transfer.examples:,} test images (the paper: all 10,000)"
        )
    return found


def _inactive(config: DictConfig, key: str) -> bool:
    """Whether ``key`` belongs to a part of the config this run does not use."""
    unused = {
        "model.autoencoder.": config.model.family != "ae",
        "model.conv.": config.model.family != "conv",
        "backfeed.": not config.backfeed.enabled,
        "transfer.": not config.transfer.enabled,
        "spectral.": not config.spectral.enabled,
        "evaluation.": not config.evaluation.subset and key != "evaluation.subset",
    }
    return any(key.startswith(prefix) and off for prefix, off in unused.items())


def machine(device: torch.device, load_at_start: tuple[float, float, float]) -> dict[str, str]:
    """What the study ran on, and how busy the machine was (load averages)."""
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    cpus = os.cpu_count() or 0
    threads = torch.get_num_threads()
    load_now = os.getloadavg()
    return {
        "summary": f"{cpus} CPU cores, {threads} torch thread(s), {name}",
        "device": name,
        "CPU cores": str(cpus),
        "torch threads": str(threads),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average (1, 5, 15 min) at start": ", ".join(f"{v:.2f}" for v in load_at_start),
        "load average (1, 5, 15 min) at end": ", ".join(f"{v:.2f}" for v in load_now),
    }
