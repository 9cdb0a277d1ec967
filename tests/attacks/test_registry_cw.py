"""The attack registry (a user's own attack, typed config sections) and Carlini-Wagner L2."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from intriguing.attacks import Attack, AttackSettings, build_attack, register_attack
from intriguing.attacks.cw import CarliniWagnerL2
from intriguing.attacks.registry import ATTACKS, attack_entry
from intriguing.configs import ConfigError, compose


@dataclass
class ShiftConfig(AttackSettings):
    amount: float | None = None


@register_attack("test-shift", ShiftConfig, label="Shift")
class Shift(Attack):
    """A user's attack, registered in the user's code: adds ``amount`` to every pixel."""

    def __init__(self, model, *, amount=0.5, bounds=None, layer=None, mean=None, std=None):
        super().__init__(model, bounds=bounds, layer=layer, mean=mean, std=std)
        self.amount = amount

    def _perturb(self, problem):
        adv = problem.clamp(problem.origin + self.amount)
        return adv, torch.zeros(len(adv), dtype=torch.long), {}


def test_a_users_attack_is_built_and_composed_by_name(mlp, examples):
    attack = build_attack(mlp, {"name": "test-shift", "amount": 0.25})
    assert isinstance(attack, Shift) and attack.amount == 0.25 and attack.name == "test-shift"
    assert "test-shift" in ATTACKS and attack_entry("test-shift").label == "Shift"
    assert build_attack(mlp, {"name": "test-shift"}).amount == 0.5  # the constructor's default
    x, y = examples
    assert (attack(x[:4], y[:4]).adv >= 0.25 - 1e-6).all()
    config = compose(["backfeed.generator.name=test-shift", "backfeed.generator.amount=0.1"])
    assert config.backfeed.generator.amount == 0.1
    with pytest.raises(ValueError, match=r"attack\.steps: unknown key for attack 'test-shift'"):
        build_attack(mlp, {"name": "test-shift", "steps": 3})


def test_a_key_the_attack_does_not_take_is_refused_when_composing():
    with pytest.raises(
        ConfigError, match=r"backfeed\.generator\.steps: unknown key for attack 'fgsm'"
    ):
        compose(["backfeed.generator.name=fgsm", "backfeed.generator.steps=3"])
    with pytest.raises(ConfigError, match=r"evaluation\.attack\.steps: .*Integer"):
        compose(["evaluation.attack.name=pgd", "evaluation.attack.steps=many"])
    # Changing the attack drops the earlier attack's settings the new one does not take.
    config = compose(["experiment=backfeed-fc100", "backfeed.generator.name=pgd"])
    assert config.backfeed.generator.name == "pgd"
    assert "search_steps" not in config.backfeed.generator
    assert config.backfeed.generator.steps == 10  # PGD's own default, written out


def test_cw_is_registered_from_its_own_module():
    assert attack_entry("cw").load() is CarliniWagnerL2
    config = compose(
        ["evaluation.distortion_attack.name=cw", "evaluation.distortion_attack.steps=5"]
    )
    assert config.evaluation.distortion_attack.steps == 5


def test_cw_finds_small_l2_adversarials_like_torchattacks(mlp, examples):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = examples
    x, y = x[:16], y[:16]
    # One c, the peer's setting: the same objective, change of variables and optimiser.
    ours = CarliniWagnerL2(mlp, initial_c=10.0, search_steps=1, steps=100, learning_rate=0.01)(x, y)
    peer = torchattacks.CW(mlp, c=10, kappa=0, steps=100, lr=0.01)(x, y)
    with torch.no_grad():
        peer_success = mlp(peer).argmax(1) != y
    peer_l2 = (peer - x).flatten(1).norm(dim=1)
    our_l2 = (ours.adv - x).flatten(1).norm(dim=1)
    assert ours.success.sum() >= peer_success.sum() - 1
    both = ours.success & peer_success
    assert both.sum() >= 8
    assert our_l2[both].mean() <= 1.1 * peer_l2[both].mean()
    # The binary search over c finds smaller perturbations than one c.
    searched = CarliniWagnerL2(mlp, initial_c=10.0, search_steps=4, steps=100)(x, y)
    assert searched.success.sum() >= ours.success.sum()
    assert (searched.adv - x).flatten(1).norm(dim=1)[both].mean() <= our_l2[both].mean() + 1e-6
    assert torch.isnan(searched.c[~searched.success]).all() and searched.c is not None


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_cw_in_any_precision_and_targeted(mlp, examples, dtype):
    x, y = examples
    x, y = x[:6].to(dtype), y[:6]
    target = (y + 1) % 10
    result = CarliniWagnerL2(mlp, confidence=1.0, search_steps=2, steps=30)(x, y, target)
    assert result.adv.dtype == dtype and result.targeted
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    margin = result.logits.gather(1, target[:, None])[:, 0] - result.logits.scatter(
        1, target[:, None], -torch.inf
    ).amax(1)
    assert (margin[result.success] > 0).all()
    assert (result.gradient_evaluations == 60).all()
