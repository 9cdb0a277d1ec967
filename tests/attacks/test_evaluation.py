"""minimum_distortion: the paper's Table 1 column over a data set, and the saved set."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from intriguing.attacks import FGSM, LBFGSAttack, minimum_distortion


@pytest.fixture
def loader(examples):
    x, y = examples
    return DataLoader(TensorDataset(x, y), batch_size=10)


def test_mean_minimum_distortion_and_saved_set(mlp, examples, loader, tmp_path):
    x, y = examples
    path = tmp_path / "sets" / "adv.pt"
    summary = minimum_distortion(mlp, loader, save=path, progress=False)
    direct = LBFGSAttack(mlp)(x, y)
    assert summary.examples == len(x)
    assert summary.success_rate == 1.0 and summary.adversarial_error == 1.0
    assert summary.clean_error == 0.0 and summary.already_adversarial == 0
    assert summary.mean_distortion == pytest.approx(float(direct.distortion.mean()), rel=1e-3)
    assert summary.gradient_evaluations > 0 and summary.saved == str(path)
    saved = torch.load(path, weights_only=True)
    assert set(saved) >= {"adv", "x", "y", "distortion", "success", "layer", "attack"}
    assert torch.equal(saved["x"], x) and torch.equal(saved["y"], y)
    assert saved["adv"].shape == x.shape and saved["attack"] == "lbfgs"
    with torch.no_grad():
        assert bool((mlp(saved["adv"]).argmax(dim=1) != y).all())


def test_misclassified_examples_count_with_zero(softmax_regression, examples):
    x, y = examples
    with torch.no_grad():
        predicted = softmax_regression(x).argmax(dim=1)
    labels = torch.where(torch.arange(len(y)) % 4 == 0, (predicted + 1) % 10, y)
    loader = DataLoader(TensorDataset(x, labels), batch_size=8)
    summary = minimum_distortion(softmax_regression, loader, progress=False)
    values = LBFGSAttack(softmax_regression)(x, labels).distortion
    assert summary.already_adversarial == 6
    assert summary.clean_error == pytest.approx(6 / 24)
    assert summary.mean_distortion == pytest.approx(float(values.mean()), rel=1e-3)


def test_budget_attacks_are_bisected_and_targets_followed(mlp, loader, tmp_path):
    summary = minimum_distortion(
        mlp,
        loader,
        attack=FGSM(mlp, epsilon=0.05),
        target=lambda y: (y + 1) % 10,
        save=tmp_path / "fgsm.pt",
        progress=False,
    )
    saved = torch.load(tmp_path / "fgsm.pt", weights_only=True)
    assert torch.equal(saved["target"], (saved["y"] + 1) % 10)
    success = saved["success"]
    with torch.no_grad():
        predicted = mlp(saved["adv"]).argmax(dim=1)
    assert torch.equal(predicted[success], saved["target"][success])
    assert summary.success_rate == pytest.approx(float(success.float().mean()))


def test_hidden_layer_sets_keep_the_clean_activation(mlp, loader, tmp_path):
    attack = LBFGSAttack(mlp, layer="fc2", search_steps=4)
    minimum_distortion(mlp, loader, attack=attack, save=tmp_path / "l.pt", progress=False)
    saved = torch.load(tmp_path / "l.pt", weights_only=True)
    assert saved["layer"] == "fc2" and saved["adv"].shape == saved["origin"].shape == (24, 32)
