"""Attacks from a configuration mapping (an ``AttackConfig`` section, or a plain dict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from intriguing.attacks.base import Attack, Statistic
from intriguing.attacks.budget import FGSM, PGD
from intriguing.attacks.lbfgs import LBFGSAttack
from intriguing.attacks.noise import GaussianNoise
from intriguing.attacks.peers import PeerAttack, is_peer_spec

#: Every key a specification may hold; each attack reads the ones that concern it.
SPEC_KEYS = (
    "name",
    "epsilon",
    "norm",
    "steps",
    "step_size",
    "stddev",
    "distortion",
    "search_steps",
    "max_iterations",
    "layer",
    "bounds",
    "mean",
    "std",
)
ATTACKS = ("lbfgs", "fgsm", "pgd", "noise")


def build_attack(
    model: nn.Module,
    spec: Mapping[str, Any],
    *,
    mean: Statistic | None = None,
    std: Statistic | None = None,
) -> Attack:
    """The attack that ``spec`` describes, for ``model``.

    ``spec`` has the fields of ``configs.schema.AttackConfig``: ``name`` (lbfgs, fgsm, pgd,
    noise), ``epsilon``, ``norm``, ``steps``, ``step_size`` (FGSM/PGD), ``stddev`` or
    ``distortion`` (noise), ``search_steps`` and ``max_iterations`` (L-BFGS; ``None`` keeps
    the benchmarked defaults), ``layer``, ``bounds``, ``mean`` and ``std`` (all attacks; see
    :class:`attacks.Attack`). ``mean`` and ``std`` may be given here instead of in ``spec``
    (the data module's normalisation, say), not in both. Keys that concern another attack
    are ignored; unknown keys raise a ``ValueError`` naming them.

    A ``name`` ``"torchattacks.CLASS"`` builds a :class:`attacks.peers.PeerAttack`: the other
    keys are the torchattacks constructor's (``eps``, ``alpha``, ``steps``, ...), besides
    ``mean``, ``std``, ``layer`` (input only), ``bounds`` (``[0, 1]`` only) and
    ``compute_dtype`` (``"float32"``, the default, or ``"float64"``, which keeps the
    cross-entropy gradient of overconfident models; see :mod:`attacks.peers`). Raises
    ``ImportError`` naming ``intriguing[eval]`` when torchattacks is not installed.
    """
    spec = dict(spec)
    if is_peer_spec(spec):
        return _peer_attack(model, spec, mean, std)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"attack.{unknown[0]}: unknown key (known: {', '.join(SPEC_KEYS)})")
    name = str(spec.get("name", "lbfgs")).lower()
    if name not in ATTACKS:
        raise ValueError(f"attack.name {name!r}: expected one of {', '.join(ATTACKS)}")
    for key, value in (("mean", mean), ("std", std)):
        if value is not None and spec.get(key) is not None:
            raise ValueError(f"attack.{key}: given both in the spec and as an argument")
    common: dict[str, Any] = {
        "layer": spec.get("layer"),
        "bounds": spec.get("bounds"),
        "mean": mean if mean is not None else spec.get("mean"),
        "std": std if std is not None else spec.get("std"),
    }
    if common["bounds"] is not None:
        common["bounds"] = tuple(float(b) for b in common["bounds"])

    def given(*keys: str) -> dict[str, Any]:
        return {key: spec[key] for key in keys if spec.get(key) is not None}

    if name == "lbfgs":
        return LBFGSAttack(model, **common, **given("search_steps", "max_iterations"))
    if name == "fgsm":
        return FGSM(model, **common, **given("epsilon", "norm"))
    if name == "pgd":
        return PGD(model, **common, **given("epsilon", "norm", "steps", "step_size"))
    if spec.get("distortion") is not None:
        return GaussianNoise(model, **common, stddev=None, distortion=float(spec["distortion"]))
    return GaussianNoise(model, **common, **given("stddev"))


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
