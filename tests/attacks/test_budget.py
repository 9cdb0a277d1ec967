"""FGSM, PGD and Gaussian noise: budgets respected, honest successes, the budget search."""

from __future__ import annotations

import math

import pytest
import torch

from intriguing.attacks import FGSM, PGD, GaussianNoise, distortion


def linf(result):
    return (result.adv - result.origin).flatten(1).abs().amax(dim=1)


def l2(result):
    return (result.adv - result.origin).flatten(1).norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("kind", [FGSM, PGD])
def test_budget_and_box_are_respected(mlp, examples, kind, norm):
    x, y = examples
    epsilon = 0.2 if norm == "linf" else 1.5
    result = kind(mlp, epsilon=epsilon, norm=norm)(x, y)
    size = linf(result) if norm == "linf" else l2(result)
    assert bool((size <= epsilon + 1e-5).all())
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    with torch.no_grad():
        predicted = mlp(result.adv).argmax(dim=1)
    assert torch.equal(result.success, predicted != y)


def test_pgd_is_at_least_as_strong_as_fgsm(mlp, examples):
    x, y = examples
    fgsm = FGSM(mlp, epsilon=0.1)(x, y)
    pgd = PGD(mlp, epsilon=0.1, steps=20, random_start=False)(x, y)
    assert pgd.success_rate >= fgsm.success_rate
    assert pgd.success_rate > 0


@pytest.mark.parametrize("kind", [FGSM, PGD])
def test_targeted_steps_toward_the_target(softmax_regression, examples, kind):
    x, y = examples
    target = (y + 1) % 10
    result = kind(softmax_regression, epsilon=0.5)(x, y, target)
    with torch.no_grad():
        predicted = softmax_regression(result.adv).argmax(dim=1)
        before = softmax_regression(x).log_softmax(dim=1).gather(1, target[:, None])
        after = softmax_regression(result.adv).log_softmax(dim=1).gather(1, target[:, None])
    assert torch.equal(result.success, predicted == target)
    assert bool((after > before).all())


@pytest.mark.parametrize("kind", [FGSM, PGD])
def test_minimal_finds_small_budgets_for_every_example(mlp, examples, kind):
    x, y = examples
    attack = kind(mlp, epsilon=0.05)
    fixed = kind(mlp, epsilon=1.0)(x, y)
    smallest = attack.minimal(x, y)
    assert bool(smallest.success.all())
    assert bool((smallest.distortion <= fixed.distortion + 1e-6).all())
    with torch.no_grad():
        predicted = mlp(smallest.adv).argmax(dim=1)
    assert bool((predicted != y).all())


def test_pgd_random_start_is_reproducible_with_a_generator(mlp, examples):
    x, y = examples

    def run(seed):
        attack = PGD(mlp, epsilon=0.1, generator=torch.Generator().manual_seed(seed))
        return attack(x, y).adv

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_noise_has_the_given_stddev():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4096, 3))
    x = torch.full((8, 1, 64, 64), 0.5)
    result = GaussianNoise(model, stddev=0.05)(x, torch.zeros(8, dtype=torch.long))
    spread = (result.adv - x).flatten(1).std(dim=1)
    assert torch.allclose(spread, torch.full((8,), 0.05), rtol=0.05)
    assert torch.equal(result.gradient_evaluations, torch.zeros(8, dtype=torch.long))


def test_noise_matches_a_distortion_per_example_despite_the_box(mlp, examples):
    x, y = examples
    wanted = torch.linspace(0.02, 0.3, len(x))
    result = GaussianNoise(mlp, stddev=None)(x, y, distortion=wanted)
    assert torch.allclose(result.distortion, wanted, rtol=1e-4)
    assert torch.allclose(distortion(result.adv, x), wanted, rtol=1e-4)
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    fixed = GaussianNoise(mlp, distortion=0.1)(x, y)
    assert torch.allclose(fixed.distortion, torch.full((len(x),), 0.1), rtol=1e-4)


def test_noise_rejects_bad_distortions(mlp, examples):
    x, y = examples
    with pytest.raises(ValueError, match="distortion"):
        GaussianNoise(mlp)(x, y, distortion=torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        GaussianNoise(mlp)(x, y, distortion=-1.0)
    with pytest.raises(ValueError, match="stddev or distortion"):
        GaussianNoise(mlp, stddev=None)(x, y)


def test_invalid_budget_options(mlp):
    with pytest.raises(ValueError, match="norm 'l1'"):
        FGSM(mlp, norm="l1")
    with pytest.raises(ValueError, match=r"^PGD: epsilon=-1.0: must be finite and at least 0$"):
        PGD(mlp, epsilon=-1.0)
    with pytest.raises(ValueError, match=r"^FGSM: epsilon=inf: must be finite"):
        FGSM(mlp, epsilon=math.inf)
    with pytest.raises(ValueError, match="steps"):
        PGD(mlp, steps=0)
