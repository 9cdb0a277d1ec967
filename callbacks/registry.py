"""One registry of callbacks: each declares its name and its typed config once.

In the style of timm's ``register_model`` (and of :mod:`attacks.registry`): a Lightning
callback is registered under a name with the dataclass of its settings, and a run's
callbacks derive from the registry. The research callbacks have a section of their own in
a run's config, switched on by its ``enabled`` key (``backfeed``, ``spectral``,
``transfer``); any other registered callback is switched on by a section under
``callbacks`` (``callbacks.early_stopping.patience=5``; ``callbacks.lr_monitor={}`` with its
defaults; ``callbacks.NAME=null`` switches off one a preset switched on). Each section is
checked key by key and type by type against the callback's config when the run's config is
composed (:mod:`configs.compose`, which also writes out every key with its default), and
made the callback by the entry's :class:`~intriguing.registry.Binding`: each key is the
constructor's keyword parameter of the same name.

A user's own callback, registered in the user's module (imported before the config is
composed, e.g. by a script that then calls :func:`intriguing.pipelines.train.train`)::

    @dataclass
    class GradientNormConfig:
        every_n_steps: int = 50

    @register_callback("gradient_norm", GradientNormConfig)
    class GradientNorm(Callback):
        def __init__(self, every_n_steps: int = 50) -> None: ...

    train(compose(["experiment=demo", "callbacks.gradient_norm.every_n_steps=10"]))

This module imports neither torch nor Lightning (the built-in callbacks are declared by
``"module:Class"`` and imported when built), so that config composition and ``--help`` stay
light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, TypeVar

from intriguing.attacks.registry import ATTACK, AttackConfig, fgsm, lbfgs
from intriguing.registry import Binding, Registry, load_target

T = TypeVar("T")

#: The config section that holds the callbacks without a section of their own.
CALLBACKS = "callbacks"
#: The key that switches on a callback with a section of its own.
ENABLED = "enabled"


class MixPolicy(StrEnum):
    """How adversarial rows enter a training batch (callbacks.backfeed)."""

    append = "append"  # after the clean rows: the batch grows
    replace = "replace"  # in place of clean rows: the batch keeps its size


@dataclass
class BackfeedConfig:
    """The paper's adversarial pool, mixed into training (see callbacks.backfeed); with
    attack_current_batch, adversarial training on the batch itself (Madry et al. 2018)."""

    enabled: bool = False
    pool_size: int = 10000
    # Adversarial rows per clean example of each training batch, in [0, 1]: added to the
    # batch (mix: append) or taking the place of that fraction of its clean rows (replace;
    # 1.0 trains on adversarial rows only, as Madry et al.).
    mix_ratio: float = 0.5
    mix: MixPolicy = MixPolicy.append
    # Attack the training batch itself, against the current weights, at every step, and use
    # every result (adversarial or not) instead of a pool: PGD adversarial training (Madry et
    # al. 2018), FGSM with random start (Wong et al. 2020). pool_size and refresh_* are then
    # unused.
    attack_current_batch: bool = False
    # Each refresh replaces this fraction of every pool with new examples ...
    refresh_fraction: float = 0.01
    # ... once every this many training steps.
    refresh_every_n_steps: int = 1
    generator: AttackConfig = field(default_factory=lbfgs, metadata=ATTACK)
    # Layers whose output gets a pool of its own: "input" (the input pool) and/or submodules
    # of the model by dotted path or unique suffix ("fc1" finds network.stages.fc1).
    layers: list[str] = field(default_factory=lambda: ["input"])
    # How the pools take turns: all mixed in every step, or one pool per step in turn.
    alternate: bool = False
    # Fixed attack and validation subset for comparable adversarial validation error.
    val_attack: AttackConfig = field(default_factory=fgsm, metadata=ATTACK)
    val_subset: int = 500
    # A table of a few examples of every pool (clean, perturbation, adversarial, label, age)
    # logged to W&B after every n-th training epoch (callbacks.pool_examples); 0: never.
    log_examples_every_n_epochs: int = 5


@dataclass
class TransferConfig:
    """Transfer of adversarial examples to and from a zoo during training (see
    callbacks.transfer); `intriguing transfer` builds the paper's Tables 2-4 after training."""

    enabled: bool = False
    # Checkpoints of the zoo evaluated against the model in training (empty: nothing is done).
    zoo: list[str] = field(default_factory=list)
    # Measure after every n-th training epoch.
    every_n_epochs: int = 1
    # Examples attacked: the first `subset` of `split` (auto: val when held out, else test).
    subset: int = 500
    split: str = "auto"
    # The attack that makes the adversarial examples, on the input (layer must stay null).
    attack: AttackConfig = field(default_factory=lbfgs, metadata=ATTACK)
    # Examples per set in the logged image grid (0: none).
    grid_examples: int = 8
    # Cache the zoo's adversarial sets here (null: made anew in every run).
    cache_dir: str | None = None
    batch_size: int = 500


