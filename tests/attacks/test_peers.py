"""Peer attacks (torchattacks, plain functions) through PeerAttack return our AttackResult."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from intriguing.attacks import FGSM, AttackResult, PeerAttack, build_attack

torchattacks = pytest.importorskip("torchattacks")


def test_torchattacks_pgd_by_name_returns_our_result(mlp, examples):
    x, y = examples
    attack = build_attack(mlp, {"name": "torchattacks.PGD", "eps": 0.3, "alpha": 0.05, "steps": 10})
    assert isinstance(attack, PeerAttack)
    result = attack(x, y)
    assert isinstance(result, AttackResult)
    assert result.adv.shape == x.shape and result.adv.dtype == x.dtype
    assert float((result.adv - x).abs().max()) <= 0.3 + 1e-6
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    with torch.no_grad():
        predicted = mlp(result.adv).argmax(dim=1)
    assert torch.equal(result.success, predicted != y)
    expected = (result.adv - x).flatten(1).pow(2).mean(dim=1).sqrt()
    assert torch.allclose(result.distortion, expected, atol=1e-6)
    assert result.success.float().mean() > 0.5
    assert torch.equal(result.clean_logits.argmax(1), mlp(x).argmax(1))
    assert int(result.gradient_evaluations[0]) == 10


def test_instance_is_run_on_our_forward_and_left_as_found(mlp, examples):
    x, y = examples
    other = nn.Linear(3, 3)
    peer = torchattacks.FGSM(other, eps=0.2)
    mlp.train()
    result = PeerAttack(mlp, peer)(x, y)
    assert mlp.training and all(m.training for m in mlp.modules())
    mlp.eval()
    assert peer.model is other
    ours = FGSM(mlp, epsilon=0.2)(x, y)
    # FGSM from torchattacks and ours agree where the gradient's sign is defined.
    assert (result.adv == ours.adv).float().mean() > 0.95


def test_normalisation_is_ours_and_a_set_normalization_used_is_adopted(mlp, examples):
    x, y = examples
    mean, std = 0.5, 0.25
    inner = mlp

    class Normalised(nn.Module):  # takes normalised inputs: (x - mean) / std
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return self.inner(h * std + mean)

    model = Normalised()
    peer = torchattacks.FGSM(model, eps=0.2)
    peer.set_normalization_used(mean=[mean], std=[std])
    adopted = PeerAttack(model, peer)(x, y)
    given = build_attack(model, {"name": "torchattacks.FGSM", "eps": 0.2}, mean=mean, std=std)
    plain = PeerAttack(mlp, {"name": "torchattacks.FGSM", "eps": 0.2})(x, y)
    assert torch.allclose(adopted.adv, plain.adv, atol=1e-5)
    assert torch.allclose(given(x, y).adv, plain.adv, atol=1e-5)
    with pytest.raises(ValueError, match="set_normalization_used"):
        PeerAttack(model, peer, mean=mean, std=std)


def test_float64_keeps_the_gradient_of_an_overconfident_model(examples):
    x, y = examples
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():  # a logit margin of 20-35: 1.0 in float32, below 1 in float64
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[y[0]] = 0.8
    labels = torch.full_like(y, int(y[0]))
    spec = {"name": "torchattacks.FGSM", "eps": 0.1}
    with pytest.warns(RuntimeWarning, match="compute_dtype=torch.float64"):
        low = build_attack(model, spec)(x, labels)
    high = build_attack(model, {**spec, "compute_dtype": "float64"})(x, labels)
    assert float(low.distortion.max()) == 0.0  # float32: zero gradient, nothing moves
    assert float(high.distortion.min()) > 0.05  # float64: every example moves
    assert high.adv.dtype == x.dtype


def test_plain_function_and_targets(mlp, examples):
    x, y = examples

    def shift(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (images + 0.05).clamp(0, 1)

    result = PeerAttack(mlp, shift)(x, y)
    assert torch.allclose(result.adv, (x + 0.05).clamp(0, 1))
    with pytest.raises(ValueError, match="untargeted"):
        PeerAttack(mlp, shift)(x, y, (y + 1) % 10)
    targeted = build_attack(
        mlp, {"name": "torchattacks.PGD", "eps": 0.5, "alpha": 0.05, "steps": 20}
    )
    target = (y + 1) % 10
    outcome = targeted(x, y, target)
    assert outcome.targeted and outcome.success.float().mean() > 0.5
    assert torch.equal(outcome.success, outcome.logits.argmax(1) == target)
    with pytest.raises(ValueError, match="no targeted mode"):
        build_attack(mlp, {"name": "torchattacks.AutoAttack", "eps": 0.1})(x, y, target)


def test_bad_specifications_are_named(mlp):
    with pytest.raises(ValueError, match="no attack 'PDG'"):
        build_attack(mlp, {"name": "torchattacks.PDG"})
    with pytest.raises(ValueError, match=r"attack\.epsilon: torchattacks.PGD takes no"):
        build_attack(mlp, {"name": "torchattacks.PGD", "epsilon": 0.1})
    with pytest.raises(ValueError, match="input only"):
        build_attack(mlp, {"name": "torchattacks.PGD", "layer": "fc1"})
    with pytest.raises(TypeError, match="expected a torchattacks attack"):
        PeerAttack(mlp, 3)


def test_missing_torchattacks_names_the_extra(mlp, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match=r"intriguing\[eval\]"):
        build_attack(mlp, {"name": "torchattacks.PGD"})


def test_autoattack_runs_in_float64(mlp, examples):
    x, y = examples
    attack = build_attack(
        mlp,
        {
            "name": "torchattacks.AutoAttack",
            "eps": 0.3,  # large: APGD fools all, the slower components have nothing left
            "version": "standard",
            "n_classes": 10,
            "compute_dtype": "float64",
        },
    )
    result = attack(x[:8], y[:8])
    assert result.adv.dtype == torch.float32
    assert float((result.adv - x[:8]).abs().max()) <= 0.3 + 1e-6
    assert not math.isnan(result.success_rate)


def test_fab_runs_in_float64(mlp, examples):
    x, y = examples
    spec = {"name": "torchattacks.FAB", "eps": 0.3, "steps": 5, "n_classes": 10}
    result = build_attack(mlp, {**spec, "compute_dtype": "float64"})(x[:6], y[:6])
    assert result.adv.dtype == x.dtype and result.success.any()


def test_attacks_import_no_torchattacks():
    """torchattacks is an optional extra: importing our attacks and the evaluation must not
    need it."""
    import subprocess
    import sys

    code = (
        "import sys, intriguing.attacks, intriguing.analysis.evaluation; "
        "print('torchattacks' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
