"""One registry of attacks: each declares its name and its typed config once.

In the style of timm's ``register_model``: an attack class is registered under a name with
the dataclass of its settings (its config), and everything else derives from the registry:
:func:`attacks.build_attack`, the config schema's attack sections (validated against the
named attack's config when a run's configuration is composed, so that ``generator.steps`` on
an attack without steps fails there, naming the attack), the command line's choices, the
W&B config and the report's labels.

Each field of a config is one keyword parameter of the attack's constructor; its default in
the config is ``None``, "the constructor's own default", so that a default lives in one
place, the constructor (:meth:`AttackEntry.load` checks that every field is a parameter).

This module imports neither torch nor anything of ours, so that ``intriguing --help`` and
config composition stay light. The built-in attacks are declared here by ``"module:Class"``
and imported only when built; an attack of another module of this package registers itself
with the :func:`register_attack` decorator and is found by importing the package's modules
the first time a name is not yet known (:func:`attack_entry`). A user's own attack::

    @dataclass
    class MyConfig(AttackSettings):
        strength: float | None = None

    @register_attack("mine", MyConfig, label="My attack")
    class MyAttack(Attack):
        def __init__(self, model, *, strength=1.0, bounds=None, layer=None, mean=None, std=None):
            ...

    build_attack(model, {"name": "mine", "strength": 2.0})
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum
from typing import Any, TypeVar

from intriguing.registry import Names, Registry, load_target

#: Name prefix of the peer library's attacks (:class:`attacks.peers.PeerAttack`), which take
#: their constructor's own keys and are not registered here.
PEER_PREFIX = "torchattacks."

T = TypeVar("T", bound=type)


class Norm(StrEnum):
    """The norm of a budget attack's ball."""

    l2 = "l2"
    linf = "linf"


@dataclass
class AttackSettings:
    """Settings every attack takes (see :class:`attacks.Attack`); ``None``: the default.

    ``layer``: perturb this layer's output instead of the input; ``bounds``: the box
    ``[lower, upper]``; ``mean``/``std``: the model's input normalisation (a number or one
    per channel), usually given by the data module instead.
    """

    layer: str | None = None
    bounds: list[float] | None = None
    mean: Any = None
    std: Any = None


@dataclass
class LBFGSConfig(AttackSettings):
    """The paper's box-constrained L-BFGS (:class:`attacks.LBFGSAttack`): solves over ``c``
    per example and L-BFGS iterations per solve."""

    search_steps: int | None = None
    max_iterations: int | None = None


@dataclass
class FGSMConfig(AttackSettings):
    """One gradient step of size ``epsilon`` in ``norm`` (:class:`attacks.FGSM`)."""

    epsilon: float | None = None
    norm: Norm | None = None


@dataclass
class PGDConfig(FGSMConfig):
    """``steps`` projected steps of size ``step_size`` in the ``epsilon`` ball
    (:class:`attacks.PGD`)."""

    steps: int | None = None
    step_size: float | None = None
    # The returned iterate: "adversarial" (robustness) or "last" (adversarial training).
    keep: str | None = None


@dataclass
class NoiseConfig(AttackSettings):
    """Gaussian noise of ``stddev``, or scaled to the distortion ``distortion``
    (:class:`attacks.GaussianNoise`)."""

    stddev: float | None = None
    distortion: float | None = None


@dataclass(frozen=True)
class AttackEntry:
    """A registered attack.

    Attributes:
        name: the name configs and the command line use (``"fgsm"``).
        config: its settings, a dataclass derived from :class:`AttackSettings`.
        target: the attack class, or ``"module:Class"`` to import when first built.
        label: how reports and the command line write it (``"FGSM"``).
        control: a control (random noise) rather than an adversarial attack; transfer
            studies make adversarial sets with the others only.
    """

    name: str
    config: type[AttackSettings]
    target: type | str
    label: str
    control: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of the attack's config (besides ``name``)."""
        return tuple(f.name for f in fields(self.config))

    @property
    def own_keys(self) -> tuple[str, ...]:
        """The keys of this attack's config that not every attack takes."""
        common = {f.name for f in fields(AttackSettings)}
        return tuple(key for key in self.keys if key not in common)

    def check_keys(self, keys: Iterable[str]) -> None:
        """Raises ``ValueError`` naming the first key the attack does not take."""
        unknown = [key for key in keys if key != "name" and key not in self.keys]
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown key for attack {self.name!r} (its keys: "
                f"{', '.join(self.keys)})"
            )

    def defaults(self) -> dict[str, Any]:
        """The constructor's default of every config key (imports the attack class): what a
        ``null`` in a config means, so that composed configs and W&B show the values used."""
        parameters = inspect.signature(self.load().__init__).parameters
        return {
            key: parameters[key].default
            for key in self.keys
            if parameters[key].default is not inspect.Parameter.empty
        }

    def load(self) -> type:
        """The attack class, imported now if it was given as ``"module:Class"``.

        Raises:
            TypeError: when a field of the config is not a keyword parameter of the class's
                constructor.
        """
        target = load_target(self.target)
        assert isinstance(target, type)
        parameters = inspect.signature(target.__init__).parameters
        missing = [key for key in self.keys if key not in parameters]
        if missing:
            raise TypeError(
                f"attack {self.name!r}: config key {missing[0]!r} is not a parameter of "
                f"{target.__name__}"
            )
        return target


