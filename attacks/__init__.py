"""Adversarial attacks in plain PyTorch, at the input or at any named hidden layer.

The paper's box-constrained L-BFGS attack (Szegedy et al. 2013, Section 4.1), batched with
one independent problem per example, and the FGSM, PGD and Gaussian-noise baselines. Every
attack is called as ``attack(x, y, target=None) -> AttackResult``.
"""

from attacks.base import Attack, AttackResult, LayeredModel, Problem, distortion
from attacks.lbfgs import LBFGSAttack

__all__ = [
    "Attack",
    "AttackResult",
    "LBFGSAttack",
    "LayeredModel",
    "Problem",
    "distortion",
]
