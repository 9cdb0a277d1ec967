"""Upper bounds on each layer's Lipschitz constant, and their product (Szegedy et al. 2013, 4.3).

The paper bounds a network's instability by the product of its layers' operator norms (L2):
``||phi(x) - phi(x + r)|| <= L ||r||`` with ``L = prod_k L_k`` (its Table 5 for AlexNet). Here
every stage of a :class:`~trainers.stages.StagedNetwork` is walked layer by layer, at the input
shape the layer really sees:

- ``nn.Linear``: the largest singular value of ``W`` (exact).
- ``nn.Conv2d``: the exact norm of the linear operator it applies to inputs of that shape,
  stride, padding, dilation and groups included. It is computed from the Gram matrix of the
  smaller side when that side is at most ``dense_limit`` long, otherwise by Lanczos iteration
  on ``A^T A`` (``conv2d`` and its adjoint ``conv_transpose2d``) to a relative tolerance. The
  paper computes it in the Fourier domain; with zero padding or strides that circular value is
  only an upper bound of the operator, reported alongside as ``fourier_bound``.
- 1-Lipschitz maps (ReLU, tanh, hard tanh, softplus, flatten, dropout and identity in eval
  mode): 1. Sigmoid: 1/4. Leaky ReLU and ELU: ``max(1, slope)``.
- Max pooling: ``sqrt(m)``, with ``m`` the largest number of pooling windows that any input
  element falls in (1 for non-overlapping windows). The bound is attained: an element that is
  the maximum of all of its ``m`` windows moves ``m`` outputs by as much as itself.
- Average pooling is linear: its exact norm, computed like a convolution's.
- Batch norm (eval mode, running statistics): ``max |gamma / sqrt(running_var + eps)|``.

Biases do not change a Lipschitz constant. Bounds are those of the network in eval mode (the
classifier that attacks face). Each stage's bound is the product of its layers' bounds, and
the network's is the product of its stages'.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from intriguing.analysis.tables import markdown_lines
from intriguing.trainers.stages import StagedNetwork

LinearMap = Callable[[Tensor], Tensor]

# Layers whose Lipschitz constant (L2) is exactly this number, whatever their input.
_CONSTANT_BOUNDS: tuple[tuple[type[nn.Module], float], ...] = (
    (nn.Sigmoid, 0.25),
    (nn.ReLU, 1.0),
    (nn.ReLU6, 1.0),
    (nn.Hardtanh, 1.0),
    (nn.Tanh, 1.0),
    (nn.Softplus, 1.0),
    (nn.Softsign, 1.0),
    (nn.Identity, 1.0),
    (nn.Flatten, 1.0),
    (nn.Unflatten, 1.0),
    # Dropout is the identity in eval mode.
    (nn.Dropout, 1.0),
    (nn.Dropout1d, 1.0),
    (nn.Dropout2d, 1.0),
    (nn.AlphaDropout, 1.0),
)


@dataclass(frozen=True)
class LayerBound:
    """One primitive layer's upper bound on its Lipschitz constant.

    Attributes:
        stage: the stage it belongs to.
        path: its place inside the stage (``"0"``, ``"2.1"``), as in ``stage.named_modules()``.
        operator: the module's class name.
        size: the paper's "Size" column (``in x kh x kw x out`` for a convolution, ``in x out``
            for a fully connected layer, the window for pooling), empty otherwise.
        stride: the paper's "Stride" column, ``"N/A"`` where there is none.
        input_shape: shape of one example at the layer's input.
        bound: the upper bound (exact operator norm where the layer is linear).
        fourier_bound: for convolutions, the circular (Fourier-domain) bound; ``None`` otherwise.
        method: how ``bound`` was found (``svd``, ``gram``, ``lanczos``, ``overlap``, ``diagonal``,
            ``constant``).
    """

    stage: str
    path: str
    operator: str
    size: str
    stride: str
    input_shape: tuple[int, ...]
    bound: float
    fourier_bound: float | None
    method: str

    @property
    def name(self) -> str:
        return f"{self.stage}.{self.path}"


@dataclass(frozen=True)
class StageBound:
    """A stage's layers and the product of their bounds."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerBound, ...]

    @property
    def bound(self) -> float:
        return math.prod(layer.bound for layer in self.layers)


