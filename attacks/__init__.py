"""Adversarial attacks in plain PyTorch, at the input or at any named hidden layer.

The paper's box-constrained L-BFGS attack (Szegedy et al. 2013, Section 4.1), batched with
one independent problem per example, and the FGSM, PGD and Gaussian-noise baselines. Every
attack is called as ``attack(x, y, target=None) -> AttackResult``; :func:`minimum_distortion`
gives the paper's Table 1 column over a data set, :func:`build_attack` an attack from a
configuration mapping.
"""

from attacks.base import (
    Attack,
    AttackResult,
    LayeredModel,
    Problem,
    attack_loss,
    distortion,
    is_adversarial,
    scale_to_distortion,
)
from attacks.budget import FGSM, PGD, BudgetAttack
from attacks.evaluation import MinimumDistortion, minimum_distortion
from attacks.factory import build_attack
from attacks.lbfgs import LBFGSAttack
from attacks.noise import GaussianNoise

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "BudgetAttack",
    "GaussianNoise",
    "LBFGSAttack",
    "LayeredModel",
    "MinimumDistortion",
    "Problem",
    "attack_loss",
    "build_attack",
    "distortion",
    "is_adversarial",
    "minimum_distortion",
    "scale_to_distortion",
]