@dataclass
class SpectralConfig:
    """Bounds of every layer's Lipschitz constant (Szegedy et al. 2013, Section 4.3) logged
    during training (see callbacks.spectral)."""

    enabled: bool = False
    every_n_epochs: int = 1


@dataclass
class EarlyStoppingConfig:
    """Lightning's ``EarlyStopping``: stop when ``monitor`` has not improved by ``min_delta``
    for ``patience`` validation checks (``monitor`` defaults to this project's validation
    error; Lightning's own callback has no default)."""

    monitor: str = "val/error"
    min_delta: float = 0.0
    patience: int = 3
    verbose: bool = False
    mode: str = "min"
    strict: bool = True
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_on_train_epoch_end: bool | None = None
    log_rank_zero_only: bool = False


@dataclass
class LearningRateMonitorConfig:
    """Lightning's ``LearningRateMonitor``: log each optimizer's learning rate (``lr-Adam``)
    every ``logging_interval`` (``step``, ``epoch``, or null: the scheduler's interval)."""

    logging_interval: str | None = None
    log_momentum: bool = False
    log_weight_decay: bool = False


@dataclass(frozen=True)
class CallbackEntry:
    """A registered callback.

    Attributes:
        name: the name of its config section (``"backfeed"``, ``"early_stopping"``).
        config: its settings, a dataclass: each field is one keyword parameter of
            ``target`` (save those of ``exclude``), with the run's default.
        target: the callback class, or ``"module:Class"`` imported when first built.
        own_section: whether the section is a top-level section of the run's config,
            switched on by its ``enabled`` key (the research callbacks), rather than one
            under ``callbacks``.
        exclude: config key -> why it is not a parameter of ``target``.
        rename: config key -> the parameter's name, where the two differ.
        run_arguments: keys of the run's config given to ``target`` as keywords of the same
            name (``("seed",)``).
        build: ``"module:function"`` (or the function) that makes the section's callbacks,
            called as ``build(binding, values, **run_arguments) -> list[Callback]``, for a
            section that makes more than its callback (None: ``[binding(values, ...)]``).
    """

    name: str
    config: type
    target: object
    own_section: bool = False
    exclude: Mapping[str, str] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    run_arguments: tuple[str, ...] = ()
    build: object | None = None

    @property
    def section(self) -> str:
        """The dotted config key of its section (``"backfeed"``, ``"callbacks.lr_monitor"``)."""
        return self.name if self.own_section else f"{CALLBACKS}.{self.name}"

    @property
    def binding(self) -> Binding:
        """How its section becomes the callback (:class:`~intriguing.registry.Binding`)."""
        return Binding(self.section, self.target, exclude=self.exclude, rename=self.rename)

    def create(self, values: Mapping[str, Any], **run: Any) -> list[Any]:
        """The callbacks of the section ``values`` (every key of :attr:`config`), given the
        run's ``run_arguments`` as keywords.

        Raises:
            ValueError, TypeError: what the callback's constructor raises for a bad value,
                naming its parameter; TypeError for a key that is not a parameter.
        """
        if self.build is None:
            return [self.binding(values, **run)]
        return list(load_target(self.build)(self.binding, values, **run))


#: The callbacks by name (the shared machinery of :mod:`intriguing.registry`).
REGISTRY: Registry[CallbackEntry] = Registry("callback", CALLBACKS, "intriguing.callbacks")


