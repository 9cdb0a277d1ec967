"""Attacks for any model (issue 11): a torchvision ResNet at a hidden layer, user modules
with declared ranges, every precision, Lightning's precision contexts, normalisation."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision
from torch import nn

from intriguing.attacks import FGSM, PGD, GaussianNoise, LBFGSAttack, build_attack
from intriguing.attacks.base import attack_loss


class Wrapper(nn.Module):
    """A user's wrapper: no LayeredModel methods, the network one level down."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean)[:, None, None])
        self.register_buffer("std", torch.tensor(std)[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def images(resnet) -> tuple[torch.Tensor, torch.Tensor]:
    """Four 3x32x32 images labelled with the ResNet's own predictions (all clean-correct)."""
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, resnet(x).argmax(dim=1)


def rest_after_layer3(resnet: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The ResNet from layer3's output on, written out by hand."""
    return resnet.fc(torch.flatten(resnet.avgpool(resnet.layer4(h)), 1))


def clean_layer3(resnet: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    return resnet.layer3(resnet.layer2(resnet.layer1(h)))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: FGSM(m, layer="layer3", epsilon=1.0),
        lambda m: PGD(m, layer="layer3", epsilon=1.0, steps=5),
        lambda m: LBFGSAttack(m, layer="layer3", search_steps=3, max_iterations=10),
    ],
    ids=["fgsm", "pgd", "lbfgs"],
)
def test_resnet_attacked_at_layer3(resnet, images, make):
    x, y = images
    result = make(Wrapper(resnet))(x, y)
    with torch.no_grad():
        origin = clean_layer3(resnet, x)
        predicted = rest_after_layer3(resnet, result.adv).argmax(dim=1)
    assert result.adv.shape == origin.shape == (4, 256, 2, 2)
    torch.testing.assert_close(result.origin, origin)
    assert result.adv.min() >= 0, "layer3 ends in a BasicBlock's ReLU: its box is [0, inf)"
    assert bool(result.success.all())
    assert torch.equal(result.success, predicted != y)
    assert result.layer == "layer3"


@pytest.mark.parametrize("layer", ["layer3", "layer3.0"])
def test_gradient_flows_through_the_skip_connections(resnet, images, layer):
    """An L2 FGSM step is the normalised gradient: it must equal the one computed by hand
    through the rest of the network, whose residual blocks read the layer's output twice."""
    x, y = images
    rest = {
        "layer3": lambda h: rest_after_layer3(resnet, h),
        "layer3.0": lambda h: rest_after_layer3(resnet, resnet.layer3[1](h)),
    }[layer]
    with torch.no_grad():
        h = clean_layer3(resnet, x) if layer == "layer3" else None
        if h is None:
            stem = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
            h = resnet.layer3[0](resnet.layer2(resnet.layer1(stem)))
    h = h.requires_grad_(True)
    (grad,) = torch.autograd.grad(attack_loss(rest(h), y, None).sum(), h)
    step = -grad / grad.flatten(1).norm(dim=1)[:, None, None, None]
    expected = (h.detach() + 0.5 * step).clamp(min=0)
    result = FGSM(resnet, layer=layer, epsilon=0.5, norm="l2")(x, y)
    torch.testing.assert_close(result.adv, expected, rtol=1e-4, atol=1e-5)


def test_a_user_module_with_a_declared_range():
    class Squash(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(16, 8)
            self.output_range = (0.0, 6.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 6 * torch.sigmoid(self.linear(x))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), Squash(), nn.Linear(8, 4))
    model.eval()
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    result = PGD(model, layer="3", epsilon=6.0, steps=10)(x, y)
    assert result.adv.shape == (8, 8)
    assert result.adv.min() >= 0 and result.adv.max() <= 6
    assert bool(result.success.any())


def _fp16_runs_on_cpu() -> bool:
    try:
        nn.Linear(4, 2).half()(torch.zeros(1, 4, dtype=torch.float16))
    except RuntimeError:
        return False
    return True


DTYPES = [
    torch.float64,
    torch.bfloat16,
    pytest.param(
        torch.float16,
        marks=pytest.mark.skipif(not _fp16_runs_on_cpu(), reason="no fp16 matmul on this CPU"),
    ),
]
ATTACKS = {
    "fgsm": lambda m, **kw: FGSM(m, epsilon=0.3, **kw),
    "pgd": lambda m, **kw: PGD(m, epsilon=0.3, steps=5, **kw),
    "lbfgs": lambda m, **kw: LBFGSAttack(m, search_steps=3, max_iterations=20, **kw),
    "noise": lambda m, **kw: GaussianNoise(m, stddev=0.3, **kw),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_precision_returns_the_input_dtype_and_leaves_the_model(mlp, examples, dtype, name):
    """The bf16/fp16/fp64 model fails no more with 'mat1 and mat2 must have the same dtype'."""
    model = copy.deepcopy(mlp).to(dtype)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    x, y = examples[0][:8].to(dtype), examples[1][:8]
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    reference = copy.deepcopy(model).to(compute)  # what the attack computes with
    for layer in (None, "fc2"):
        result = ATTACKS[name](model, layer=layer)(x, y)
        assert result.adv.dtype == dtype and result.origin.dtype == dtype
        assert result.logits.dtype == torch.float32
        assert result.adv.min() >= 0 and (layer is not None or result.adv.max() <= 1)
        with torch.no_grad():
            fresh = reference.forward_from(layer or "input", result.adv.to(compute))
        assert torch.equal(result.success, fresh.argmax(dim=1) != y)
        if name != "noise" and layer is None:
            assert result.success.float().mean() >= 0.75
    for key, value in model.state_dict().items():
        assert value.dtype == dtype and torch.equal(value, before[key])
    assert all(parameter.grad is None for parameter in model.parameters())


def test_fp64_is_attacked_in_fp64(softmax_regression, examples):
    model = copy.deepcopy(softmax_regression).double()
    x, y = examples[0][:6].double(), examples[1][:6]
    result = LBFGSAttack(model, search_steps=3)(x, y)
    reference = LBFGSAttack(softmax_regression, search_steps=3)(x.float(), y)
    assert result.adv.dtype == torch.float64 and bool(result.success.all())
    torch.testing.assert_close(result.distortion, reference.distortion, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize(
    ("plugin", "dtype"),
    [
        (MixedPrecision("bf16-mixed", "cpu"), torch.float32),
        (HalfPrecision("bf16-true"), torch.bfloat16),
        (DoublePrecision(), torch.float64),
    ],
    ids=["bf16-mixed", "bf16-true", "64-true"],
)
def test_inside_lightning_precision_contexts(mlp, examples, plugin, dtype):
    model = plugin.convert_module(copy.deepcopy(mlp))
    x = plugin.convert_input(examples[0][:6])
    default = torch.get_default_dtype()
    with plugin.forward_context():
        inside = torch.get_default_dtype()
        for name in ("fgsm", "lbfgs"):
            result = ATTACKS[name](model)(x, examples[1][:6])
            assert result.adv.dtype == x.dtype == dtype
            assert bool(result.success.any())
        assert torch.get_default_dtype() == inside
    assert torch.get_default_dtype() == default
    assert next(model.parameters()).dtype == dtype


MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
NORMALISED = {
    "fgsm": lambda m, **kw: FGSM(m, epsilon=0.03, **kw),
    "pgd": lambda m, **kw: PGD(m, epsilon=0.03, steps=3, random_start=False, **kw),
    "lbfgs": lambda m, **kw: LBFGSAttack(m, search_steps=2, max_iterations=5, **kw),
}


@pytest.mark.parametrize("name", sorted(NORMALISED))
def test_declared_normalisation_equals_a_normalisation_layer(resnet, images, name):
    x, _ = images
    inside = nn.Sequential(Normalize(MEAN, STD), resnet).eval()
    with torch.no_grad():
        labels = inside(x).argmax(dim=1)
    expected = NORMALISED[name](inside)(x, labels)
    declared = NORMALISED[name](resnet, mean=MEAN, std=torch.tensor(STD))(x, labels)
    torch.testing.assert_close(declared.adv, expected.adv, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(declared.distortion, expected.distortion, rtol=1e-3, atol=1e-6)
    assert torch.equal(declared.success, expected.success)
    assert declared.adv.min() >= 0 and declared.adv.max() <= 1, "the box is in pixel units"
    built = build_attack(resnet, {"name": "fgsm", "epsilon": 0.03}, mean=MEAN, std=STD)
    if name == "fgsm":
        torch.testing.assert_close(built(x, labels).adv, expected.adv, rtol=1e-4, atol=1e-5)


def test_normalisation_is_validated(resnet, images):
    x, y = images
    with pytest.raises(ValueError, match=r"mean has 2 values, one per channel.*3 channels"):
        FGSM(resnet, mean=[0.5, 0.5])(x, y)
    with pytest.raises(ValueError, match="std must be positive"):
        FGSM(resnet, std=[0.2, 0.0, 0.3])
    with pytest.raises(ValueError, match=r"std of shape \(2, 5\) does not broadcast"):
        FGSM(resnet, std=torch.ones(2, 5))(x, y)
    with pytest.raises(ValueError, match="given both"):
        build_attack(resnet, {"name": "fgsm", "mean": MEAN}, mean=MEAN)


@pytest.mark.parametrize("name", ["lbfgs", "pgd"])
def test_staged_fast_path_and_hook_path_agree(mlp, examples, name):
    """The same attack on fc1 through StagedNetwork.forward_from and through a hook on the
    stage inside a plain wrapper (the generic path for any model)."""
    x, y = examples[0][:12], examples[1][:12]
    generator = {"pgd": {"generator": torch.Generator().manual_seed(3)}, "lbfgs": {}}[name]
    fast = ATTACKS[name](mlp, layer="fc1", **generator)
    assert fast.staged and fast.layer_path is None
    generator = {"pgd": {"generator": torch.Generator().manual_seed(3)}, "lbfgs": {}}[name]
    hooked = ATTACKS[name](Wrapper(mlp), layer="fc1", **generator)
    assert not hooked.staged and hooked.layer_path == "network.stages.fc1"
    a, b = fast(x, y), hooked(x, y)
    torch.testing.assert_close(a.adv, b.adv, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.origin, b.origin)
    assert torch.equal(a.success, b.success)
    assert torch.equal(a.gradient_evaluations, b.gradient_evaluations)
