"""L-BFGS with rivals: the two-class problems against the nearest classes beside the plain one."""

from __future__ import annotations

import pytest
import torch

from intriguing.attacks import LBFGSAttack


def l2(adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (adv - x).flatten(1).norm(dim=1)


def test_rivals_never_lose_to_the_plain_problem(mlp, examples):
    """The plain untargeted problem is one of the rows: per example, never further (up to
    float32 rounding of the bigger batch), every claim a fresh misclassification in the box."""
    x, y = examples
    plain = LBFGSAttack(mlp)(x, y)
    rivals = LBFGSAttack(mlp, rivals=2)(x, y)
    assert bool(rivals.success.all())
    assert rivals.adv.min() >= 0 and rivals.adv.max() <= 1
    with torch.no_grad():
        assert bool((mlp(rivals.adv).argmax(dim=1) != y).all())
    assert bool((l2(rivals.adv, x) <= l2(plain.adv, x) * (1 + 1e-3)).all())
    assert float(l2(rivals.adv, x).mean()) < float(l2(plain.adv, x).mean())
    # Three problems per example, plus the ranking's nine gradients at x.
    assert bool((rivals.gradient_evaluations > plain.gradient_evaluations + 9).all())
    assert bool((rivals.c > 0).all())


def test_every_rival_finds_the_exact_distance_of_a_linear_model(softmax_regression, examples):
    """Softmax regression in a box too wide to matter: the smallest L2 perturbation that
    misclassifies is DeepFool's ``min_j |z_y - z_j| / |w_y - w_j|``; with every class a rival
    the attack finds it (each two-class problem is convex)."""
    x, y = examples
    result = LBFGSAttack(softmax_regression, bounds=(-100.0, 100.0), rivals=9)(x, y)
    exact = []
    for row in range(len(x)):
        point = x[row : row + 1].clone().requires_grad_(True)
        logits = softmax_regression(point)[0]
        distances = []
        for j in range(10):
            if j == int(y[row]):
                continue
            gap = logits[y[row]] - logits[j]
            (grad,) = torch.autograd.grad(gap, point, retain_graph=True)
            distances.append(float(gap.detach()) / float(grad.norm()))
        exact.append(min(distances))
    found = l2(result.adv, x)
    assert bool(result.success.all())
    assert torch.allclose(found, torch.tensor(exact), rtol=0.01)


def test_rivals_are_ignored_by_targeted_attacks(softmax_regression, examples):
    x, y = examples
    target = (y + 3) % 10
    plain = LBFGSAttack(softmax_regression)(x, y, target)
    rivals = LBFGSAttack(softmax_regression, rivals=3)(x, y, target)
    assert torch.equal(plain.adv, rivals.adv)
    assert torch.equal(plain.gradient_evaluations, rivals.gradient_evaluations)


def test_rivals_at_a_hidden_layer(mlp, examples):
    """A hidden-layer attack runs the network from its input per row: the rows of the
    enlarged batch must find their own inputs."""
    x, y = examples
    plain = LBFGSAttack(mlp, layer="fc1")(x, y)
    rivals = LBFGSAttack(mlp, layer="fc1", rivals=1)(x, y)
    assert torch.equal(rivals.success, plain.success)
    assert bool((rivals.distortion <= plain.distortion * (1 + 1e-3)).all())


def test_rejects_negative_rivals(mlp):
    with pytest.raises(ValueError, match="rivals"):
        LBFGSAttack(mlp, rivals=-1)