def register_callback(
    name: str,
    config: type,
    *,
    target: object | None = None,
    own_section: bool = False,
    exclude: Mapping[str, str] | None = None,
    rename: Mapping[str, str] | None = None,
    run_arguments: Iterable[str] = (),
    build: object | None = None,
) -> Callable[[T], T]:
    """Register a callback under ``name`` with its config dataclass.

    Used as a class decorator (``@register_callback("gradient_norm", GradientNormConfig)``),
    or called with ``target="module:Class"`` to register a class without importing it (the
    decorator returned is then not needed). See :class:`CallbackEntry` for the arguments.

    Raises:
        ValueError: for an empty name, a name taken by another callback, or ``"callbacks"``.
        TypeError: when ``config`` is not a dataclass, or a section of its own has no
            ``enabled`` key.
    """
    if name == CALLBACKS:
        raise ValueError(f"callback name {name!r}: the name of the section that holds them")
    if not (isinstance(config, type) and is_dataclass(config)):
        raise TypeError(f"callback {name!r}: config {config!r} must be a dataclass")
    if own_section and ENABLED not in {item.name for item in fields(config)}:
        raise TypeError(f"callback {name!r}: a section of its own needs the key {ENABLED!r}")
    excluded = dict(exclude or {})
    if own_section:
        excluded.setdefault(ENABLED, "switches the callback on")

    def entry(made_by: object) -> CallbackEntry:
        return CallbackEntry(
            name,
            config,
            made_by,
            own_section=own_section,
            exclude=excluded,
            rename=dict(rename or {}),
            run_arguments=tuple(run_arguments),
            build=build,
        )

    return REGISTRY.register(name, entry, target)


def callback_entry(name: str) -> CallbackEntry:
    """The registered callback ``name``.

    Raises:
        ValueError: naming the registered callbacks, when none is registered as ``name``.
    """
    return REGISTRY.get(name)


def callback_names(*, own_section: bool | None = None) -> tuple[str, ...]:
    """The registered callbacks' names in the order they were registered (those with a
    section of their own, or those without, when ``own_section`` is given); imports the
    package's callbacks first."""
    keep = None if own_section is None else (lambda e: e.own_section == own_section)
    return REGISTRY.names(keep)


def enabled_callbacks(config: Mapping[str, Any]) -> list[tuple[CallbackEntry, Mapping[str, Any]]]:
    """The callbacks a run's config switches on, each with its section: those with a section
    of their own whose ``enabled`` is true, in the order they were registered, then those
    under ``callbacks`` that are not null, in the config's order.

    Args:
        config: a composed run config (a mapping; :func:`configs.to_container`'s or the
            ``DictConfig`` itself).

    Raises:
        ValueError: naming the key, for a name under ``callbacks`` that is not registered
            or that has a section of its own.
    """
    chosen: list[tuple[CallbackEntry, Mapping[str, Any]]] = []
    for name in REGISTRY.declared(lambda entry: entry.own_section):
        section = config.get(name)
        if section is not None and section.get(ENABLED):
            chosen.append((REGISTRY.get(name), section))
    for name, section in (config.get(CALLBACKS) or {}).items():
        if section is not None:
            chosen.append((switchable_entry(str(name)), section))
    return chosen


def switchable_entry(name: str) -> CallbackEntry:
    """The registered callback ``name`` that a section under ``callbacks`` switches on.

    Raises:
        ValueError: ``"callbacks.NAME: ..."``, for a name not registered (naming those that
            are) or one with a section of its own (naming that section).
    """
    try:
        entry = REGISTRY.get(name)
    except ValueError:
        known = ", ".join(callback_names(own_section=False))
        raise ValueError(
            f"{CALLBACKS}.{name}: not a registered callback (registered: {known}; one of your "
            "own: register_callback in a module the config's imports names)"
        ) from None
    if entry.own_section:
        raise ValueError(
            f"{CALLBACKS}.{name}: has a section of its own, switched on by {name}.enabled"
        )
    return entry


def switchable_callbacks() -> tuple[str, ...]:
    """The names of the callbacks switched on under ``callbacks`` registered so far, importing
    nothing (the built-ins, and those of modules already imported): for ``--help``."""
    return REGISTRY.declared(lambda entry: not entry.own_section)


register_callback(
    "backfeed",
    BackfeedConfig,
    target="intriguing.callbacks.backfeed:AdversarialBackfeed",
    own_section=True,
    exclude={"log_examples_every_n_epochs": "PoolExamplesLogger's every_n_epochs (0: no logger)"},
    run_arguments=("seed",),
    build="intriguing.callbacks.pool_examples:backfeed_callbacks",
)
register_callback(
    "spectral",
    SpectralConfig,
    target="intriguing.callbacks.spectral:SpectralMonitor",
    own_section=True,
)
register_callback(
    "transfer",
    TransferConfig,
    target="intriguing.callbacks.transfer:TransferRobustness",
    own_section=True,
    run_arguments=("seed",),
)
register_callback(
    "early_stopping",
    EarlyStoppingConfig,
    target="lightning.pytorch.callbacks:EarlyStopping",
)
register_callback(
    "lr_monitor",
    LearningRateMonitorConfig,
    target="lightning.pytorch.callbacks:LearningRateMonitor",
)