#: One attack and its settings as a config section holds it (``backfeed.generator``,
#: ``evaluation.attack``, ...): ``name``, a registered attack (null keys: the attack's own
#: defaults), and the keys of that attack's config, checked against it when a run's config is
#: composed (configs.compose).
AttackConfig = dict[str, Any]
#: Field metadata that marks an attack section of a config dataclass for configs.compose:
#: ``field(default_factory=lbfgs, metadata=ATTACK)``.
ATTACK_SECTION = "attack_section"
ATTACK = {ATTACK_SECTION: True}


def lbfgs() -> AttackConfig:
    """The paper's attack with its own defaults."""
    return {"name": "lbfgs"}


def fgsm() -> AttackConfig:
    """FGSM at L-inf 0.1, the fixed attack of adversarial validation and evaluation."""
    return {"name": "fgsm", "epsilon": 0.1, "norm": "linf"}


#: The attacks by name (the shared machinery of :mod:`intriguing.registry`).
REGISTRY: Registry[AttackEntry] = Registry("attack", "attack.name", "intriguing.attacks")
_ENTRIES = REGISTRY.entries


def register_attack(
    name: str,
    config: type[AttackSettings],
    *,
    label: str | None = None,
    control: bool = False,
    target: str | None = None,
) -> Callable[[T], T]:
    """Register an attack under ``name`` with its config dataclass.

    Used as a class decorator (``@register_attack("cw", CWConfig, label="C&W L2")``), or
    called with ``target="module:Class"`` to register a class without importing it. The
    class's ``name`` attribute is set to ``name``.

    Raises:
        ValueError: for an empty name, a name taken by another attack or starting with
            ``"torchattacks."``.
        TypeError: when ``config`` is not a dataclass derived from :class:`AttackSettings`.
    """
    if not isinstance(name, str) or not name or name.startswith(PEER_PREFIX):
        raise ValueError(f"attack name {name!r}: expected a non-empty name, not a peer's")
    if not (is_dataclass(config) and isinstance(config, type)) or not issubclass(
        config, AttackSettings
    ):
        raise TypeError(f"attack {name!r}: config must be a dataclass derived from AttackSettings")

    register = REGISTRY.register(
        name, lambda made_by: AttackEntry(name, config, made_by, label or name, control), target
    )

    def decorate(cls: T) -> T:
        register(cls)
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def attack_entry(name: str) -> AttackEntry:
    """The registered attack ``name``.

    Raises:
        ValueError: naming the registered attacks, when none is registered as ``name``.
    """
    return REGISTRY.get(name)


def attack_names(*, controls: bool = True) -> tuple[str, ...]:
    """The names of every registered attack (with the controls, unless ``controls=False``),
    in the order they were registered; imports the package's attacks first."""
    REGISTRY.discover()
    return declared_attacks(controls=controls)


def declared_attacks(*, controls: bool = True) -> tuple[str, ...]:
    """The names registered so far, importing nothing: the built-in attacks declared here,
    and those of modules already imported."""
    return REGISTRY.declared(None if controls else lambda entry: not entry.control)


class AttackNames(Names):
    """The registered names as a lazy, read-only sequence, for argparse's ``choices``: the
    registry is searched (importing the attacks) only when a name is checked or listed, so
    that ``--help`` stays light."""

    def __init__(self, *, controls: bool = True) -> None:
        self.controls = controls
        super().__init__(lambda: attack_names(controls=controls), controls)

    def __repr__(self) -> str:
        return f"AttackNames(controls={self.controls})"


#: Every registered attack's name, and those that make adversarial examples (no controls).
ATTACKS = AttackNames()
ADVERSARIAL_ATTACKS = AttackNames(controls=False)

register_attack("lbfgs", LBFGSConfig, label="L-BFGS", target="intriguing.attacks.lbfgs:LBFGSAttack")
register_attack("fgsm", FGSMConfig, label="FGSM", target="intriguing.attacks.budget:FGSM")
register_attack("pgd", PGDConfig, label="PGD", target="intriguing.attacks.budget:PGD")
register_attack(
    "noise",
    NoiseConfig,
    label="Gaussian noise",
    control=True,
    target="intriguing.attacks.noise:GaussianNoise",
)
