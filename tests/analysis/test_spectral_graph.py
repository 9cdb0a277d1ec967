"""Bounds of any nn.Module, composed over its traced graph: upper bounds, residual sums,
normalisation inside the model, the registry, and errors that name what has no bound."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intriguing.analysis.spectral import (
    GELU_BOUND,
    LipschitzBoundError,
    derivative_bound,
    layer_bound,
    module_bounds,
    register_bound,
    register_function_bound,
    spectral_bounds,
    unregister_bound,
    unregister_function_bound,
)
from intriguing.trainers import convolutional


def empirical_ratio(model: nn.Module, shape: tuple[int, ...], *, count: int = 32) -> float:
    """Largest ``||f(x) - f(x')|| / ||x - x'||`` over random nearby pairs, in eval mode."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(count, *shape, generator=generator)
    worst = 0.0
    model.eval()
    for size in (1e-3, 1e-1):
        r = size * torch.randn(x.shape, generator=generator)
        with torch.no_grad():
            change = (model(x + r) - model(x)).flatten(1).norm(dim=1)
        worst = max(worst, float((change / r.flatten(1).norm(dim=1)).max()))
    return worst


def settle_batch_norm(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Running statistics away from (0, 1), as after training."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(2.0 * torch.randn(16, *shape) + 0.5)
    model.eval()


def test_resnet18_bound_is_finite_and_never_beaten() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    settle_batch_norm(model, (3, 32, 32))
    bounds = module_bounds(model, (3, 32, 32), dense_limit=0, tol=1e-4)
    assert math.isfinite(bounds.network) and bounds.network > 0
    assert bounds.network >= empirical_ratio(model, (3, 32, 32))
    operators = [layer.operator for layer in bounds.layers]
    assert operators.count("Conv2d") == 20 and operators.count("BatchNorm2d") == 20
    names = [layer.name for layer in bounds.layers]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer1.0.relu#2" in names  # the block's ReLU runs twice
    assert "layer2.0.downsample.0" in names
    assert bounds.summary()["spectral/network"] == bounds.network
    assert model.training is False  # left as it was (eval here)


def basic_block(inplanes: int, planes: int, stride: int) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
        )
    block = torchvision.models.resnet.BasicBlock(inplanes, planes, stride, downsample)
    settle_batch_norm(block, (inplanes, 6, 6))
    return block


def test_identity_residual_block_bound_is_one_plus_its_branch() -> None:
    torch.manual_seed(1)
    block = basic_block(4, 4, 1)
    bounds = module_bounds(block, (4, 6, 6), dense_limit=10_000)
    by_name = {layer.name: layer.bound for layer in bounds.layers}
    branch = math.prod(by_name[n] for n in ("conv1", "bn1", "relu", "conv2", "bn2"))
    assert bounds.network == pytest.approx(1.0 + branch, rel=1e-12)
    assert bounds.network >= empirical_ratio(block, (4, 6, 6))
    assert by_name["relu#2"] == 1.0


def test_bottleneck_block_bound_is_one_plus_its_branch() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(4)
    block = torchvision.models.resnet.Bottleneck(8, 2)  # 8 -> 2 -> 2 -> 8 channels
    settle_batch_norm(block, (8, 5, 5))
    bounds = module_bounds(block, (8, 5, 5), dense_limit=10_000)
    branch = math.prod(layer.bound for layer in bounds.layers if layer.name != "relu#3")
    assert bounds.network == pytest.approx(1.0 + branch, rel=1e-12)
    assert bounds.network >= empirical_ratio(block, (8, 5, 5))


def test_projection_residual_block_bound_is_shortcut_plus_branch() -> None:
    torch.manual_seed(2)
    block = basic_block(3, 6, 2)
    bounds = module_bounds(block, (3, 6, 6), dense_limit=10_000)
    by_name = {layer.name: layer.bound for layer in bounds.layers}
    branch = math.prod(by_name[n] for n in ("conv1", "bn1", "relu", "conv2", "bn2"))
    shortcut = by_name["downsample.0"] * by_name["downsample.1"]
    assert bounds.network == pytest.approx(branch + shortcut, rel=1e-12)
    assert bounds.network >= empirical_ratio(block, (3, 6, 6))


class Normalize(nn.Module):
    """Normalisation inside the model, as users write it."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class UserCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.5])
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2, padding=1),
            nn.BatchNorm2d(6),
            nn.GELU(),
        )
        self.head = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.head(torch.flatten(x, 1))


def test_user_cnn_with_batch_norm_and_normalisation_inside() -> None:
    torch.manual_seed(3)
    model = UserCNN()
    settle_batch_norm(model, (3, 8, 8))
    bounds = module_bounds(model, (3, 8, 8), dense_limit=10_000)
    rows = {layer.name: layer for layer in bounds.layers}
    assert next(iter(rows)) == "normalize.truediv"
    assert rows["normalize.truediv"].bound == pytest.approx(1 / 0.2)
    assert rows["normalize.truediv"].method == "max|1/c|"
    assert rows["features.6"].bound == pytest.approx(GELU_BOUND)
    # A chain: the network's bound is the product of its layers'.
    assert bounds.network == pytest.approx(math.prod(row.bound for row in rows.values()))
    assert bounds.network >= empirical_ratio(model, (3, 8, 8))
    assert model.training is False


def test_layer_and_group_norm_get_the_global_eps_bound_which_holds_near_constant_inputs() -> None:
    norm = nn.LayerNorm(8, eps=1e-3)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(-2.0, 1.5, 8))
    bound = layer_bound(norm, (8,))
    assert bound.bound == pytest.approx(2.0 / math.sqrt(1e-3))
    assert bound.method == "max|gamma|/sqrt(eps)"
    # Near a constant input the slope approaches the bound (and never beats it).
    generator = torch.Generator().manual_seed(0)
    x = torch.ones(256, 8) + 1e-4 * torch.randn(256, 8, generator=generator)
    r = 1e-6 * torch.randn(256, 8, generator=generator)
    with torch.no_grad():
        ratios = (norm(x + r) - norm(x)).norm(dim=1) / r.norm(dim=1)
    assert bound.bound * 0.3 < float(ratios.max()) <= bound.bound
    group = layer_bound(nn.GroupNorm(2, 4), (4, 3, 3))
    assert group.bound == pytest.approx(1 / math.sqrt(1e-5))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (nn.GELU(), GELU_BOUND),
        (nn.GELU(approximate="tanh"), derivative_bound("gelu_tanh")),
        (nn.SiLU(), derivative_bound("silu")),
        (nn.Mish(), derivative_bound("mish")),
        (nn.Hardswish(), 1.5),
        (nn.PReLU(init=0.25), 1.0),
    ],
)
def test_activation_bounds_are_their_largest_slopes(module: nn.Module, expected: float) -> None:
    assert layer_bound(module, (16,)).bound == pytest.approx(expected)
    # The finite-difference slope (float64) comes within 1e-4 of the bound, never above it.
    x = torch.linspace(-6, 6, 120_001, dtype=torch.float64).reshape(1, -1)
    module = module.double()
    with torch.no_grad():
        slopes = (module(x[:, 1:]) - module(x[:, :-1])) / (x[:, 1:] - x[:, :-1])
    assert expected - 1e-4 <= float(slopes.abs().max()) <= expected + 1e-9


def test_softmax_bound_is_one_half() -> None:
    module = nn.Softmax(dim=1)
    assert layer_bound(module, (16,)).bound == 0.5
    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2048, 16, dtype=torch.float64, generator=generator)
    r = 1e-6 * torch.randn(2048, 16, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        ratios = (module(x + r) - module(x)).norm(dim=1) / r.norm(dim=1)
    assert 0.3 < float(ratios.max()) <= 0.5


def dense_norm(apply, shape: tuple[int, ...]) -> float:
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        matrix = apply(basis).reshape(n, -1).T
    return float(torch.linalg.matrix_norm(matrix, 2))


@pytest.mark.parametrize("dense_limit", [0, 10_000], ids=["lanczos", "gram"])
def test_conv1d_bound_is_exact(dense_limit: int) -> None:
    conv = nn.Conv1d(3, 5, 4, stride=2, padding=1)
    bound = layer_bound(conv, (3, 17), dense_limit=dense_limit)
    exact = dense_norm(lambda x: conv._conv_forward(x, conv.weight.double(), None), (3, 17))
    assert bound.bound == pytest.approx(exact, rel=1e-6)
    assert (bound.size, bound.stride, bound.fourier_bound) == ("3x4x5", "2", None)


def test_concatenation_and_constant_scaling_compose_exactly() -> None:
    class Twin(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, -2.0 * x], dim=1)

    bounds = module_bounds(Twin(), (3,))
    assert bounds.network == pytest.approx(math.sqrt(5.0))  # the map's exact norm

    class Halves(nn.Module):  # a tuple's bound is that of its parts concatenated
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first, second = x.view(x.size(0), -1).chunk(2, dim=1)
            return torch.cat([first, 3 * second], 1) + torch.cat(x.chunk(2, 1), 1)

    # sqrt(1 + 9) + 1 >= the exact norm 4 of x -> (2 first, 4 second).
    assert module_bounds(Halves(), (4,)).network == pytest.approx(math.sqrt(10.0) + 1.0)


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.linear(x))


class WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return self.attn(h, h, h)[0]


def test_unknown_modules_and_functions_are_named_with_how_to_register() -> None:
    with pytest.raises(LipschitzBoundError, match=r"module 'attn' \(MultiheadAttention\)") as err:
        module_bounds(WithAttention(), (5, 4))
    assert "register_bound(nn.MultiheadAttention, lambda module, input_shape: ...)" in str(
        err.value
    )
    nested = nn.Sequential(nn.Linear(4, 4), Gate())
    with pytest.raises(LipschitzBoundError, match=r"function operator\.mul at '1\.mul'"):
        module_bounds(nested, (4,))


def test_registered_bound_makes_a_block_one_leaf() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if float(x.sum()) > 0:  # data-dependent control flow: torch.fx cannot trace it
                return 2 * x
            return x

    model = nn.Sequential(nn.Linear(4, 4), Branchy())
    with pytest.raises(LipschitzBoundError, match=r"cannot trace module '1' \(Branchy\)"):
        module_bounds(model, (4,))
    register_bound(Branchy, lambda module, input_shape: 2.0)
    try:
        bounds = module_bounds(model, (4,))
    finally:
        unregister_bound(Branchy)
    last = bounds.layers[-1]
    assert (last.name, last.operator, last.bound, last.method) == (
        "1",
        "Branchy",
        2.0,
        "registered",
    )
    assert bounds.network == pytest.approx(2.0 * bounds.layers[0].bound)
    with pytest.raises(TypeError, match="kind="):
        register_bound(int, lambda module, input_shape: 1.0)  # type: ignore[arg-type]


def test_registered_function_rule() -> None:
    class Erf(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.erf(x)

    with pytest.raises(LipschitzBoundError, match=r"function torch\.erf.*register_function"):
        module_bounds(Erf(), (3,))
    slope = 2 / math.sqrt(math.pi)
    register_function_bound(torch.erf, lambda call: slope * call.inputs()[0][1])
    try:
        assert module_bounds(Erf(), (3,)).network == pytest.approx(slope)
    finally:
        unregister_function_bound(torch.erf)


def test_operations_that_mix_a_batch_are_refused() -> None:
    class Mixer(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1)

    with pytest.raises(LipschitzBoundError, match="mixes the examples"):
        module_bounds(Mixer(), (3,))

    class AcrossBatch(nn.Module):  # keeps the shape: found by running two batches
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(x, dim=0)

    with pytest.raises(LipschitzBoundError, match="changes with the other examples"):
        module_bounds(AcrossBatch(), (3,))


def test_functional_pooling_and_global_average() -> None:
    class Head(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(x), 2)
            return x.mean(dim=(2, 3))

    bounds = module_bounds(Head(), (2, 4, 4))
    factors = {layer.operator: layer.bound for layer in bounds.layers}
    assert factors == {"max_pool2d": 1.0, "Tensor.mean": pytest.approx(0.5)}  # 1 / sqrt(2 x 2)
    assert bounds.network == pytest.approx(0.5)


def test_staged_network_goes_stage_by_stage_and_other_shapes_are_refused() -> None:
    network = convolutional((1, 8, 8), 3, channels=(2,), kernel_size=3, fc_hidden=())
    bounds = spectral_bounds(network)
    assert bounds.summary().keys() >= {"spectral/product", "spectral/conv1"}
    with pytest.raises(ValueError, match="input_shape="):
        spectral_bounds(network, (1, 9, 9))
    with pytest.raises(ValueError, match="input_shape=None"):
        spectral_bounds(nn.Linear(3, 2))
