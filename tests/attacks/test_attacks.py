"""What every attack shares: input checks, model state, Lightning-like contexts, layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intriguing.attacks import FGSM, PGD, GaussianNoise, LBFGSAttack, build_attack

FACTORIES = {
    "lbfgs": lambda model, **kw: LBFGSAttack(model, search_steps=3, **kw),
    "fgsm": lambda model, **kw: FGSM(model, epsilon=0.3, **kw),
    "pgd_linf": lambda model, **kw: PGD(model, epsilon=0.3, steps=5, **kw),
    "pgd_l2": lambda model, **kw: PGD(model, epsilon=3.0, norm="l2", steps=5, **kw),
    "noise": lambda model, **kw: GaussianNoise(model, stddev=0.3, **kw),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request):
    return FACTORIES[request.param]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y, t: (x.index_fill(0, torch.tensor([2]), float("nan")), y, t), "example 2"),
        (lambda x, y, t: (x.index_fill(0, torch.tensor([1, 3]), float("inf")), y, t), "1, 3"),
        (lambda x, y, t: (x + 0.5, y, t), "outside the bounds"),
        (lambda x, y, t: (x[:, :, :4], y, t), "cannot take it"),
        (lambda x, y, t: (x, y.index_fill(0, torch.tensor([4]), 10), t), r"y out of range.*4"),
        (lambda x, y, t: (x, y.float(), t), "integer"),
        (lambda x, y, t: (x, y[:-1], t), "shape"),
        (lambda x, y, t: (x, y, y.index_fill(0, torch.tensor([0]), -1)), "target out of range"),
        (lambda x, y, t: (x, y, torch.where(torch.arange(len(y)) == 5, y, t)), "example 5"),
    ],
    ids=["nan", "inf", "bounds", "shape", "label", "float-label", "length", "target", "same"],
)
def test_invalid_inputs_raise_naming_examples(make, mlp, examples, change, message):
    x, y = examples
    x, y, target = change(x[:8], y[:8], (y[:8] + 1) % 10)
    with pytest.raises(ValueError, match=message):
        make(mlp)(x, y, target)


def test_empty_batch_gives_empty_result(make, mlp):
    result = make(mlp)(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    assert result.adv.shape == (0, 1, 8, 8)
    assert len(result) == 0 and result.distortion.shape == (0,)


def test_mode_and_gradients_are_restored(make):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 10))
    model.train()
    model[2].eval()  # a submodule in its own mode must keep it
    marker = [torch.full_like(p, 7.0) for p in model.parameters()]
    for parameter, grad in zip(model.parameters(), marker, strict=True):
        parameter.grad = grad.clone()
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6)
    seen: list[bool] = []
    model.register_forward_hook(lambda module, args, out: seen.append(module.training))
    make(model)(x, y)
    assert seen and not any(seen), "the attack must run the model in eval mode"
    assert model.training and model[1].training and not model[2].training
    for parameter, grad in zip(model.parameters(), marker, strict=True):
        assert torch.equal(parameter.grad, grad)


def test_works_under_inference_mode_and_no_grad(make, mlp, examples):
    x, y = examples
    with torch.inference_mode():
        inference_x = x[:6].clone()  # an inference tensor
        result = make(mlp)(inference_x, y[:6])
    assert result.adv.shape == (6, 1, 8, 8)
    with torch.no_grad():
        again = make(mlp)(x[:6], y[:6])
    assert again.adv.shape == (6, 1, 8, 8)


def test_runs_in_fp32_under_autocast(mlp, examples):
    x, y = examples
    plain = LBFGSAttack(mlp, search_steps=3)(x[:6], y[:6])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = LBFGSAttack(mlp, search_steps=3)(x[:6], y[:6])
    assert mixed.adv.dtype == torch.float32 and mixed.logits.dtype == torch.float32
    assert torch.allclose(plain.distortion, mixed.distortion, rtol=1e-4)


@pytest.mark.parametrize("layer", ["fc1", "fc2"])
def test_hidden_layer_attack_changes_the_prediction_through_the_rest(mlp, examples, layer):
    x, y = examples
    result = LBFGSAttack(mlp, layer=layer)(x[:10], y[:10])
    with torch.no_grad():
        clean = mlp.activations(x[:10], [layer])[layer]
        predicted = mlp.forward_from(layer, result.adv).argmax(dim=1)
    assert result.adv.shape == clean.shape == (10, 32)
    assert torch.equal(result.origin, clean)
    assert result.adv.min() >= 0, "a ReLU layer's box is [0, inf)"
    assert bool(result.success.all())
    assert torch.equal(predicted != y[:10], result.success)
    expected = (result.adv - clean).pow(2).mean(dim=1).sqrt()
    assert torch.allclose(result.distortion, expected)
    assert result.layer == layer


def test_every_attack_takes_a_layer(make, mlp, examples):
    x, y = examples
    result = make(mlp, layer="fc2")(x[:6], y[:6])
    assert result.adv.shape == (6, 32) and result.adv.min() >= 0
    with torch.no_grad():
        predicted = mlp.forward_from("fc2", result.adv).argmax(dim=1)
    assert torch.equal(result.success, predicted != y[:6])


def test_a_layer_the_model_lacks_is_named_at_construction():
    # Any nn.Module can be attacked at a named submodule (issue 11); before, a model without
    # the LayeredModel methods was refused with a TypeError naming forward_from.
    with pytest.raises(ValueError, match="unknown layer 'fc1' in Linear"):
        LBFGSAttack(nn.Linear(4, 2), layer="fc1")


def test_unknown_layer_is_named(mlp, examples):
    x, y = examples
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        LBFGSAttack(mlp, layer="fc9")(x[:2], y[:2])


def test_build_attack_from_a_config_mapping(mlp):
    pgd = build_attack(mlp, {"name": "pgd", "epsilon": 2.0, "norm": "l2", "steps": 7})
    assert isinstance(pgd, PGD) and pgd.epsilon == 2.0 and pgd.norm == "l2" and pgd.steps == 7
    lbfgs = build_attack(mlp, {"name": "lbfgs", "search_steps": None, "layer": "fc1"})
    assert isinstance(lbfgs, LBFGSAttack) and lbfgs.search_steps == 9 and lbfgs.layer == "fc1"
    noise = build_attack(mlp, {"name": "noise", "distortion": 0.1})
    assert isinstance(noise, GaussianNoise) and noise.matched
    with pytest.raises(ValueError, match=r"attack\.colour"):
        build_attack(mlp, {"name": "fgsm", "colour": 1})
    with pytest.raises(ValueError, match=r"attack\.name 'deepfool'"):
        build_attack(mlp, {"name": "deepfool"})


def test_build_attack_takes_the_config_schema(mlp):
    from intriguing.configs import compose, to_container

    spec = to_container(compose())["backfeed"]["generator"]  # the schema's default section
    assert isinstance(build_attack(mlp, spec), LBFGSAttack)
