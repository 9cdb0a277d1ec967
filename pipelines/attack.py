"""Minimum distortion of a checkpoint over a data split: the last column of Szegedy et al.
(2013)'s Table 1, as ``intriguing attack --checkpoint CKPT`` runs it. Callable from a
notebook::

    from intriguing.pipelines.attack import CheckpointAttackSettings, attack_checkpoint

    record = attack_checkpoint(CheckpointAttackSettings("runs/fc100/last.ckpt", subset=100))
    record.summary.mean_distortion, record.summary.adversarial_error

:func:`attack_checkpoint` loads the checkpoint and its examples and runs a minimum-distortion
attack (the paper's box-constrained L-BFGS by default; FGSM, PGD or Gaussian noise bisected
over their budget; :func:`attacks.minimum_distortion`) on every example, with a progress bar;
:func:`save_record` writes the record as JSON and :func:`log_record` logs it to a W&B run of
its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from intriguing.attacks import MinimumDistortion, build_attack, minimum_distortion
from intriguing.attacks.budget import NORMS
from intriguing.configs import ConfigError
from intriguing.datamodules import TENSOR_SPLITS, build_datamodule
from intriguing.pipelines.checks import check_choice, check_count, check_number, check_text
from intriguing.pipelines.data import checkpoint_data, split_examples
from intriguing.pipelines.tracking import AnalysisTracking, analysis_run
from intriguing.trainers import CheckpointError, load_classifier

#: The attack settings handed to :func:`attacks.build_attack` when given (``None``: the
#: attack's own default).
ATTACK_OPTIONS = ("epsilon", "norm", "steps", "stddev", "search_steps", "max_iterations")


@dataclass(frozen=True)
class CheckpointAttackSettings:
    """Which examples of a checkpoint to attack, and how.

    Attributes:
        checkpoint: an :class:`~intriguing.trainers.ImageClassifier` checkpoint.
        attack: a registered attack's name (``lbfgs``, ``fgsm``, ``pgd``, ``noise``, ...).
        layer: perturb this layer's activation (a name of the network's ``layer_names``);
            ``None``: the input.
        target_shift: a targeted attack at ``(label + target_shift) mod classes``; ``None``:
            untargeted.
        split: ``train``, ``val``, ``test``, ``p1``, ``p2`` or ``full_train``
            (:data:`datamodules.TENSOR_SPLITS`).
        subset: attack only the first ``subset`` examples, at least 1 (``None``: all).
        batch_size: examples per attack call, at least 1.
        device: where the network and the attacks run.
        dataset: the data set's name (``None``: the checkpoint's own, else ``mnist``).
        data_dir: the data folder (``None``: the checkpoint's own, else ``data``).
        save: write the adversarial set there (``torch.save``; see
            :func:`attacks.minimum_distortion`).
        progress: show a progress bar (on standard error).
        epsilon: FGSM/PGD starting budget (pixel units of ``[0, 1]`` images; the attack
            checks its range).
        norm: FGSM/PGD norm, ``linf`` or ``l2``.
        steps: PGD steps, at least 1.
        stddev: the noise attack's starting standard deviation (the attack checks its range).
        search_steps: L-BFGS solves per example (the bisection over its penalty), at least 1.
        max_iterations: L-BFGS iterations per solve, at least 1.

    The attack settings left ``None`` are the attack's own defaults.

    Raises:
        TypeError: a field of the wrong kind (a ``str`` for a number, a float for a count),
            named with its value.
        ValueError: a count below 1 (``"CheckpointAttackSettings: subset=-3: must be at least
            1 (or None: the whole split)"``), an unknown ``split`` or ``norm``. The command
            line's option types refuse the same values before the settings are built.
    """

    checkpoint: str | Path
    attack: str = "lbfgs"
    layer: str | None = None
    target_shift: int | None = None
    split: str = "test"
    subset: int | None = None
    batch_size: int = 1000
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dataset: str | None = None
    data_dir: str | None = None
    save: str | Path | None = None
    progress: bool = True
    epsilon: float | None = None
    norm: str | None = None
    steps: int | None = None
    stddev: float | None = None
    search_steps: int | None = None
    max_iterations: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_text(owner, "checkpoint", self.checkpoint, path=True)
        check_text(owner, "attack", self.attack)
        check_text(owner, "layer", self.layer, optional=True)
        check_number(owner, "target_shift", self.target_shift, optional=True, whole=True)
        check_choice(owner, "split", self.split, TENSOR_SPLITS)
        check_count(owner, "subset", self.subset, none="the whole split")
        check_count(owner, "batch_size", self.batch_size)
        check_text(owner, "dataset", self.dataset, optional=True)
        check_text(owner, "data_dir", self.data_dir, optional=True, path=True)
        check_text(owner, "save", self.save, optional=True, path=True)
        check_number(owner, "epsilon", self.epsilon, optional=True)
        check_number(owner, "stddev", self.stddev, optional=True)
        if self.norm is not None:
            check_choice(owner, "norm", self.norm, NORMS)
        for name in ("steps", "search_steps", "max_iterations"):
            check_count(owner, name, getattr(self, name), none="the attack's default")

    def spec(self) -> dict[str, Any]:
        """The attack's specification (see :func:`attacks.build_attack`): its name, layer and
        the settings given."""
        spec: dict[str, Any] = {"name": self.attack, "layer": self.layer}
        for key in ATTACK_OPTIONS:
            value = getattr(self, key)
            if value is not None:
                spec[key] = value
        return spec


@dataclass(frozen=True)
class AttackRecord:
    """:func:`attack_checkpoint`'s result.

    Attributes:
        checkpoint: the checkpoint's path, as given.
        dataset: the data set's name.
        split: the split attacked.
        num_classes: the data set's classes (a targeted attack's modulus).
        attack: the attack's specification (:meth:`CheckpointAttackSettings.spec`).
        target_shift: as in the settings.
        device: where it ran.
        summary: mean minimum distortion, success rate, adversarial and clean error, examples,
            gradient evaluations, seconds, where the set was saved.
    """

    checkpoint: str
    dataset: str
    split: str
    num_classes: int
    attack: dict[str, Any]
    target_shift: int | None
    device: str
    summary: MinimumDistortion

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the settings, and the summary's fields as ``attack/NAME``."""
        return {
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "split": self.split,
            "attack": self.attack,
            "target_shift": self.target_shift,
            "device": self.device,
            **{f"attack/{f.name}": getattr(self.summary, f.name) for f in fields(self.summary)},
        }


def attack_checkpoint(settings: CheckpointAttackSettings) -> AttackRecord:
    """The minimum distortion at which each example of the checkpoint's split is
    misclassified (already-misclassified examples count with 0), and the success rate and
    adversarial error of the returned set (Szegedy et al. 2013, Table 1).

    Raises:
        CheckpointError: an unreadable checkpoint, not an ImageClassifier's, or a ``layer``
            its network lacks (naming its layers).
        ConfigError: attack settings the attack refuses (``--attack NAME: ...``), or a
            ``target_shift`` that is a multiple of the classes (``--target-shift K: ...``).
        DataSourceError: data that cannot be found or fetched.
    """
    module = build_datamodule(
        checkpoint_data(settings.checkpoint, dataset=settings.dataset, data_dir=settings.data_dir)
    )
    network = load_classifier(settings.checkpoint, input_shape=module.input_shape).network
    if settings.layer is not None and settings.layer not in network.layer_names:
        raise CheckpointError(
            f"checkpoint {settings.checkpoint}: no layer {settings.layer!r}; its layers are "
            f"{', '.join(network.layer_names)}"
        )
    network.to(settings.device)
    images, labels = split_examples(module, settings.split, settings.subset)
    size = settings.batch_size
    batches = [(images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size)]
    spec = settings.spec()
    try:
        attack = build_attack(network, spec)
    except ValueError as error:
        raise ConfigError(f"--attack {settings.attack}: {error}") from None
    classes = module.num_classes
    shift = settings.target_shift
    if shift is not None and shift % classes == 0:
        raise ConfigError(f"--target-shift {shift}: the target would equal the label")
    target = None if shift is None else (lambda y: (y + shift) % classes)
    summary = minimum_distortion(
        network,
        batches,
        attack=attack,
        target=target,
        save=settings.save,
        progress=settings.progress,
        description=settings.attack,
    )
    return AttackRecord(
        checkpoint=str(settings.checkpoint),
        dataset=module.name,
        split=settings.split,
        num_classes=classes,
        attack=spec,
        target_shift=shift,
        device=str(settings.device),
        summary=summary,
    )


def save_record(record: AttackRecord, path: str | Path) -> Path:
    """Write :meth:`AttackRecord.to_dict` to ``path`` as indented JSON (its folder is made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return path


def log_record(record: AttackRecord, tracking: AnalysisTracking) -> None:
    """The record to a W&B run of job type ``attack`` when ``tracking.enabled``
    (:func:`pipelines.tracking.analysis_run`): all of it as the run's config, the
    ``attack/...`` values as its summary."""
    values = record.to_dict()
    with analysis_run(tracking, job_type="attack", config=values) as run:
        if run is not None:
            run.summary.update({k: v for k, v in values.items() if k.startswith("attack/")})
