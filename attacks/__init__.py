"""Adversarial attacks in plain PyTorch, at the input or at any named hidden layer.

The paper's box-constrained L-BFGS attack (Szegedy et al. 2013, Section 4.1), batched with
one independent problem per example, and the FGSM, PGD and Gaussian-noise baselines; other
attacks register themselves from their own module (Carlini-Wagner L2, :mod:`attacks.cw`).
Every attack is called as ``attack(x, y, target=None) -> AttackResult``;
:func:`minimum_distortion` gives the paper's Table 1 column over a data set,
:func:`build_attack` an attack from a configuration mapping, by the name it is registered
under (:mod:`attacks.registry`, where a user registers their own). :class:`PeerAttack` runs
a peer library's attack (torchattacks, the optional ``intriguing[eval]`` extra, imported only
when used) as one of ours.

The names below are imported when first used (PEP 562), so that importing
:mod:`attacks.registry` (the command line's choices, the config schema) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intriguing.registry import lazy_exports

if TYPE_CHECKING:
    from intriguing.attacks.base import (
        Attack,
        AttackResult,
        LayeredModel,
        Problem,
        attack_loss,
        distortion,
        evaluating,
        is_adversarial,
        scale_to_distortion,
    )
    from intriguing.attacks.budget import FGSM, PGD, BudgetAttack
    from intriguing.attacks.evaluation import MinimumDistortion, minimum_distortion
    from intriguing.attacks.factory import build_attack
    from intriguing.attacks.layers import (
        INPUT,
        get_layer,
        layer_activations,
        layer_path,
        layer_range,
        perturb_layer,
        register_layer_range,
    )
    from intriguing.attacks.lbfgs import LBFGSAttack
    from intriguing.attacks.noise import GaussianNoise
    from intriguing.attacks.peers import PeerAttack
    from intriguing.attacks.registry import AttackSettings, register_attack

#: Where each public name is defined.
_MODULES = {
    "base": (
        "Attack",
        "AttackResult",
        "LayeredModel",
        "Problem",
        "attack_loss",
        "distortion",
        "evaluating",
        "is_adversarial",
        "scale_to_distortion",
    ),
    "budget": ("FGSM", "PGD", "BudgetAttack"),
    "evaluation": ("MinimumDistortion", "minimum_distortion"),
    "factory": ("build_attack",),
    "layers": (
        "INPUT",
        "get_layer",
        "layer_activations",
        "layer_path",
        "layer_range",
        "perturb_layer",
        "register_layer_range",
    ),
    "lbfgs": ("LBFGSAttack",),
    "noise": ("GaussianNoise",),
    "peers": ("PeerAttack",),
    "registry": ("AttackSettings", "register_attack"),
}

__all__ = [
    "FGSM",
    "INPUT",
    "PGD",
    "Attack",
    "AttackResult",
    "AttackSettings",
    "BudgetAttack",
    "GaussianNoise",
    "LBFGSAttack",
    "LayeredModel",
    "MinimumDistortion",
    "PeerAttack",
    "Problem",
    "attack_loss",
    "build_attack",
    "distortion",
    "evaluating",
    "get_layer",
    "is_adversarial",
    "layer_activations",
    "layer_path",
    "layer_range",
    "minimum_distortion",
    "perturb_layer",
    "register_attack",
    "register_layer_range",
    "scale_to_distortion",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULES, __all__)
