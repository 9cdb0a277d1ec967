"""Behaviour of the L-BFGS attack: the box, honest successes, independence, the c search."""

from __future__ import annotations

import math

import pytest
import torch

from intriguing.attacks import LBFGSAttack, distortion


def test_untargeted_attack_succeeds_inside_the_box(mlp, examples):
    x, y = examples
    result = LBFGSAttack(mlp)(x, y)
    assert result.adv.shape == x.shape
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    assert bool(result.success.all())
    with torch.no_grad():
        predicted = mlp(result.adv).argmax(dim=1)
    assert bool((predicted != y).all())
    assert torch.allclose(result.distortion, distortion(result.adv, x))
    assert bool((result.distortion > 0).all())
    assert not result.targeted


def test_targeted_attack_hits_every_target(softmax_regression, examples):
    x, y = examples
    target = (y + 3) % 10
    result = LBFGSAttack(softmax_regression)(x, y, target)
    assert result.targeted
    assert bool(result.success.all())
    with torch.no_grad():
        predicted = softmax_regression(result.adv).argmax(dim=1)
    assert torch.equal(predicted, target)


def test_claimed_successes_are_fresh_forward_passes(mlp, examples):
    """Few search steps make failures likely: every claim must hold, every failure be x."""
    x, y = examples
    result = LBFGSAttack(mlp, search_steps=1, initial_c=1e-3, max_iterations=5)(x, y)
    assert not bool(result.success.all())
    with torch.no_grad():
        predicted = mlp(result.adv).argmax(dim=1)
    assert torch.equal(result.success, predicted != y)
    failed = ~result.success
    assert torch.equal(result.adv[failed], x[failed])
    assert bool(result.c[failed].isnan().all())


def test_reports_c_and_gradient_evaluations(mlp, examples):
    x, y = examples
    attack = LBFGSAttack(mlp)
    result = attack(x, y)
    assert result.c is not None and bool((result.c > 0).all())
    # One evaluation at x, then at least one per solve, at most the limits allow.
    evaluations = result.gradient_evaluations
    assert bool((evaluations > attack.search_steps).all())
    limit = 1 + attack.search_steps * attack.max_iterations * (1 + attack.line_search_steps)
    assert bool((evaluations <= limit).all())
    assert result.total_gradient_evaluations == int(evaluations.sum())


def test_smaller_c_weakens_the_attack(softmax_regression, examples):
    """The c search matters: a single solve at a tiny c fails where the search succeeds."""
    x, y = examples
    weak = LBFGSAttack(softmax_regression, search_steps=1, initial_c=1e-4)(x, y)
    strong = LBFGSAttack(softmax_regression)(x, y)
    assert weak.success_rate < strong.success_rate == 1.0


def test_examples_do_not_depend_on_each_other(mlp, examples):
    """An example attacked alone, or beside other examples, gets the same result.

    Up to float32 rounding: batches of other sizes take other matrix-multiply paths, which
    may move a trajectory by a step, never the outcome or the distortion beyond 0.1%.
    """
    x, y = examples
    together = LBFGSAttack(mlp)(x[:6], y[:6])
    swapped = LBFGSAttack(mlp)(torch.cat((x[:3], x[12:15])), torch.cat((y[:3], y[12:15])))
    for i in range(6):
        alone = LBFGSAttack(mlp)(x[i : i + 1], y[i : i + 1])
        others = [(alone, 0)] + ([(swapped, i)] if i < 3 else [])
        for result, row in others:
            assert bool(result.success[row]) == bool(together.success[i])
            assert math.isclose(
                float(result.distortion[row]), float(together.distortion[i]), rel_tol=1e-3
            )
            difference = abs(
                int(result.gradient_evaluations[row] - together.gradient_evaluations[i])
            )
            assert difference <= max(2, 0.1 * int(together.gradient_evaluations[i]))


def test_already_adversarial_examples_cost_nothing(softmax_regression, examples):
    x, y = examples
    with torch.no_grad():
        wrong = softmax_regression(x).argmax(dim=1)
    labels = torch.where(torch.arange(len(y)) < 4, (wrong + 1) % 10, y)  # first 4 mislabeled
    result = LBFGSAttack(softmax_regression)(x, labels)
    assert bool(result.success.all())
    assert torch.equal(result.distortion[:4], torch.zeros(4))
    assert torch.equal(result.c[:4], torch.zeros(4))
    assert torch.equal(result.gradient_evaluations[:4], torch.ones(4, dtype=torch.long))
    assert torch.equal(result.adv[:4], x[:4])


def test_box_is_a_constraint_of_the_optimiser(mlp, examples):
    """With a narrow box the attack still succeeds where it can and never leaves it."""
    x, y = examples
    x = x.clamp(0.2, 0.8)
    result = LBFGSAttack(mlp, bounds=(0.2, 0.8))(x, y)
    assert result.adv.min() >= 0.2 and result.adv.max() <= 0.8
    assert result.success_rate > 0.5
    with torch.no_grad():
        predicted = mlp(result.adv).argmax(dim=1)
    assert torch.equal(result.success, predicted != y)


def test_cold_start_solves_the_same_problem(softmax_regression, examples):
    """Convex case: starting every solve at x gives the same distortion as warm starts."""
    x, y = examples
    warm = LBFGSAttack(softmax_regression)(x, y)
    cold = LBFGSAttack(softmax_regression, warm_start=False)(x, y)
    assert torch.equal(warm.success, cold.success)
    assert torch.allclose(warm.distortion, cold.distortion, rtol=0.02)


def test_compaction_does_not_change_results(mlp, examples):
    x, y = examples
    compacting = LBFGSAttack(mlp, compact_fraction=0.0)(x, y)
    keeping = LBFGSAttack(mlp, compact_fraction=1.0)(x, y)
    assert torch.allclose(compacting.distortion, keeping.distortion, rtol=1e-4)


@pytest.mark.parametrize(
    "option",
    [
        {"search_steps": 0},
        {"max_iterations": 0},
        {"initial_c": 0.0},
        {"c_factor": 1.0},
        {"history": 0},
        {"margin": -1.0},
    ],
)
def test_rejects_invalid_options(mlp, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        LBFGSAttack(mlp, **option)
