"""The batched L-BFGS attack against SciPy's L-BFGS-B run one example at a time.

The reference solves the same problem, ``|r|^2 + c * loss(x + r)`` inside the box, with the
same search over ``c`` (expand by the factor until the outcome flips, then bisect
geometrically; each solve after the first starts at the previous minimiser, as the attack's
default ``warm_start``), the same adversarial margin, and keeps the smallest adversarial
point among everything it evaluated. The model runs in float64 for the reference, which is
converged to SciPy's default (tight) tolerances: the batched attack must match its success
and come within 2% of its mean distortion.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import fmin_l_bfgs_b

from intriguing.attacks import LBFGSAttack
from intriguing.attacks.base import adversarial_margin, attack_loss
from intriguing.trainers import StagedNetwork


def reference_one(
    model: StagedNetwork,
    x0: torch.Tensor,
    labels: torch.Tensor,
    goal: torch.Tensor | None,
    attack: LBFGSAttack,
) -> float:
    """One example's smallest adversarial distortion found by SciPy (nan: none found)."""
    n = x0.numel()

    def adversarial(logits: torch.Tensor) -> bool:
        return adversarial_margin(logits, labels, goal).item() > attack.margin

    with torch.no_grad():
        if adversarial(model(x0)):
            return 0.0
    best = [math.inf]

    def objective(z: np.ndarray, c: float) -> tuple[float, np.ndarray]:
        point = torch.from_numpy(z).view_as(x0).requires_grad_(True)
        logits = model(point)
        squared = (point - x0).pow(2).sum()
        value = squared + c * attack_loss(logits, labels, goal).sum()
        (grad,) = torch.autograd.grad(value, point)
        if adversarial(logits.detach()) and squared.item() < best[0]:
            best[0] = squared.item()
        return value.item(), grad.numpy().ravel().astype(float)

    lower, upper, c = 0.0, math.inf, attack.initial_c
    start = x0.numpy().ravel().copy()
    for _ in range(attack.search_steps):
        z, _, _ = fmin_l_bfgs_b(
            objective, start, args=(c,), bounds=[(0.0, 1.0)] * n, maxiter=attack.max_iterations
        )
        with torch.no_grad():
            success = adversarial(model(torch.from_numpy(z).view_as(x0)))
        if success:
            upper = min(upper, c)
        else:
            lower = max(lower, c)
        if math.isfinite(upper) and lower > 0:
            c = math.sqrt(lower * upper)
        elif math.isfinite(upper):
            c = c / attack.c_factor
        else:
            c = c * attack.c_factor
        start = z if attack.warm_start else start
    return math.sqrt(best[0] / n) if math.isfinite(best[0]) else math.nan


def scipy_reference(
    model: StagedNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    attack: LBFGSAttack,
) -> np.ndarray:
    """Per-example distortion (nan: failure), one SciPy problem at a time, in float64."""
    model = copy.deepcopy(model).double().eval()
    return np.array(
        [
            reference_one(
                model,
                x[i : i + 1].double(),
                y[i : i + 1],
                None if target is None else target[i : i + 1],
                attack,
            )
            for i in range(len(x))
        ]
    )


def compare(model: StagedNetwork, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> None:
    target = (y + 1) % 10 if targeted else None
    attack = LBFGSAttack(model)
    result = attack(x, y, target)
    reference = scipy_reference(model, x, y, target, attack)
    reference_success = ~np.isnan(reference)
    assert result.success.numpy().tolist() == reference_success.tolist()
    ours = result.distortion.numpy()[reference_success]
    theirs = reference[reference_success]
    print(f"mean distortion: ours {ours.mean():.5f}, scipy {theirs.mean():.5f}")
    assert ours.mean() <= 1.02 * theirs.mean(), (ours.mean(), theirs.mean())


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_softmax_regression_matches_scipy(softmax_regression, examples, targeted):
    x, y = examples
    compare(softmax_regression, x[:12], y[:12], targeted)


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_mlp_matches_scipy(mlp, examples, targeted):
    x, y = examples
    compare(mlp, x[:8], y[:8], targeted)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["softmax_regression", "mlp"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_matches_scipy_on_more_examples(request, model, many_examples, targeted):
    x, y = many_examples
    compare(request.getfixturevalue(model), x, y, targeted)
