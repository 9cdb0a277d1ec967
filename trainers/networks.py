"""The paper's MNIST networks, each declared as named stages (see :mod:`trainers.stages`).

- ``fc``: softmax regression (FC10, no hidden layer) and multilayer perceptrons of any widths
  (FC100-100-10, FC200-200-10, FC123-456-10); stages ``fc1 .. fcK, logits``.
- ``ae``: AE400-10, the encoder of a sparse sigmoid autoencoder with a softmax classifier on
  its code; stages ``code, logits``.
- ``conv``: a configurable conv net for 28x28 and 32x32 images; stages
  ``conv1 .. convK, fc1 .. fcM, logits``.
- ``preact_resnet``: PreAct ResNet (PreAct ResNet-18 for CIFAR-10 by default, the network the
  adversarial-training literature compares on; see :mod:`trainers.resnet`); stages
  ``stem, layer1 .. layerK, pool, logits``.

:func:`build_network` takes the ``model`` section of a run's configuration as a plain mapping
(family, widths, ...), so that checkpoints carry only primitives and rebuild without our code
being trusted to unpickle anything. Each family is registered with its typed config in
:mod:`trainers.families` (where a user registers their own); the defaults below are the
configs' (checked when a family is built).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from intriguing.trainers.families import CODE_STAGE, DEFAULT_FAMILY, family_entry
from intriguing.trainers.stages import StagedNetwork

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
_WEIGHTED = (nn.Linear, nn.Conv2d)


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation {name!r}: expected one of {sorted(_ACTIVATIONS)}") from None


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for d in shape:
        total *= int(d)
    return total


def fully_connected(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    dropout: float = 0.0,
) -> StagedNetwork:
    """FC(hidden..., num_classes); with no hidden layer, softmax regression (FC10)."""
    stages: list[tuple[str, nn.Module]] = []
    width = _numel(input_shape)
    for index, size in enumerate(hidden, start=1):
        layers: list[nn.Module] = [nn.Flatten()] if index == 1 else []
        layers += [nn.Linear(width, size), _activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        stages.append((f"fc{index}", nn.Sequential(*layers)))
        width = size
    head: list[nn.Module] = [] if hidden else [nn.Flatten()]
    stages.append(("logits", nn.Sequential(*head, nn.Linear(width, num_classes))))
    return StagedNetwork(stages, input_shape=input_shape)


def sparse_encoder(input_shape: Sequence[int], hidden: int) -> nn.Sequential:
    """The encoder of the sparse sigmoid autoencoder: ``sigmoid(W x + b)``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(_numel(input_shape), hidden), nn.Sigmoid())


def sparse_decoder(input_shape: Sequence[int], hidden: int) -> nn.Sequential:
    """The decoder: ``sigmoid(W' h + b')`` reshaped to the image."""
    return nn.Sequential(
        nn.Linear(hidden, _numel(input_shape)),
        nn.Sigmoid(),
        nn.Unflatten(1, tuple(input_shape)),
    )


def autoencoder_classifier(
    input_shape: Sequence[int], num_classes: int, *, hidden: int = 400
) -> StagedNetwork:
    """AE400-10: a softmax classifier on the code of a sparse autoencoder's encoder."""
    stages = [
        (CODE_STAGE, sparse_encoder(input_shape, hidden)),
        ("logits", nn.Sequential(nn.Linear(hidden, num_classes))),
    ]
    return StagedNetwork(stages, input_shape=input_shape)


def convolutional(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 5,
    pool: str = "max",
    batch_norm: bool = False,
    fc_hidden: Sequence[int] = (256,),
    dropout: float = 0.0,
) -> StagedNetwork:
    """Conv blocks (conv, batch norm, ReLU, 2x2 pooling), then FC layers, then logits."""
    if pool not in {"max", "avg", "none"}:
        raise ValueError(f"pool {pool!r}: expected max, avg or none")
    stages: list[tuple[str, nn.Module]] = []
    in_channels = int(input_shape[0])
    for index, out_channels in enumerate(channels, start=1):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        if pool == "max":
            layers.append(nn.MaxPool2d(2))
        elif pool == "avg":
            layers.append(nn.AvgPool2d(2))
        stages.append((f"conv{index}", nn.Sequential(*layers)))
        in_channels = out_channels
    probe = StagedNetwork(stages, input_shape=input_shape) if stages else None
    width = _numel(probe.layer_shape(stages[-1][0])) if probe else _numel(input_shape)
    for index, size in enumerate(fc_hidden, start=1):
        layers = [nn.Flatten()] if index == 1 else []
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        stages.append((f"fc{index}", nn.Sequential(*layers)))
        width = size
    head: list[nn.Module] = [] if fc_hidden else [nn.Flatten()]
    stages.append(("logits", nn.Sequential(*head, nn.Linear(width, num_classes))))
    return StagedNetwork(stages, input_shape=input_shape)


def build_network(
    model: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
) -> StagedNetwork:
    """The network that the ``model`` section of a configuration describes: the builder of
    its ``family`` (:mod:`trainers.families`, default ``fc``), given the family's settings,
    each missing one at its config's default.

    Raises:
        ValueError: naming the registered families, for a family not registered; the
            builder's own errors for bad settings.
    """
    family = family_entry(str(model.get("family", DEFAULT_FAMILY)))
    network = family.build(model, input_shape, num_classes)
    if not isinstance(network, StagedNetwork):
        raise TypeError(
            f"model.family {family.name!r}: its builder returned {type(network).__name__}, "
            "not a StagedNetwork"
        )
    return network


def weighted_stages(network: StagedNetwork) -> list[str]:
    """Names of the stages that hold a linear or convolutional weight, input side first."""
    return [
        name
        for name, stage in network.stages.items()
        if any(isinstance(m, _WEIGHTED) for m in stage.modules())
    ]


def decay_groups(network: StagedNetwork, weight_decay: Sequence[float]) -> list[dict[str, Any]]:
    """Optimizer parameter groups with the paper's per-layer L2 weight decay.

    ``weight_decay`` has one value per weighted stage (input side first) or a single value for
    all; it applies to linear and convolutional weights only, never to biases or batch norm.
    """
    names = weighted_stages(network)
    decays = list(weight_decay)
    if len(decays) == 1:
        decays = decays * len(names)
    if len(decays) != len(names):
        raise ValueError(
            f"model.weight_decay has {len(decays)} values, but the network has "
            f"{len(names)} weighted layers ({', '.join(names)}): give one per layer or one"
        )
    groups: list[dict[str, Any]] = []
    free: list[nn.Parameter] = []
    for name, stage in network.stages.items():
        decayed = [
            m.weight for m in stage.modules() if isinstance(m, _WEIGHTED) and m.weight.requires_grad
        ]
        ids = {id(p) for p in decayed}
        free += [p for p in stage.parameters() if p.requires_grad and id(p) not in ids]
        if decayed:
            groups.append({"params": decayed, "weight_decay": decays[names.index(name)]})
    if free:
        groups.append({"params": free, "weight_decay": 0.0})
    return groups
