"""Per-layer Lipschitz bounds: exact against independent references, and never beaten."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intriguing.analysis.spectral import (
    conv2d_fourier_bound,
    layer_bound,
    linear_operator_norm,
    max_pool_bound,
    network_bounds,
)
from intriguing.trainers import convolutional, fully_connected


def conv_power_iteration(conv: nn.Conv2d, shape: tuple[int, int, int], steps: int = 500) -> float:
    """Reference: power iteration on ``conv_transpose2d(conv2d(x))``, the operator's A^T A."""
    weight = conv.weight.detach().double()
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = F.conv2d(x, weight, None, stride, padding, dilation, conv.groups)
    output_padding = tuple(
        shape[1 + i]
        - ((out.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k - 1) + 1)
        for i, k in enumerate(conv.kernel_size)
    )

    def forward(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, weight, None, stride, padding, dilation, conv.groups)

    def adjoint(y: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(
            y, weight, None, stride, padding, output_padding, conv.groups, dilation
        )

    # The reference's adjoint really is one: <A x, y> = <x, A^T y>.
    y = torch.randn_like(out)
    assert torch.allclose((forward(x) * y).sum(), (x * adjoint(y)).sum(), rtol=1e-10)
    for _ in range(steps):
        x = adjoint(forward(x))
        x = x / x.norm()
    return float(forward(x).norm())


def dense_matrix(apply, shape: tuple[int, ...]) -> torch.Tensor:
    """The explicit matrix of a linear map, one basis image at a time."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        return apply(basis).reshape(n, -1).T


@pytest.mark.parametrize("shape", [(7, 3), (50, 784), (10, 100)])
def test_linear_bound_is_the_largest_singular_value(shape: tuple[int, int]) -> None:
    layer = nn.Linear(shape[1], shape[0])
    bound = layer_bound(layer, (shape[1],))
    expected = torch.linalg.matrix_norm(layer.weight.detach().double(), 2)
    assert bound.bound == pytest.approx(float(expected), rel=1e-12)
    assert (bound.size, bound.stride, bound.method) == (f"{shape[1]}x{shape[0]}", "N/A", "svd")


CONV_CASES = [
    # in, out, kernel, stride, padding, dilation, groups, (H, W)
    (1, 8, 5, 1, 2, 1, 1, (12, 12)),
    (3, 6, 3, 2, 1, 1, 1, (11, 9)),
    (4, 4, 4, 2, 0, 1, 2, (10, 10)),
    (2, 5, 3, 3, 2, 2, 1, (13, 12)),
    (2, 3, (3, 5), (1, 2), (0, 2), 1, 1, (9, 10)),
    (6, 6, 3, 1, 1, 1, 6, (8, 8)),
]


@pytest.mark.parametrize("dense_limit", [0, 10_000], ids=["lanczos", "gram"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_bound_matches_power_iteration_on_conv2d_and_its_adjoint(
    case: tuple, dense_limit: int
) -> None:
    c_in, c_out, kernel, stride, padding, dilation, groups, (h, w) = case
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)
    bound = layer_bound(conv, (c_in, h, w), dense_limit=dense_limit)
    reference = conv_power_iteration(conv, (c_in, h, w))
    assert bound.bound == pytest.approx(reference, rel=1e-2)
    # The explicit matrix's largest singular value agrees to rounding, not only within 1%.
    matrix = dense_matrix(lambda x: conv._conv_forward(x, conv.weight.double(), None), (c_in, h, w))
    assert bound.bound == pytest.approx(float(torch.linalg.matrix_norm(matrix, 2)), rel=1e-6)
    assert bound.method == ("lanczos" if dense_limit == 0 else "gram")


@pytest.mark.parametrize("case", CONV_CASES)
def test_fourier_bound_is_an_upper_bound_of_the_zero_padded_convolution(case: tuple) -> None:
    c_in, c_out, kernel, stride, padding, dilation, groups, (h, w) = case
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)
    bound = layer_bound(conv, (c_in, h, w))
    assert bound.fourier_bound is not None
    assert bound.fourier_bound >= bound.bound * (1 - 1e-9)


@pytest.mark.parametrize("stride", [1, 2])
def test_fourier_bound_is_exact_for_a_circular_convolution(stride: int) -> None:
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=1, padding_mode="circular")
    shape = (3, 8, 8)
    exact = torch.linalg.matrix_norm(
        dense_matrix(lambda x: conv._conv_forward(x, conv.weight.double(), None), shape), 2
    )
    assert conv2d_fourier_bound(conv, shape) == pytest.approx(float(exact), rel=1e-9)
    assert layer_bound(conv, shape).bound == pytest.approx(float(exact), rel=1e-9)


def test_lanczos_warm_start_is_used_and_updated() -> None:
    conv = nn.Conv2d(4, 8, 3, padding=1)
    apply = lambda x: conv._conv_forward(x, conv.weight.double(), None)  # noqa: E731
    cold = linear_operator_norm(apply, (4, 10, 10), dense_limit=0, tol=1e-9)
    warm = linear_operator_norm(apply, (4, 10, 10), dense_limit=0, tol=1e-9, start=cold.vector)
    assert warm.norm == pytest.approx(cold.norm, rel=1e-8)
    assert warm.iterations < cold.iterations
    cache: dict[str, torch.Tensor] = {}
    layer_bound(conv, (4, 10, 10), stage="s", path="0", warm_start=cache, dense_limit=0)
    assert cache["s.0"].shape == (4, 10, 10)


@pytest.mark.parametrize(
    ("pool", "overlap"),
    [
        (nn.MaxPool2d(2), 1),
        (nn.MaxPool2d(3), 1),
        (nn.MaxPool2d(3, stride=2), 4),
        (nn.MaxPool2d(3, stride=1, padding=1), 9),
        (nn.MaxPool2d((3, 2), stride=(1, 2)), 3),
        (nn.MaxPool2d(2, stride=1, dilation=2), 4),
        (nn.MaxPool2d(3, stride=2, ceil_mode=True), 4),
    ],
)
def test_max_pool_bound_counts_overlapping_windows_and_is_attained(
    pool: nn.MaxPool2d, overlap: int
) -> None:
    shape = (2, 9, 9)
    bound, count = max_pool_bound(pool, shape)
    assert count == overlap
    assert bound == pytest.approx(math.sqrt(overlap))
    # Attained: raise one element that is the maximum of every window it is in.
    best = 0.0
    for i in range(9):
        for j in range(9):
            x = torch.zeros(1, *shape, dtype=torch.float64)
            x[0, 0, i, j] = 1.0
            r = torch.zeros_like(x)
            r[0, 0, i, j] = 1e-3
            best = max(best, float((pool(x + r) - pool(x)).norm() / r.norm()))
    assert best == pytest.approx(bound, rel=1e-5)
    # And never beaten by random pairs.
    x = torch.randn(200, *shape)
    r = 0.1 * torch.randn_like(x)
    ratios = (pool(x + r) - pool(x)).flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)
    assert float(ratios.max()) <= bound + 1e-6


def test_adaptive_max_pool_overlap() -> None:
    # 7 -> 4 windows: [0,2), [1,4), [3,6), [5,7): elements 1, 3, 5 are in two windows.
    assert max_pool_bound(nn.AdaptiveMaxPool2d((4, 7)), (1, 7, 7)) == (math.sqrt(2), 2)


@pytest.mark.parametrize(
    "pool",
    [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=1, padding=1), nn.AvgPool2d(3, 2, 1, False, False)],
)
def test_average_pool_bound_is_its_exact_norm(pool: nn.AvgPool2d) -> None:
    shape = (3, 8, 8)
    bound = layer_bound(pool, shape)
    exact = torch.linalg.matrix_norm(dense_matrix(pool, shape), 2)
    assert bound.bound == pytest.approx(float(exact), rel=1e-9)
    if pool.kernel_size == 2:
        assert bound.bound == pytest.approx(0.5)


def test_batch_norm_bound_in_eval_mode() -> None:
    norm = nn.BatchNorm2d(3).eval()
    norm.weight.data = torch.tensor([0.5, -2.0, 1.0])
    norm.running_var = torch.tensor([1.0, 4.0, 0.25])
    expected = max(0.5 / math.sqrt(1 + 1e-5), 2.0 / math.sqrt(4 + 1e-5), 1 / math.sqrt(0.25 + 1e-5))
    assert layer_bound(norm, (3, 4, 4)).bound == pytest.approx(expected)
    with pytest.raises(ValueError, match="running statistics"):
        layer_bound(nn.BatchNorm2d(3, track_running_stats=False), (3, 4, 4))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (nn.Sigmoid(), 0.25),
        (nn.ReLU(), 1.0),
        (nn.Tanh(), 1.0),
        (nn.Dropout(0.5), 1.0),
        (nn.Flatten(), 1.0),
        (nn.LeakyReLU(0.1), 1.0),
        (nn.ELU(alpha=2.0), 2.0),
    ],
)
def test_elementwise_and_shape_layers(module: nn.Module, expected: float) -> None:
    assert layer_bound(module, (3, 4, 4)).bound == expected


def test_unknown_layer_is_refused_by_name() -> None:
    # GELU, once refused here, has a bound now; a bilinear layer has none (it is not Lipschitz).
    with pytest.raises(ValueError, match=r"module 'fc1\.2' \(Bilinear\).*register_bound"):
        layer_bound(nn.Bilinear(4, 4, 2), (4,), stage="fc1", path="2")


def test_network_bounds_walk_every_stage_at_its_input_shape() -> None:
    network = convolutional(
        (1, 12, 12), 10, channels=(4, 6), kernel_size=3, pool="avg", batch_norm=True
    )
    bounds = network_bounds(network)
    assert [stage.name for stage in bounds.stages] == list(network.stages.keys())
    conv2 = bounds.stages[1]
    assert conv2.input_shape == network.layer_shape("conv1") == (4, 6, 6)
    assert [layer.operator for layer in conv2.layers] == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "AvgPool2d",
    ]
    assert conv2.layers[3].input_shape == (6, 6, 6)
    assert conv2.bound == pytest.approx(math.prod(layer.bound for layer in conv2.layers))
    assert bounds.product == pytest.approx(math.prod(stage.bound for stage in bounds.stages))
    assert bounds.summary()["spectral/product"] == bounds.product
    assert network.training  # the network's mode is left as it was


def test_bounds_can_be_computed_under_inference_mode() -> None:
    network = convolutional((1, 8, 8), 3, channels=(2,), kernel_size=3, pool="avg", fc_hidden=())
    expected = network_bounds(network)
    with torch.inference_mode():
        inside = network_bounds(network, dense_limit=0)
    assert inside.product == pytest.approx(expected.product, rel=1e-5)


def test_markdown_has_table_5_layout() -> None:
    network = fully_connected((1, 28, 28), 10, hidden=(100, 100))
    bounds = network_bounds(network)
    lines = bounds.to_markdown().splitlines()
    assert lines[0] == "| Layer | fc1 | fc2 | logits | Product |"
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[0] == "Upper bound"
    assert float(cells[-1]) == pytest.approx(bounds.product, rel=1e-3)
    assert lines[4].startswith("| Layer | Operator | Size | Stride |")
    assert len(lines[6:]) == len(bounds.layers) == 6  # flatten, linear, relu (x2), linear
    assert "| fc1.1 | Linear | 784x100 | N/A | 784 |" in bounds.to_markdown()
    assert len(bounds.rows()) == 6


def output_ratios(network, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        change = (network(x + r) - network(x)).flatten(1).norm(dim=1)
    return change / r.flatten(1).norm(dim=1)


def test_trained_net_never_beats_its_bound_on_gradient_perturbations(
    trained_conv, image_set
) -> None:
    """FGSM-like and gradient-direction steps at several sizes: the ratio stays below L."""
    images, labels = image_set
    x = images[:64]
    bounds = network_bounds(trained_conv)
    x_grad = x.clone().requires_grad_(True)
    loss = F.cross_entropy(trained_conv(x_grad), labels[:64])
    (gradient,) = torch.autograd.grad(loss, x_grad)
    worst = 0.0
    for direction in (gradient.sign(), gradient, torch.randn_like(x)):
        for size in (1e-3, 1e-2, 0.1, 0.3):
            unit = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            ratios = output_ratios(trained_conv, x, size * unit)
            worst = max(worst, float(ratios.max()))
    assert 0 < worst <= bounds.product
    # Every stage also respects its own bound on its own input.
    h = x
    for stage in bounds.stages:
        module = trained_conv.stages[stage.name]
        r = 1e-2 * torch.randn_like(h)
        with torch.no_grad():
            ratios = (module(h + r) - module(h)).flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)
            h = module(h)
        assert float(ratios.max()) <= stage.bound * (1 + 1e-6)


@pytest.mark.parametrize("layer", ["input", "conv2"])
def test_trained_net_never_beats_its_bound_on_lbfgs_adversarial_pairs(
    trained_conv, image_set, layer: str
) -> None:
    """Real adversarial pairs from the attack engine, at the input and at a hidden layer: the
    rest of the network moves its logits by at most the product of its stages' bounds."""
    attacks = pytest.importorskip("attacks")
    images, labels = image_set
    x, y = images[:8], labels[:8]
    attack = attacks.LBFGSAttack(
        trained_conv, layer=None if layer == "input" else layer, search_steps=3, max_iterations=30
    )
    result = attack(x, y)
    assert bool(result.success.any())
    origin, r = result.origin.detach(), (result.adv - result.origin).detach()
    moved = r.flatten(1).norm(dim=1) > 0
    with torch.no_grad():
        change = trained_conv.forward_from(layer, origin[moved] + r[moved])
        change = (change - trained_conv.forward_from(layer, origin[moved])).flatten(1).norm(dim=1)
    ratios = change / r[moved].flatten(1).norm(dim=1)
    bounds = network_bounds(trained_conv)
    after = {name for name, _ in trained_conv.stages_after(layer)}
    bound = math.prod(stage.bound for stage in bounds.stages if stage.name in after)
    assert 0 < float(ratios.max()) <= bound


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bounds_on_a_cuda_network_equal_those_on_the_cpu(trained_conv) -> None:
    import copy

    on_gpu = copy.deepcopy(trained_conv).cuda()
    cpu, gpu = network_bounds(trained_conv), network_bounds(on_gpu)
    for a, b in zip(cpu.layers, gpu.layers, strict=True):
        assert b.bound == pytest.approx(a.bound, rel=1e-6)
