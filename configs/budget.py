"""Typed budgets of ``intriguing reproduce`` (``configs/reproduce/NAME.yaml``).

A budget says how much of the paper's MNIST study is run: how long each model trains, how
many training images Table 1's minimum distortion is measured on, how many test images the
transfer tables use, which backfeed variants the adversarial-training comparison trains and
over how many seeds, and the
settings of the unit and spectral analyses. ``quick`` is a reduced setting that finishes in
half an hour on two CPU cores; ``full`` is the paper's scale. A budget file is merged into
:class:`ReproduceBudget`: an unknown key or a value of the wrong type raises
:class:`~configs.compose.ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intriguing.configs.compose import (
    CONFIG_ROOT,
    ConfigError,
    _describe,
    _load_yaml,
    attack_sections,
    available,
    check_attack,
)
from intriguing.configs.schema import ATTACK, AttackConfig, lbfgs

BUDGET_GROUP = "reproduce"


@dataclass
class TrainingBudget:
    """How the models are trained: ``key=value`` overrides for every training run, then
    per experiment (``configs/experiment/NAME.yaml``), e.g. fewer epochs."""

    overrides: list[str] = field(default_factory=list)
    experiments: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class DistortionBudget:
    """Tables 1 and 3's last column: the average minimum distortion that brings a model's
    accuracy on its training set to 0%, on the first ``examples`` images of the part it was
    trained on (null: all of them)."""

    examples: int | None = 1000
    attack: AttackConfig = field(default_factory=lbfgs, metadata=ATTACK)
    batch_size: int = 500


@dataclass
class TransferBudget:
    """Tables 2 and 4: adversarial examples made for the first ``examples`` test images
    (null: the whole test set) and evaluated on every model."""

    examples: int | None = 1000
    attack: AttackConfig = field(default_factory=lbfgs, metadata=ATTACK)
    grid_examples: int = 6
    batch_size: int = 500
    seed: int = 0


@dataclass
class AdversarialTrainingBudget:
    """Section 4.2: each of ``experiments`` (variants with the backfeed callback, e.g. the
    paper's L-BFGS pools and a cheaper FGSM pool) and the one run they share without it
    (``pipelines.train.baseline_config``), once per seed. The variants must differ only in
    their backfeed settings, so that every one is compared with the same baseline. Clean
    and adversarial test error and minimum distortion come from the runs' ``evaluation``
    section."""

    experiments: list[str] = field(
        default_factory=lambda: ["backfeed-fc100", "backfeed-fc100-fgsm"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class UnitsBudget:
    """Section 3: units versus random directions of ``layer`` of ``experiment``'s network,
    on the first ``images`` test images (null: all)."""

    experiment: str = "conv"
    layer: str = "fc1"
    directions: int = 100
    top_k: int = 8
    images: int | None = None
    rows: int = 6
    seed: int = 0


@dataclass
class SpectralBudget:
    """Table 5's layout for the study's networks: each layer's upper Lipschitz bound.

    ``models``: experiments of the study whose bounds are listed; ``adversarial_training``:
    also the first seed's network without backfeeding and each backfeed variant's network;
    ``backfeed_experiment``: an experiment with the backfeed callback (e.g.
    ``backfeed-conv``) trained as well and listed after the others, the before/after of
    backfeeding for the unit analysis's net.
    """

    models: list[str] = field(default_factory=lambda: ["conv"])
    adversarial_training: bool = True
    backfeed_experiment: str | None = None


@dataclass
class ReproduceBudget:
    """A whole budget: what is trained and measured, and how much of it."""

    name: str = ""
    description: str = ""
    training: TrainingBudget = field(default_factory=TrainingBudget)
    distortion: DistortionBudget = field(default_factory=DistortionBudget)
    transfer: TransferBudget = field(default_factory=TransferBudget)
    adversarial_training: AdversarialTrainingBudget = field(
        default_factory=AdversarialTrainingBudget
    )
    units: UnitsBudget = field(default_factory=UnitsBudget)
    spectral: SpectralBudget = field(default_factory=SpectralBudget)


def available_budgets() -> list[str]:
    """Names of the shipped budgets (``configs/reproduce/*.yaml``)."""
    return available(BUDGET_GROUP)


def budget_path(name: str) -> Path:
    """The file of budget ``name``: a shipped preset, or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = CONFIG_ROOT / BUDGET_GROUP / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"budget {name!r}: no such preset or file (available: {', '.join(available_budgets())})"
        )
    return path


def load_budget(name: str) -> ReproduceBudget:
    """The validated budget ``name`` (``quick``, ``full``, or a YAML file)."""
    path = budget_path(name)
    content = _load_yaml(path)
    content.setdefault("name", path.stem)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ReproduceBudget), content)
        for key in attack_sections(ReproduceBudget):
            section, _, attack = key.rpartition(".")
            merged[section][attack] = check_attack(merged[section][attack], key, str(path))
        budget = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, str(path))) from None
    assert isinstance(budget, ReproduceBudget)
    _check(budget, path)
    return budget


def _check(budget: ReproduceBudget, path: Path) -> None:
    """Ranges the types cannot express; the message names the key."""
    positive = {
        "distortion.examples": budget.distortion.examples,
        "distortion.batch_size": budget.distortion.batch_size,
        "transfer.examples": budget.transfer.examples,
        "transfer.batch_size": budget.transfer.batch_size,
        "units.directions": budget.units.directions,
        "units.top_k": budget.units.top_k,
        "units.images": budget.units.images,
        "units.rows": budget.units.rows,
    }
    for key, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"{key}={value}: must be at least 1 ({path})")
    if budget.transfer.grid_examples < 1:
        raise ConfigError(f"transfer.grid_examples: must be at least 1 ({path})")
    section = budget.adversarial_training
    if not section.experiments:
        raise ConfigError(
            f"adversarial_training.experiments: give at least one backfeed experiment ({path})"
        )
    if len(set(section.experiments)) != len(section.experiments):
        raise ConfigError(f"adversarial_training.experiments: experiments repeat ({path})")
    if not section.seeds:
        raise ConfigError(f"adversarial_training.seeds: give at least one seed ({path})")
    if len(set(section.seeds)) != len(section.seeds):
        raise ConfigError(f"adversarial_training.seeds: seeds repeat ({path})")
    if budget.distortion.attack["name"] != "lbfgs":
        raise ConfigError(
            f"distortion.attack.name={budget.distortion.attack['name']}: Table 1's minimum "
            f"distortion is measured with the paper's L-BFGS attack ({path})"
        )
    for key, attack in (
        ("distortion", budget.distortion.attack),
        ("transfer", budget.transfer.attack),
    ):
        if attack["layer"] is not None:
            raise ConfigError(f"{key}.attack.layer: the tables attack the input (null) ({path})")
    experiments = set(available("experiment"))
    for key in budget.training.experiments:
        if key not in experiments:
            raise ConfigError(f"training.experiments.{key}: no such experiment preset ({path})")
    named = [
        *(("adversarial_training.experiments", name) for name in section.experiments),
        ("units.experiment", budget.units.experiment),
        *(("spectral.models", model) for model in budget.spectral.models),
    ]
    if budget.spectral.backfeed_experiment is not None:
        named.append(("spectral.backfeed_experiment", budget.spectral.backfeed_experiment))
    for key, experiment in named:
        if experiment not in experiments:
            raise ConfigError(f"{key}={experiment}: no such experiment preset ({path})")