@dataclass(frozen=True)
class SpectralBounds:
    """Per-stage and per-layer Lipschitz bounds of a network, and their product."""

    stages: tuple[StageBound, ...]

    @property
    def product(self) -> float:
        """Upper bound on the whole network's Lipschitz constant (input to logits)."""
        return math.prod(stage.bound for stage in self.stages)

    @property
    def layers(self) -> tuple[LayerBound, ...]:
        return tuple(layer for stage in self.stages for layer in stage.layers)

    def summary(self, prefix: str = "spectral/") -> dict[str, float]:
        """``{prefix}<stage>`` for every stage and ``{prefix}product``."""
        values = {f"{prefix}{stage.name}": stage.bound for stage in self.stages}
        values[f"{prefix}product"] = self.product
        return values

    def rows(self) -> list[dict[str, Any]]:
        """One plain record per primitive layer (for JSON and ``wandb.Table``)."""
        return [
            {
                "stage": layer.stage,
                "layer": layer.name,
                "operator": layer.operator,
                "size": layer.size,
                "stride": layer.stride,
                "input_shape": "x".join(str(d) for d in layer.input_shape),
                "upper_bound": layer.bound,
                "fourier_bound": layer.fourier_bound,
                "method": layer.method,
            }
            for layer in self.layers
        ]

    def to_markdown(self, *, digits: int = 4) -> str:
        """Table 5's layout (a row of layers and their upper bounds, then the product),
        followed by the primitive layers with the paper's Size and Stride columns."""

        def number(value: float | None) -> str:
            return "" if value is None else f"{value:.{digits}g}"

        stages = markdown_lines(
            ["Layer", *(stage.name for stage in self.stages), "Product"],
            [
                [
                    "Upper bound",
                    *(number(stage.bound) for stage in self.stages),
                    number(self.product),
                ]
            ],
        )
        layers = markdown_lines(
            [
                "Layer",
                "Operator",
                "Size",
                "Stride",
                "Input shape",
                "Upper bound",
                "Fourier bound",
                "Method",
            ],
            [
                [
                    layer.name,
                    layer.operator,
                    str(layer.size),
                    str(layer.stride),
                    "x".join(str(d) for d in layer.input_shape),
                    number(layer.bound),
                    number(layer.fourier_bound),
                    layer.method,
                ]
                for layer in self.layers
            ],
        )
        return "\n".join([*stages, "", *layers]) + "\n"


