"""Attacks from a configuration mapping, by the name they are registered under."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from intriguing.attacks.base import Attack, Statistic
from intriguing.attacks.peers import PeerAttack, is_peer_spec
from intriguing.attacks.registry import ATTACKS, attack_entry

__all__ = ["ATTACKS", "build_attack"]


def build_attack(
    model: nn.Module,
    spec: Mapping[str, Any],
    *,
    mean: Statistic | None = None,
    std: Statistic | None = None,
) -> Attack:
    """The attack that ``spec`` describes, for ``model``.

    ``spec`` holds ``name`` (a registered attack, :mod:`attacks.registry`; default
    ``"lbfgs"``) and the keys of that attack's config, each one keyword of its constructor:
    a value ``None`` keeps the constructor's default. ``mean`` and ``std`` may be given here
    instead of in ``spec`` (the data module's normalisation, say), not in both.

    A ``name`` ``"torchattacks.CLASS"`` builds a :class:`attacks.peers.PeerAttack`: the other
    keys are the torchattacks constructor's (``eps``, ``alpha``, ``steps``, ...), besides
    ``mean``, ``std``, ``layer`` (input only), ``bounds`` (``[0, 1]`` only) and
    ``compute_dtype`` (``"float32"``, the default, or ``"float64"``, which keeps the
    cross-entropy gradient of overconfident models; see :mod:`attacks.peers`). Raises
    ``ImportError`` naming ``intriguing[eval]`` when torchattacks is not installed.

    Raises:
        ValueError: for a name no attack is registered under (naming those that are), a key
            the named attack does not take (naming the attack and its keys), or ``mean`` or
            ``std`` given twice; the attack's constructor raises for bad values.
    """
    spec = dict(spec)
    if is_peer_spec(spec):
        return _peer_attack(model, spec, mean, std)
    entry = attack_entry(str(spec.pop("name", "lbfgs")).lower())
    try:
        entry.check_keys(spec)
    except ValueError as error:
        raise ValueError(f"attack.{error}") from None
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            if spec.get(key) is not None:
                raise ValueError(f"attack.{key}: given both in the spec and as an argument")
            spec[key] = value
    return entry.load()(model, **{key: value for key, value in spec.items() if value is not None})


def _peer_attack(
    model: nn.Module, spec: dict[str, Any], mean: Statistic | None, std: Statistic | None
) -> PeerAttack:
    """:class:`PeerAttack` from a ``torchattacks.CLASS`` spec (see :func:`build_attack`)."""
    layer = spec.pop("layer", None)
    if layer not in (None, "input"):
        raise ValueError(f"attack.layer {layer!r}: torchattacks attacks perturb the input only")
    bounds = spec.pop("bounds", None)
    if bounds is not None and tuple(float(b) for b in bounds) != (0.0, 1.0):
        raise ValueError(f"attack.bounds {bounds!r}: torchattacks attacks work in [0, 1]")
    for key, value in (("mean", mean), ("std", std)):
        if value is not None and spec.get(key) is not None:
            raise ValueError(f"attack.{key}: given both in the spec and as an argument")
    mean = mean if mean is not None else spec.pop("mean", None)
    std = std if std is not None else spec.pop("std", None)
    spec.pop("mean", None)
    spec.pop("std", None)
    dtype = spec.pop("compute_dtype", None)
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"attack.compute_dtype {dtype!r}: expected float32 or float64")
    precision = torch.float64 if dtype == "float64" else None
    return PeerAttack(model, spec, mean=mean, std=std, compute_dtype=precision)
