"""Model families: each declares its name, its typed config and its properties once.

In the style of timm's ``register_model``: a family is a builder
``(input_shape, num_classes, **settings) -> StagedNetwork`` registered under a name with the
dataclass of its settings. :func:`trainers.build_network` (the factory), the config schema
(``model.family``'s choices, the family's section, typed; see :mod:`configs.compose`) and the
run's special steps (pretraining and freezing an encoder stage) derive from it. The built-in
families (see :mod:`trainers.networks`)::

    fc             FCConfig        the model section's own keys (hidden, activation, dropout)
    ae             AutoencoderConfig  model.autoencoder; stage "code" pretrained (AE400-10)
    conv           ConvConfig      model.conv, and model.dropout
    preact_resnet  ResNetConfig    model.resnet

A family's settings live in the model section under the key ``section`` (``model.conv``), or,
for ``section=None``, are keys of the model section itself (only :class:`FCConfig`'s). Each
field of the config is a keyword parameter of the builder, with the same default (checked by
:meth:`FamilyEntry.load`): the config's default is the one a run uses. A user's own family::

    @dataclass
    class MixerConfig:
        patch: int = 4

    @register_family("mixer", MixerConfig, section="mixer")
    def mixer(input_shape, num_classes, *, patch=4) -> StagedNetwork: ...

    compose(["model.family=mixer", "model.mixer.patch=7"])

This module imports neither torch nor anything of ours but :mod:`intriguing.registry`, so
that the config schema and ``intriguing --help`` stay light; the built-in builders are
declared by ``"module:function"`` and imported when first built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, TypeVar

from intriguing.registry import (
    Names,
    Registry,
    drifted_defaults,
    either,
    field_default,
    load_target,
    plain,
    qualified,
)

F = TypeVar("F", bound=Callable[..., Any])

#: The family of a model section that names none.
DEFAULT_FAMILY = "fc"
#: The stage of AE400-10 that is the sparse autoencoder's encoder (pretrained, then frozen
#: unless ``model.autoencoder.finetune_encoder``).
CODE_STAGE = "code"


class Activation(StrEnum):
    relu = "relu"
    sigmoid = "sigmoid"
    tanh = "tanh"


class Pooling(StrEnum):
    max = "max"
    avg = "avg"
    none = "none"


@dataclass
class SharedConfig:
    """Keys of the model section itself that several families take (``shared``)."""

    # Dropout after each hidden fully connected layer (fc, conv).
    dropout: float = 0.0


@dataclass
class FCConfig(SharedConfig):
    """Fully connected nets (Szegedy et al. 2013's FC10 .. FC200-200-10): keys of the model
    section itself."""

    # Widths of the hidden layers ([] is softmax regression, FC10).
    hidden: list[int] = field(default_factory=lambda: [100, 100])
    activation: Activation = Activation.relu


@dataclass
class ConvConfig:
    """A configurable conv net: ``len(channels)`` blocks of conv (+BN) + ReLU (+pool)."""

    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 5
    pool: Pooling = Pooling.max
    batch_norm: bool = False
    fc_hidden: list[int] = field(default_factory=lambda: [256])


@dataclass
class ResNetConfig:
    """PreAct ResNet (see trainers.resnet); the defaults are PreAct ResNet-18 for CIFAR."""

    # Basic blocks per residual stage ([2, 2, 2, 2]: ResNet-18) and the stages' widths.
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    # Per-channel (x - mean) / std done first in the stem, so inputs stay in [0, 1]
    # ([]: none).
    input_mean: list[float] = field(default_factory=list)
    input_std: list[float] = field(default_factory=list)


@dataclass
class AutoencoderConfig:
    """The sparse sigmoid autoencoder of AE400-10 and how its encoder is reused.

    A family whose config derives from this one, with a ``pretrained_stage``, gets that
    stage from the encoder of a sparse autoencoder (pretrained in a Lightning run of its own
    unless ``encoder_checkpoint`` is given), frozen unless ``finetune_encoder``.
    """

    hidden: int = 400
    sparsity_target: float = 0.05
    sparsity_weight: float = 0.1
    weight_decay: float = 1e-6
    # Pretraining run of the autoencoder (its own Lightning run).
    pretrain_epochs: int = 20
    pretrain_lr: float = 1e-3
    # A checkpoint of a pretrained autoencoder to reuse; when empty, `train` pretrains one first.
    encoder_checkpoint: str | None = None
    finetune_encoder: bool = False


#: Keys of the model section that belong to no family (and cannot name a section).
MODEL_KEYS: tuple[str, ...] = ("family", "weight_decay")


@dataclass(frozen=True)
class FamilyEntry:
    """A registered model family.

    Attributes:
        name: the value of ``model.family`` (``"conv"``).
        config: its settings, a dataclass; each field is a keyword parameter of the builder.
        target: the builder ``(input_shape, num_classes, **settings) -> StagedNetwork``, or
            ``"module:function"`` to import when first built.
        section: the key of the model section that holds the settings (``"conv"``); None:
            they are keys of the model section itself (:class:`FCConfig`'s).
        shared: keys of the model section itself the builder takes too (:class:`SharedConfig`'s,
            e.g. ``("dropout",)``).
        pretrained_stage: the stage that is a pretrained sparse autoencoder's encoder (AE400-10:
            ``"code"``), or None.
        label: how reports write the family.
    """

    name: str
    config: type
    target: Callable[..., Any] | str
    section: str | None = None
    shared: tuple[str, ...] = ()
    pretrained_stage: str | None = None
    label: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the family's config."""
        return tuple(f.name for f in fields(self.config))

    def settings(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """The family's settings in ``model`` (a model section as a mapping), each key that
        is missing given the config's default; with the ``shared`` keys."""
        source = model if self.section is None else (model.get(self.section) or {})
        values = {key: source.get(key, field_default(self.config, key)) for key in self.keys}
        for key in self.shared:
            values[key] = model.get(key, field_default(SharedConfig, key))
        return values

    def frozen_stages(self, model: Mapping[str, Any]) -> tuple[str, ...]:
        """The stages not trained: the pretrained stage, unless ``finetune_encoder``."""
        if self.pretrained_stage is None or self.settings(model).get("finetune_encoder"):
            return ()
        return (self.pretrained_stage,)

    def load(self) -> Callable[..., Any]:
        """The builder, imported now if it was given as ``"module:function"``.

        Raises:
            TypeError: when a config key passed to the builder has a default there that is
                not the config's (the config's default is the one in use).
        """
        builder = load_target(self.target)
        for config, keys in ((self.config, self.keys), (SharedConfig, self.shared)):
            for key, (wanted, given) in drifted_defaults(config, builder, keys=keys).items():
                raise TypeError(
                    f"model family {self.name!r}: {qualified(builder)} defaults {key} to "
                    f"{given!r}, its config to {plain(wanted)!r}"
                )
        return builder

    def build(self, model: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        """The network ``model`` describes: the builder called with the settings it takes."""
        builder = self.load()
        parameters = inspect.signature(builder).parameters
        settings = {k: v for k, v in self.settings(model).items() if k in parameters}
        return builder(input_shape, num_classes, **settings)


#: The model families by name (the shared machinery of :mod:`intriguing.registry`).
FAMILIES: Registry[FamilyEntry] = Registry(
    "model family", "model.family", "intriguing.trainers", expected=either
)


def register_family(
    name: str,
    config: type,
    *,
    section: str | None = None,
    shared: Sequence[str] = (),
    pretrained_stage: str | None = None,
    label: str | None = None,
    target: str | None = None,
) -> Callable[[F], F]:
    """Register a model family under ``name`` with its config dataclass.

    Used as a decorator on the builder (``@register_family("mixer", MixerConfig,
    section="mixer")``), or called with ``target="module:function"`` to register a builder
    without importing it.

    Raises:
        TypeError: when ``config`` is not a dataclass, or a ``pretrained_stage`` is declared
            with a config not derived from :class:`AutoencoderConfig`.
        ValueError: for a name taken by another builder; a ``section`` that is a key of the
            model section itself or another family's section with another config; with
            ``section=None``, a config key the model section does not have (only
            :class:`FCConfig`'s); a ``shared`` key not of :class:`SharedConfig`.
    """
    if not (isinstance(config, type) and is_dataclass(config)):
        raise TypeError(f"model family {name!r}: config must be a dataclass, not {config!r}")
    keys = {f.name for f in fields(config)}
    top = {f.name for f in fields(FCConfig)}
    if section is None:
        if keys - top:
            raise ValueError(
                f"model family {name!r}: section=None puts its config in the model section "
                f"itself, which has no key {sorted(keys - top)[0]!r}; give it a section"
            )
    elif not section.isidentifier() or section in (*MODEL_KEYS, *top):
        raise ValueError(
            f"model family {name!r}: section {section!r} is a key of the model section itself"
        )
    else:
        for other in FAMILIES.entries.values():
            if other.section == section and other.config is not config and other.name != name:
                raise ValueError(
                    f"model family {name!r}: section {section!r} holds family "
                    f"{other.name!r}'s {other.config.__name__}"
                )
    unknown = set(shared) - {f.name for f in fields(SharedConfig)}
    if unknown:
        raise ValueError(f"model family {name!r}: shared key {sorted(unknown)[0]!r} is not shared")
    if pretrained_stage is not None and not issubclass(config, AutoencoderConfig):
        raise TypeError(
            f"model family {name!r}: a pretrained_stage needs a config derived from "
            "AutoencoderConfig (the encoder's pretraining settings)"
        )

    def entry(builder: Any) -> FamilyEntry:
        return FamilyEntry(
            name, config, builder, section, tuple(shared), pretrained_stage, label or name
        )

    return FAMILIES.register(name, entry, target)


def family_entry(name: object) -> FamilyEntry:
    """The registered family ``name``.

    Raises:
        ValueError: ``"model.family 'x': expected fc, ae, conv or preact_resnet"``.
    """
    return FAMILIES.get(name)


def family_names() -> tuple[str, ...]:
    """Every registered family's name, importing the package's families first."""
    return FAMILIES.names()


def declared_families() -> tuple[str, ...]:
    """The families registered so far, importing nothing."""
    return FAMILIES.declared()


def family_sections() -> dict[str, type]:
    """The sections of the families registered so far, each with its config."""
    return {e.section: e.config for e in FAMILIES.entries.values() if e.section is not None}


#: Every registered family's name, for argparse's ``choices`` (searched when used).
FAMILY_NAMES = Names(family_names, "model families")

register_family("fc", FCConfig, label="FC", target="intriguing.trainers.networks:fully_connected")
register_family(
    "ae",
    AutoencoderConfig,
    section="autoencoder",
    pretrained_stage=CODE_STAGE,
    label="AE",
    target="intriguing.trainers.networks:autoencoder_classifier",
)
register_family(
    "conv",
    ConvConfig,
    section="conv",
    shared=("dropout",),
    label="Conv",
    target="intriguing.trainers.networks:convolutional",
)
register_family(
    "preact_resnet",
    ResNetConfig,
    section="resnet",
    label="PreAct ResNet",
    target="intriguing.trainers.resnet:preact_resnet",
)