@dataclass
class NormResult:
    """An operator norm and the unit input vector that attains it (for warm starts)."""

    norm: float
    vector: Tensor
    method: str
    iterations: int = 0
    converged: bool = True


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _output_shape(
    apply: LinearMap, input_shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(apply(torch.zeros(1, *input_shape, dtype=dtype, device=device)).shape[1:])


def autograd_adjoint(apply: LinearMap, input_shape: Sequence[int]) -> LinearMap:
    """The adjoint ``y -> A^T y`` of the linear map ``apply``, as its vector-Jacobian product."""

    def adjoint(y: Tensor) -> Tensor:
        # Works inside Lightning's validation too (no_grad or inference mode).
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.zeros(y.shape[0], *input_shape, dtype=y.dtype, device=y.device)
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(apply(x), x, grad_outputs=y.clone())
        return grad

    return adjoint


def _gram_norm(
    apply: LinearMap,
    adjoint: LinearMap,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    *,
    dtype: torch.dtype,
    device: torch.device,
    chunk: int,
) -> NormResult:
    """Exact norm from the Gram matrix of the smaller side (``A^T A`` or ``A A^T``)."""
    d_in, d_out = math.prod(input_shape), math.prod(output_shape)
    input_side = d_in <= d_out
    size = d_in if input_side else d_out
    first, second = (apply, adjoint) if input_side else (adjoint, apply)
    shape = tuple(input_shape) if input_side else tuple(output_shape)
    gram = torch.empty(size, size, dtype=dtype, device=device)
    eye = torch.eye(size, dtype=dtype, device=device)
    with torch.no_grad():
        for start in range(0, size, chunk):
            basis = eye[start : start + chunk].reshape(-1, *shape)
            gram[start : start + chunk] = second(first(basis)).reshape(len(basis), size)
    gram = (gram + gram.T) / 2
    values, vectors = torch.linalg.eigh(gram)
    top = vectors[:, -1]
    if not input_side:
        with torch.no_grad():
            top = adjoint(top.reshape(1, *output_shape)).reshape(-1)
        top = top / top.norm().clamp_min(torch.finfo(dtype).tiny)
    return NormResult(
        float(values[-1].clamp_min(0).sqrt()), top.reshape(input_shape), "gram", iterations=size
    )


def _lanczos_norm(
    apply: LinearMap,
    adjoint: LinearMap,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype,
    device: torch.device,
    tol: float,
    max_iter: int,
    start: Tensor | None,
    generator: torch.Generator | None,
) -> NormResult:
    """Largest eigenvalue of ``A^T A`` by Lanczos with full reorthogonalisation.

    Stops when the Ritz residual ``beta_j |y_j|`` is below ``tol`` times the Ritz value: then
    an eigenvalue of ``A^T A`` lies within that relative distance of it, and the returned norm
    (its square root) is accurate to about ``tol / 2``.
    """
    d_in = math.prod(input_shape)
    if start is not None and start.numel() == d_in and bool(torch.isfinite(start).all()):
        q = start.reshape(-1).to(dtype=dtype, device=device).clone()
    else:
        q = torch.randn(d_in, dtype=dtype, generator=generator).to(device)
    if float(q.norm()) == 0.0:
        q = torch.randn(d_in, dtype=dtype, generator=generator).to(device)
    q = q / q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    theta, ritz = 0.0, torch.ones(1, dtype=dtype)
    converged = False
    steps = min(max_iter, d_in)
    with torch.no_grad():
        for step in range(steps):
            w = adjoint(apply(q.reshape(1, *input_shape))).reshape(-1)
            alpha = float(q @ w)
            alphas.append(alpha)
            stacked = torch.stack(basis)
            w = w - stacked.T @ (stacked @ w)
            w = w - stacked.T @ (stacked @ w)
            beta = float(w.norm())
            tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
            if betas:
                off = torch.tensor(betas, dtype=torch.float64)
                tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
            values, vectors = torch.linalg.eigh(tridiagonal)
            theta, ritz = float(values[-1]), vectors[:, -1]
            residual = beta * abs(float(ritz[-1]))
            if theta <= 0.0 and beta <= torch.finfo(dtype).eps:
                converged = True  # the zero map
                break
            if residual <= tol * theta or beta <= torch.finfo(dtype).eps * max(theta, 1.0):
                converged = True
                break
            if step + 1 < steps:
                q = w / beta
                basis.append(q)
                betas.append(beta)
    stacked = torch.stack(basis)
    vector = ritz.to(dtype=dtype, device=device) @ stacked
    vector = vector / vector.norm().clamp_min(torch.finfo(dtype).tiny)
    return NormResult(
        math.sqrt(max(theta, 0.0)),
        vector.reshape(input_shape),
        "lanczos",
        iterations=len(alphas),
        converged=converged or len(alphas) == d_in,
    )


def linear_operator_norm(
    apply: LinearMap,
    input_shape: Sequence[int],
    *,
    adjoint: LinearMap | None = None,
    dense_limit: int = 1024,
    tol: float = 1e-7,
    max_iter: int = 300,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    chunk: int = 256,
) -> NormResult:
    """The L2 operator norm of the linear map ``apply`` on inputs of ``input_shape``.

    ``apply`` takes a batch ``(B, *input_shape)``; ``adjoint`` takes a batch of outputs (the
    vector-Jacobian product of ``apply`` when not given). When the smaller of the input and
    output dimensions is at most ``dense_limit``, the norm is the square root of the largest
    eigenvalue of that side's Gram matrix (exact to rounding); otherwise Lanczos iteration
    on ``A^T A`` from ``start`` (a warm start) or a random vector.
    """
    device = torch.device(device)
    output_shape = _output_shape(apply, input_shape, dtype, device)
    adjoint = adjoint or autograd_adjoint(apply, input_shape)
    if min(math.prod(input_shape), math.prod(output_shape)) <= dense_limit:
        return _gram_norm(
            apply, adjoint, input_shape, output_shape, dtype=dtype, device=device, chunk=chunk
        )
    result = _lanczos_norm(
        apply,
        adjoint,
        input_shape,
        dtype=dtype,
        device=device,
        tol=tol,
        max_iter=max_iter,
        start=start,
        generator=generator,
    )
    if not result.converged:
        warnings.warn(
            f"Lanczos iteration did not reach tolerance {tol:g} in {max_iter} steps on inputs "
            f"of shape {tuple(input_shape)}; the norm {result.norm:.6g} may be low",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def conv2d_operator(
    conv: nn.Conv2d,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[LinearMap, LinearMap]:
    """The convolution's linear part (no bias) on ``input_shape`` and its adjoint.

    With zero padding given as numbers, the adjoint is ``conv_transpose2d`` with the
    ``output_padding`` that restores the input's size; for other padding modes (or
    ``padding="same"``) it is the vector-Jacobian product.
    """
    device = torch.device(device)
    weight = conv.weight.detach().to(dtype=dtype, device=device)
    if tuple(input_shape[:1]) != (conv.in_channels,) or len(input_shape) != 3:
        raise ValueError(
            f"{conv}: expects inputs of shape ({conv.in_channels}, H, W), got {tuple(input_shape)}"
        )

    def apply(x: Tensor) -> Tensor:
        return conv._conv_forward(x, weight, None)

    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return apply, autograd_adjoint(apply, input_shape)
    stride, padding, dilation = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
    output_shape = _output_shape(apply, input_shape, dtype, device)
    output_padding = tuple(
        input_shape[1 + i]
        - ((output_shape[1 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k - 1) + 1)
        for i, k in enumerate(weight.shape[2:])
    )

    def adjoint(y: Tensor) -> Tensor:
        return F.conv_transpose2d(
            y,
            weight,
            None,
            stride,
            padding,
            output_padding,
            conv.groups,
            dilation,
        )

    return apply, adjoint


def conv2d_fourier_bound(conv: nn.Conv2d, input_shape: Sequence[int]) -> float | None:
    """The paper's Fourier-domain bound: the norm of the circular convolution that contains
    this one, ``sup_xi ||A(xi)||`` over the frequencies of the padded grid.

    With zero padding, the layer is the circular correlation on a grid of ``N >= H + 2p``
    (rounded up to a multiple of the stride) applied to the zero-embedded input, restricted to
    the outputs it keeps; so this value bounds the layer from above, and equals it for a
    circular convolution that keeps every output. With stride ``s`` the output at frequency
    ``xi`` mixes the ``s_h s_w`` aliased input frequencies ``xi + l N / s``: ``A(xi)`` is the
    ``C_out x (C_in s_h s_w)`` matrix of the kernel's transforms there, over ``sqrt(s_h s_w)``.
    ``None`` for reflect or replicate padding (their padding is no isometry).
    """
    if conv.padding_mode not in {"zeros", "circular"}:
        return None
    weight = conv.weight.detach().to(torch.float64).cpu()
    stride, dilation = _pair(conv.stride), _pair(conv.dilation)
    kernel = weight.shape[2:]
    span = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    if isinstance(conv.padding, str):
        total = [0, 0] if conv.padding == "valid" else [span[0] - 1, span[1] - 1]
    else:
        total = [2 * p for p in _pair(conv.padding)]
    sizes = []
    for i in range(2):
        extent = int(input_shape[1 + i])
        if conv.padding_mode == "circular":
            if extent % stride[i] or extent < span[i]:
                return None
            sizes.append(extent)
        else:
            padded = max(extent + total[i], span[i])
            sizes.append(math.ceil(padded / stride[i]) * stride[i])
    dilated = torch.zeros(*weight.shape[:2], span[0], span[1], dtype=torch.float64)
    dilated[:, :, :: dilation[0], :: dilation[1]] = weight
    spectrum = torch.fft.fft2(dilated, s=(sizes[0], sizes[1]))
    groups = conv.groups
    c_out, c_in = spectrum.shape[0] // groups, spectrum.shape[1]
    m_h, m_w = sizes[0] // stride[0], sizes[1] // stride[1]
    # index xi + l * M along each axis -> (l, xi): reshape (N,) as (s, M).
    blocks = spectrum.reshape(groups, c_out, c_in, stride[0], m_h, stride[1], m_w)
    blocks = blocks.permute(0, 4, 6, 1, 2, 3, 5).reshape(
        groups, m_h, m_w, c_out, c_in * stride[0] * stride[1]
    )
    norms = torch.linalg.matrix_norm(blocks, ord=2) / math.sqrt(stride[0] * stride[1])
    return float(norms.max())


def _window_overlap(extent: int, out: int, kernel: int, stride: int, pad: int, dil: int) -> int:
    """Largest number of pooling windows (of ``out`` windows) that share an input position."""
    counts = [0] * extent
    for o in range(out):
        for t in range(kernel):
            i = o * stride - pad + t * dil
            if 0 <= i < extent:
                counts[i] += 1
    return max(counts, default=0)


def _adaptive_overlap(extent: int, out: int) -> int:
    counts = [0] * extent
    for o in range(out):
        for i in range((o * extent) // out, -((-(o + 1) * extent) // out)):
            counts[i] += 1
    return max(counts, default=0)


def max_pool_bound(pool: nn.Module, input_shape: Sequence[int]) -> tuple[float, int]:
    """``sqrt(m)`` for a max pooling layer, and ``m``: the most windows any element is in.

    ``|max_W(x) - max_W(x')| <= max_{i in W} |x_i - x'_i|``, so summing the squares over
    windows counts each ``(x_i - x'_i)^2`` once per window that holds ``i``: the layer is
    ``sqrt(m)``-Lipschitz, and an element that is the maximum of its ``m`` windows attains it.
    """
    spatial = [int(d) for d in input_shape[-2:]]
    with torch.no_grad():
        out = pool(torch.zeros(1, *input_shape)).shape[-2:]
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        counts = [_adaptive_overlap(spatial[i], int(out[i])) for i in range(2)]
    elif isinstance(pool, nn.MaxPool2d):
        kernel, stride = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
        padding, dilation = _pair(pool.padding), _pair(pool.dilation)
        counts = [
            _window_overlap(spatial[i], int(out[i]), kernel[i], stride[i], padding[i], dilation[i])
            for i in range(2)
        ]
    else:
        raise ValueError(f"not a 2-d max pooling layer: {pool}")
    overlap = counts[0] * counts[1]
    return math.sqrt(overlap), overlap


def batch_norm_bound(norm: nn.modules.batchnorm._BatchNorm) -> float:
    """``max |gamma / sqrt(running_var + eps)|``: the eval-mode layer is diagonal."""
    if norm.running_var is None:
        raise ValueError(
            f"{norm}: without running statistics batch norm normalises with each batch's "
            "statistics even in eval mode and has no fixed Lipschitz constant"
        )
    scale = (norm.running_var.detach().double() + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    return float(scale.abs().max())


def _size_and_stride(module: nn.Module) -> tuple[str, str]:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        stride = _pair(module.stride)
        text = str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"
        return f"{module.in_channels}x{kh}x{kw}x{module.out_channels}", text
    if isinstance(module, nn.Linear):
        return f"{module.in_features}x{module.out_features}", "N/A"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kh, kw = _pair(module.kernel_size)
        stride = _pair(module.stride or module.kernel_size)
        text = str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"
        return f"{kh}x{kw}", text
    return "", "N/A"


def _primitives(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _primitives(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or "0", module


def layer_bound(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    stage: str = "",
    path: str = "",
    warm_start: MutableMapping[str, Tensor] | None = None,
    dense_limit: int = 1024,
    tol: float = 1e-7,
    max_iter: int = 300,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> LayerBound:
    """The upper bound of one primitive layer at ``input_shape`` (see the module docstring).

    ``warm_start`` maps ``"stage.path"`` to the top singular vector found last time; it is
    read as Lanczos's starting vector and updated with the new one.
    """
    input_shape = tuple(int(d) for d in input_shape)
    size, stride = _size_and_stride(module)
    key = f"{stage}.{path}"

    def record(bound: float, method: str, fourier: float | None = None) -> LayerBound:
        return LayerBound(
            stage, path, type(module).__name__, size, stride, input_shape, bound, fourier, method
        )

    if isinstance(module, nn.Linear):
        if input_shape[-1:] != (module.in_features,):
            raise ValueError(f"{key}: {module} cannot take inputs of shape {input_shape}")
        weight = module.weight.detach().to(torch.float64)
        return record(float(torch.linalg.matrix_norm(weight, ord=2)), "svd")
    if isinstance(module, nn.Conv2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
        if isinstance(module, nn.Conv2d):
            apply, adjoint = conv2d_operator(module, input_shape, device=device)
            shape: tuple[int, ...] = input_shape
            fourier = conv2d_fourier_bound(module, input_shape)
        else:
            # Pooling acts on each channel alike: the norm on one channel is the layer's.
            shape = (1, *input_shape[-2:])
            apply, adjoint, fourier = module, None, None
        result = linear_operator_norm(
            apply,
            shape,
            adjoint=adjoint,
            dense_limit=dense_limit,
            tol=tol,
            max_iter=max_iter,
            start=warm_start.get(key) if warm_start is not None else None,
            generator=generator,
            device=device,
        )
        if warm_start is not None:
            warm_start[key] = result.vector.detach().cpu()
        return record(result.norm, result.method, fourier)
    if isinstance(module, nn.MaxPool2d | nn.AdaptiveMaxPool2d):
        return record(max_pool_bound(module, input_shape)[0], "overlap")
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return record(batch_norm_bound(module), "diagonal")
    if isinstance(module, nn.LeakyReLU):
        return record(max(1.0, abs(module.negative_slope)), "constant")
    if isinstance(module, nn.ELU):
        return record(max(1.0, float(module.alpha)), "constant")
    for kind, value in _CONSTANT_BOUNDS:
        if isinstance(module, kind):
            return record(value, "constant")
    raise ValueError(
        f"layer {key} ({type(module).__name__}): no Lipschitz bound is known for this kind of "
        "layer; supported: Linear, Conv2d, max/average pooling, batch norm, dropout, flatten "
        "and the usual activations"
    )


@torch.no_grad()
def network_bounds(
    network: StagedNetwork,
    *,
    warm_start: MutableMapping[str, Tensor] | None = None,
    dense_limit: int = 1024,
    tol: float = 1e-7,
    max_iter: int = 300,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> SpectralBounds:
    """Every stage's and primitive layer's upper Lipschitz bound, at the shapes it sees.

    Each stage's input shape is ``network.layer_shape`` of the stage before it; inside a stage,
    layers are traced on a zero input. Random starting vectors come from ``seed`` (so every
    DDP rank finds the same numbers). ``warm_start`` (see :func:`layer_bound`) makes repeated
    calls on a slowly changing network cheap.
    """
    if device is None:
        device = next((p.device for p in network.parameters()), torch.device("cpu"))
    if torch.device(device).type == "mps":
        device = "cpu"  # no float64 there
    generator = torch.Generator().manual_seed(seed)
    names = list(network.layer_names)
    was_training = network.training
    network.eval()
    try:
        stages = []
        for index, (name, stage) in enumerate(network.stages.items()):
            stage_input = network.layer_shape(names[index])
            shape = stage_input
            layers = []
            for path, module in _primitives(stage):
                layers.append(
                    layer_bound(
                        module,
                        shape,
                        stage=name,
                        path=path,
                        warm_start=warm_start,
                        dense_limit=dense_limit,
                        tol=tol,
                        max_iter=max_iter,
                        generator=generator,
                        device=device,
                    )
                )
                shape = _traced_shape(module, shape)
            stages.append(StageBound(name, tuple(stage_input), tuple(layers)))
    finally:
        network.train(was_training)
    return SpectralBounds(tuple(stages))


def _traced_shape(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of one example at the module's output (the module in eval mode)."""
    tensors = [*module.parameters(), *module.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = floating[0].dtype if floating else torch.float32
    return tuple(module(torch.zeros(1, *input_shape, device=device, dtype=dtype)).shape[1:])


__all__ = [
    "LayerBound",
    "NormResult",
    "SpectralBounds",
    "StageBound",
    "autograd_adjoint",
    "batch_norm_bound",
    "conv2d_fourier_bound",
    "conv2d_operator",
    "layer_bound",
    "linear_operator_norm",
    "max_pool_bound",
    "network_bounds",
]
