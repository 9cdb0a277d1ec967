"""Upper bounds on a network's Lipschitz constant, layer by layer (Szegedy et al. 2013, 4.3).

The paper bounds a network's instability by its layers' operator norms (L2):
``||phi(x) - phi(x + r)|| <= L ||r||``, with ``L = prod_k L_k`` for a chain of layers (its
Table 5 for AlexNet). This module computes such bounds for any ``nn.Module`` that maps one
input tensor to its output, at the input shape each layer really sees:

- A **registry** maps module classes to bound functions, ``bound(module, input_shape) ->
  float``: the module's L2 Lipschitz constant on one example of ``input_shape`` (batch
  dimension excluded), or an upper bound of it. Users extend it with :func:`register_bound`
  (and :func:`register_function_bound` for functions and tensor methods).
- **Composition over the dataflow graph.** The module is traced with ``torch.fx``; every
  module with a registered bound is one leaf of the graph (so a block ``torch.fx`` cannot
  trace can be registered as a whole). Each node gets an upper bound of its Lipschitz constant
  with respect to the network input: a leaf module multiplies its input's by its own bound;
  ``a + b`` and ``a - b`` add theirs (a residual block ``x + f(x)`` gets ``1 + L(f)``, one
  with a projection shortcut ``L(shortcut) + L(f)``); ``torch.cat`` takes the root of the
  sum of squares; multiplication or division by a constant scales by its largest factor
  (``(x - mean) / std`` inside a model: ``1 / min |std|``); shape operations, slicing and
  dropout keep it. Anything without a rule raises :class:`LipschitzBoundError`, which names
  the module or function, its place in the model and how to register a bound.
- A :class:`~trainers.stages.StagedNetwork` is bounded stage by stage (each stage traced the
  same way); a stage's bound is the product of its layers' for a chain, and the network's is
  the product of its stages' (:func:`network_bounds`, the paper's Table 5 layout).

Built-in bounds (``method`` in each row says which was used):

- ``nn.Linear``: the largest singular value of ``W`` (``svd``, exact).
- ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d``: the exact norm of the linear operator
  applied to inputs of that shape, stride, padding, dilation and groups included: from the
  Gram matrix of the smaller side when that side is at most ``dense_limit`` long (``gram``),
  otherwise by Lanczos iteration on ``A^T A`` to a relative tolerance (``lanczos``). For
  ``Conv2d`` the paper's Fourier-domain (circular) value is reported beside it as
  ``fourier_bound``; with zero padding or strides it is only an upper bound of the operator.
- 1-Lipschitz maps (ReLU, ReLU6, hard tanh, tanh, softplus, softsign, CELU, log-sigmoid,
  tanh-shrink, soft-shrink, flatten, identity, constant padding, dropout in eval mode): 1.
  Sigmoid: 1/4. Hard sigmoid: 1/6. Hard swish: 3/2. Leaky ReLU, ELU, PReLU: ``max(1, slope)``.
  SELU: ``scale * alpha``. GELU: ``Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.12890...``; SiLU, Mish
  and tanh-approximated GELU: the largest ``|f'|`` on a fine grid plus a margin
  (``derivative``). Softmax (and softmin): 1/2, from Gershgorin's bound on the Jacobian
  ``diag(p) - p p^T`` (``gershgorin``); log-softmax: ``1 + sqrt(n)`` (``triangle``).
- Max pooling: ``sqrt(m)``, with ``m`` the largest number of pooling windows that any input
  element falls in (``overlap``; 1 for non-overlapping windows). The bound is attained.
  Average pooling is linear: its exact norm, computed like a convolution's.
- Batch norm (eval mode, running statistics), and instance norm with running statistics in
  eval mode: ``max |gamma / sqrt(running_var + eps)|`` (``diagonal``).
- Layer norm, group norm, RMS norm and instance norm with batch statistics normalise by each
  example's own standard deviation, so their slope grows as that deviation shrinks. With
  ``eps > 0`` they are still globally Lipschitz: on centred ``z`` the map
  ``z / sqrt(|z|^2 / n + eps)`` has Jacobian eigenvalues ``1/s`` and ``eps / s^3``, with
  ``s = sqrt(|z|^2 / n + eps) >= sqrt(eps)``, so the layer's bound is
  ``max |gamma| / sqrt(eps)`` (``max|gamma|/sqrt(eps)``). It is a true global bound, attained
  near constant inputs, and much larger than the local slope ``max |gamma| / std`` at typical
  activations; the method column names it so that nobody mistakes it for the latter.

Biases do not change a Lipschitz constant. Bounds are those of the model in eval mode (the
classifier that attacks face); the model's mode is restored afterwards.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from intriguing.analysis.tables import markdown_lines
from intriguing.errors import first_line
from intriguing.trainers.stages import StagedNetwork

LinearMap = Callable[[Tensor], Tensor]

# Examples per traced batch: two, so that an operation that mixes the examples of a batch
# (a reshape over the batch dimension, a reduction over it) shows in the output's shape.
_TRACE_BATCH = 2


class LipschitzBoundError(ValueError):
    """No bound is known for a module or function of a model, or the model cannot be traced.

    ``message`` is the explanation (``torch.fx`` appends its graph to ``str(error)`` when the
    error passes through its interpreter; the bounds functions raise it without that).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LayerBound:
    """One layer's upper bound on its Lipschitz constant.

    Attributes:
        stage: the stage it belongs to (a :class:`~trainers.stages.StagedNetwork`'s), empty for
            a traced model.
        path: its place inside the stage or model (``"0"``, ``"2.1"``, ``"layer1.0.conv1"``),
            as in ``named_modules()``; a module called more than once gets ``#2``, ``#3`` on
            its later calls; a function call, ``<module path>.<node name>``.
        operator: the module's class name, or the function's name.
        size: the paper's "Size" column (``in x kh x kw x out`` for a convolution, ``in x out``
            for a fully connected layer, the window for pooling), empty otherwise.
        stride: the paper's "Stride" column, ``"N/A"`` where there is none.
        input_shape: shape of one example at the layer's input.
        bound: the upper bound (exact operator norm where the layer is linear).
        fourier_bound: for 2-d convolutions, the circular (Fourier-domain) bound; ``None``
            otherwise.
        method: how ``bound`` was found (``svd``, ``gram``, ``lanczos``, ``overlap``,
            ``diagonal``, ``constant``, ``derivative``, ``max|gamma|/sqrt(eps)``, ...; a
            user's registered bound: ``registered`` unless it returned a :class:`Bound`).
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
        return f"{self.stage}.{self.path}" if self.stage else self.path


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _layer_rows(layers: Sequence[LayerBound]) -> list[dict[str, Any]]:
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
        for layer in layers
    ]


def _layers_markdown(layers: Sequence[LayerBound], digits: int) -> list[str]:
    return markdown_lines(
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
                _number(layer.bound, digits),
                _number(layer.fourier_bound, digits),
                layer.method,
            ]
            for layer in layers
        ],
    )


@dataclass(frozen=True)
class StageBound:
    """A stage's layers and its bound (the product of its layers' for a chain of layers)."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerBound, ...]
    composed: float | None = None

    @property
    def bound(self) -> float:
        if self.composed is not None:
            return self.composed
        return math.prod(layer.bound for layer in self.layers)


@dataclass(frozen=True)
class SpectralBounds:
    """Per-stage and per-layer Lipschitz bounds of a StagedNetwork, and their product."""

    stages: tuple[StageBound, ...]

    @property
    def product(self) -> float:
        """Upper bound on the whole network's Lipschitz constant (input to logits)."""
        return math.prod(stage.bound for stage in self.stages)

    @property
    def network(self) -> float:
        """The network's bound (:attr:`product`), named as :attr:`ModelBounds.network`."""
        return self.product

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
        return _layer_rows(self.layers)

    def to_markdown(self, *, digits: int = 4) -> str:
        """Table 5's layout (a row of layers and their upper bounds, then the product),
        followed by the primitive layers with the paper's Size and Stride columns."""
        stages = markdown_lines(
            ["Layer", *(stage.name for stage in self.stages), "Product"],
            [
                [
                    "Upper bound",
                    *(_number(stage.bound, digits) for stage in self.stages),
                    _number(self.product, digits),
                ]
            ],
        )
        return "\n".join([*stages, "", *_layers_markdown(self.layers, digits)]) + "\n"


@dataclass(frozen=True)
class ModelBounds:
    """The bounds of a traced model: every layer's, and the model's composed over its graph.

    Attributes:
        input_shape: shape of one example at the model's input.
        layers: one row per call of a bounded module (and per function call that scales by
            a constant), in the order the model runs them.
        network: upper bound of the model's Lipschitz constant from its input to its output
            (for several outputs, to all of them concatenated). Not the product of the
            layers' bounds where the graph branches: a residual block adds its branches'.
    """

    input_shape: tuple[int, ...]
    layers: tuple[LayerBound, ...]
    network: float

    def summary(self, prefix: str = "spectral/") -> dict[str, float]:
        """``{prefix}<layer>`` for every layer and ``{prefix}network``."""
        values = {f"{prefix}{layer.name}": layer.bound for layer in self.layers}
        values[f"{prefix}network"] = self.network
        return values

    def rows(self) -> list[dict[str, Any]]:
        """One plain record per layer (for JSON and ``wandb.Table``)."""
        return _layer_rows(self.layers)

    def to_markdown(self, *, digits: int = 4) -> str:
        """The network's bound, then every layer's."""
        shape = "x".join(str(d) for d in self.input_shape)
        head = markdown_lines(
            ["Input shape", "Network upper bound"], [[shape, _number(self.network, digits)]]
        )
        return "\n".join([*head, "", *_layers_markdown(self.layers, digits)]) + "\n"


@dataclass(frozen=True)
class Bound:
    """What a bound function may return instead of a bare number.

    Attributes:
        value: the upper bound of the module's L2 Lipschitz constant (finite, non-negative).
        method: how it was found (the row's ``method``).
        fourier_bound: a second, Fourier-domain value shown beside it (convolutions).
    """

    value: float
    method: str = "registered"
    fourier_bound: float | None = None


@dataclass(frozen=True)
class BoundContext:
    """Numerical settings and the warm-start cache, for bound functions that want them.

    Attributes:
        key: the layer's name (``stage.path`` or its place in the model): the warm-start key.
        warm_start: maps keys to the top singular vector found last time (read and updated).
        dense_limit, tol, max_iter: see :func:`linear_operator_norm`.
        generator: the source of random starting vectors.
        device: where operator norms are computed (float64).
        fourier: whether convolutions also report the paper's Fourier-domain bound (it costs
            an SVD per frequency, more than the exact norm for wide layers).
    """

    key: str
    warm_start: MutableMapping[str, Tensor] | None = None
    dense_limit: int = 1024
    tol: float = 1e-7
    max_iter: int = 300
    generator: torch.Generator | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fourier: bool = True

    def operator_norm(
        self,
        apply: LinearMap,
        input_shape: Sequence[int],
        adjoint: LinearMap | None = None,
    ) -> NormResult:
        """:func:`linear_operator_norm` with these settings, warm-started under ``key``."""
        result = linear_operator_norm(
            apply,
            input_shape,
            adjoint=adjoint,
            dense_limit=self.dense_limit,
            tol=self.tol,
            max_iter=self.max_iter,
            start=self.warm_start.get(self.key) if self.warm_start is not None else None,
            generator=self.generator,
            device=self.device,
        )
        if self.warm_start is not None:
            self.warm_start[self.key] = result.vector.detach().cpu()
        return result


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


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_operator(
    conv: nn.modules.conv._ConvNd,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[LinearMap, LinearMap]:
    """A 1-, 2- or 3-d convolution's (or transposed convolution's) linear part (no bias) on
    ``input_shape`` (``(C_in, *spatial)``), and its adjoint.

    For a convolution with zero padding given as numbers, the adjoint is the transposed
    convolution with the ``output_padding`` that restores the input's size; otherwise
    (other padding modes, ``padding="same"``, transposed convolutions) it is the
    vector-Jacobian product. Raises ``ValueError`` when ``input_shape`` does not fit.
    """
    device = torch.device(device)
    nd = len(conv.kernel_size)
    weight = conv.weight.detach().to(dtype=dtype, device=device)
    if len(input_shape) != nd + 1 or int(input_shape[0]) != conv.in_channels:
        spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[nd]
        raise ValueError(
            f"{conv}: expects inputs of shape ({conv.in_channels}, {spatial}), "
            f"got {tuple(input_shape)}"
        )
    transpose = _CONV_TRANSPOSE[nd]
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        options = (conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation)

        def apply_transposed(x: Tensor) -> Tensor:
            return transpose(x, weight, None, *options)

        return apply_transposed, autograd_adjoint(apply_transposed, input_shape)

    def apply(x: Tensor) -> Tensor:
        return conv._conv_forward(x, weight, None)  # type: ignore[operator]

    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return apply, autograd_adjoint(apply, input_shape)
    stride, padding = _tuple(conv.stride, nd), _tuple(conv.padding, nd)
    dilation = _tuple(conv.dilation, nd)
    output_shape = _output_shape(apply, input_shape, dtype, device)
    output_padding = tuple(
        int(input_shape[1 + i])
        - ((output_shape[1 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k - 1) + 1)
        for i, k in enumerate(weight.shape[2:])
    )

    def adjoint(y: Tensor) -> Tensor:
        return transpose(y, weight, None, stride, padding, output_padding, conv.groups, dilation)

    return apply, adjoint


def conv2d_operator(
    conv: nn.Conv2d,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[LinearMap, LinearMap]:
    """:func:`conv_operator` for a 2-d convolution (inputs ``(C_in, H, W)``)."""
    return conv_operator(conv, input_shape, dtype=dtype, device=device)


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


_MAX_POOLS: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1,
    nn.MaxPool2d: 2,
    nn.MaxPool3d: 3,
    nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2,
    nn.AdaptiveMaxPool3d: 3,
}


def max_pool_bound(pool: nn.Module, input_shape: Sequence[int]) -> tuple[float, int]:
    """``sqrt(m)`` for a 1-, 2- or 3-d max pooling layer, and ``m``: the most windows any
    element is in.

    ``|max_W(x) - max_W(x')| <= max_{i in W} |x_i - x'_i|``, so summing the squares over
    windows counts each ``(x_i - x'_i)^2`` once per window that holds ``i``: the layer is
    ``sqrt(m)``-Lipschitz, and an element that is the maximum of its ``m`` windows attains it.
    Raises ``ValueError`` for a module that is not max pooling.
    """
    nd = next((n for kind, n in _MAX_POOLS.items() if isinstance(pool, kind)), None)
    if nd is None:
        raise ValueError(f"not a max pooling layer: {pool}")
    spatial = [int(d) for d in input_shape[-nd:]]
    with torch.no_grad():
        out = pool(torch.zeros(1, *input_shape)).shape[-nd:]
    if isinstance(pool, nn.AdaptiveMaxPool1d | nn.AdaptiveMaxPool2d | nn.AdaptiveMaxPool3d):
        counts = [_adaptive_overlap(spatial[i], int(out[i])) for i in range(nd)]
    else:
        kernel = _tuple(pool.kernel_size, nd)  # type: ignore[arg-type]
        stride = _tuple(pool.stride or pool.kernel_size, nd)  # type: ignore[arg-type]
        padding = _tuple(pool.padding, nd)  # type: ignore[arg-type]
        dilation = _tuple(pool.dilation, nd)  # type: ignore[arg-type]
        counts = [
            _window_overlap(spatial[i], int(out[i]), kernel[i], stride[i], padding[i], dilation[i])
            for i in range(nd)
        ]
    overlap = math.prod(counts)
    return math.sqrt(overlap), overlap


def batch_norm_bound(norm: nn.modules.batchnorm._NormBase) -> float:
    """``max |gamma / sqrt(running_var + eps)|``: the eval-mode layer is diagonal.

    Raises ``ValueError`` for a layer without running statistics (it normalises with each
    batch's statistics even in eval mode).
    """
    if norm.running_var is None:
        raise ValueError(
            f"{norm}: without running statistics batch norm normalises with each batch's "
            "statistics even in eval mode and has no fixed Lipschitz constant"
        )
    scale = (norm.running_var.detach().double() + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    return float(scale.abs().max())


def normalization_bound(weight: Tensor | None, eps: float) -> float:
    """``max |gamma| / sqrt(eps)``: a global bound of layer, group, RMS or instance norm.

    Centring is a projection (norm 1); on centred ``z``, ``z / sqrt(|z|^2 / n + eps)`` has a
    symmetric Jacobian with eigenvalues ``1/s`` (across ``z``) and ``eps / s^3`` (along it),
    ``s = sqrt(|z|^2 / n + eps) >= sqrt(eps)``; the per-channel scale ``gamma`` multiplies by
    at most ``max |gamma|``. Raises ``ValueError`` for ``eps <= 0`` (then no bound exists).
    """
    if not eps > 0:
        raise ValueError(
            f"eps={eps}: a normalisation by the standard deviation without eps > 0 has no "
            "Lipschitz bound (its slope is unbounded near constant inputs)"
        )
    scale = 1.0 if weight is None else float(weight.detach().double().abs().max())
    return scale / math.sqrt(eps)


ModuleBound = Callable[..., "float | Bound"]


@dataclass(frozen=True)
class _Registration:
    function: ModuleBound
    context: bool


_MODULE_BOUNDS: dict[type[nn.Module], _Registration] = {}


def register_bound(kind: type[nn.Module], bound: ModuleBound, *, context: bool = False) -> None:
    """Register (or replace) the Lipschitz bound of a module class.

    ``bound(module, input_shape)`` returns an upper bound of the module's L2 Lipschitz
    constant on one example of ``input_shape`` (a tuple of ints, batch dimension excluded),
    as a float or a :class:`Bound`; with ``context=True`` it is called as
    ``bound(module, input_shape, context)`` with a :class:`BoundContext` (tolerances, warm
    starts, device; ``context.operator_norm(apply, shape)`` computes a linear map's exact
    norm). A registered module is one leaf of the traced graph: its ``forward`` is not traced,
    so a block ``torch.fx`` cannot trace, or one whose bound you know better than the
    composition of its parts (a residual block, a Lipschitz-constrained layer), can be
    registered as a whole. Subclasses use their base class's bound unless they override
    ``forward``. Example::

        register_bound(MyBlock, lambda module, input_shape: 1.0 + module.scale)

    Raises ``TypeError`` when ``kind`` is no ``nn.Module`` subclass or ``bound`` is not callable.
    """
    if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
        raise TypeError(f"kind={kind!r}: must be a subclass of torch.nn.Module")
    if not callable(bound):
        raise TypeError(f"bound={bound!r}: must be callable as bound(module, input_shape)")
    _MODULE_BOUNDS[kind] = _Registration(bound, bool(context))


def unregister_bound(kind: type[nn.Module]) -> None:
    """Remove the bound registered for exactly ``kind``; ``ValueError`` if there is none."""
    if kind not in _MODULE_BOUNDS:
        raise ValueError(f"kind={kind!r}: no bound is registered for this class")
    del _MODULE_BOUNDS[kind]


def _registration(module: nn.Module) -> _Registration | None:
    """The bound registered for the module's class or the nearest base class whose
    ``forward`` it uses (a subclass that overrides ``forward`` computes something else)."""
    forward = getattr(type(module), "forward", None)
    for kind in type(module).__mro__:
        entry = _MODULE_BOUNDS.get(kind)
        if entry is not None:
            return entry if getattr(kind, "forward", None) is forward else None
    return None


def has_bound(module: nn.Module) -> bool:
    """Whether a bound is registered for this module (see :func:`register_bound`)."""
    return _registration(module) is not None


def _class_path(kind: type) -> str:
    if kind.__module__.startswith("torch.nn"):
        return f"nn.{kind.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _unknown_module(name: str, module: nn.Module) -> LipschitzBoundError:
    kind = type(module)
    return LipschitzBoundError(
        f"no Lipschitz bound for module {name!r} ({kind.__name__}); register one: "
        "`from intriguing.analysis.spectral import register_bound; "
        f"register_bound({_class_path(kind)}, lambda module, input_shape: ...)`, returning "
        "an upper bound of its L2 Lipschitz constant on one example of that input shape"
    )


def _size_and_stride(module: nn.Module) -> tuple[str, str]:
    def stride_text(stride: tuple[int, ...]) -> str:
        return str(stride[0]) if len(set(stride)) == 1 else "x".join(str(s) for s in stride)

    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = "x".join(str(k) for k in module.kernel_size)
        stride = _tuple(module.stride, len(module.kernel_size))
        return f"{module.in_channels}x{kernel}x{module.out_channels}", stride_text(stride)
    if isinstance(module, nn.Linear):
        return f"{module.in_features}x{module.out_features}", "N/A"
    pools = {
        nn.MaxPool1d: 1,
        nn.MaxPool2d: 2,
        nn.MaxPool3d: 3,
        nn.AvgPool1d: 1,
        nn.AvgPool2d: 2,
        nn.AvgPool3d: 3,
    }
    nd = next((n for kind, n in pools.items() if isinstance(module, kind)), 0)
    if nd:
        kernel_size = _tuple(module.kernel_size, nd)  # type: ignore[arg-type]
        stride = _tuple(module.stride or module.kernel_size, nd)  # type: ignore[arg-type]
        return "x".join(str(k) for k in kernel_size), stride_text(stride)
    return "", "N/A"


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
    fourier: bool = True,
) -> LayerBound:
    """The registered upper bound of one layer at ``input_shape`` (see the module docstring).

    ``warm_start`` maps ``"stage.path"`` to the top singular vector found last time; it is
    read as Lanczos's starting vector and updated with the new one. ``fourier``: convolutions
    also report the paper's Fourier-domain bound. Raises
    :class:`LipschitzBoundError` (a ``ValueError``) for a module without a registered bound,
    and ``ValueError`` when the bound function returns no finite non-negative number.
    """
    input_shape = tuple(int(d) for d in input_shape)
    key = f"{stage}.{path}"
    entry = _registration(module)
    if entry is None:
        raise _unknown_module(f"{stage}.{path}" if stage else path, module)
    context = BoundContext(
        key, warm_start, dense_limit, tol, max_iter, generator, torch.device(device), fourier
    )
    if entry.context:
        result = entry.function(module, input_shape, context)
    else:
        result = entry.function(module, input_shape)
    found = result if isinstance(result, Bound) else Bound(float(result))
    if not (math.isfinite(found.value) and found.value >= 0):
        raise ValueError(
            f"layer {key} ({type(module).__name__}): its bound function returned "
            f"{found.value!r}, not a finite non-negative number"
        )
    size, stride = _size_and_stride(module)
    return LayerBound(
        stage,
        path,
        type(module).__name__,
        size,
        stride,
        input_shape,
        float(found.value),
        found.fourier_bound,
        found.method,
    )


# ---- built-in bounds ----------------------------------------------------------------------


def _linear_bound(module: nn.Linear, input_shape: tuple[int, ...], context: BoundContext) -> Bound:
    if input_shape[-1:] != (module.in_features,):
        raise ValueError(f"{context.key}: {module} cannot take inputs of shape {input_shape}")
    weight = module.weight.detach().to(torch.float64)
    return Bound(float(torch.linalg.matrix_norm(weight, ord=2)), "svd")


def _conv_bound(
    module: nn.modules.conv._ConvNd, input_shape: tuple[int, ...], context: BoundContext
) -> Bound:
    apply, adjoint = conv_operator(module, input_shape, device=context.device)
    fourier = None
    if context.fourier and isinstance(module, nn.Conv2d):
        fourier = conv2d_fourier_bound(module, input_shape)
    result = context.operator_norm(apply, input_shape, adjoint)
    return Bound(result.norm, result.method, fourier)


def _average_pool_bound(
    module: nn.Module, input_shape: tuple[int, ...], context: BoundContext
) -> Bound:
    # Pooling acts on each channel alike: the norm on one channel is the layer's.
    nd = len(input_shape) - 1  # (C, *spatial)
    result = context.operator_norm(module, (1, *input_shape[-nd:]))
    return Bound(result.norm, result.method)


def _max_pool_bound(module: nn.Module, input_shape: tuple[int, ...]) -> Bound:
    return Bound(max_pool_bound(module, input_shape)[0], "overlap")


def _batch_norm_bound(
    module: nn.modules.batchnorm._NormBase, input_shape: tuple[int, ...]
) -> Bound:
    return Bound(batch_norm_bound(module), "diagonal")


def _instance_norm_bound(
    module: nn.modules.instancenorm._InstanceNorm, input_shape: tuple[int, ...]
) -> Bound:
    if module.track_running_stats and module.running_var is not None and not module.training:
        return Bound(batch_norm_bound(module), "diagonal")
    return Bound(normalization_bound(module.weight, module.eps), "max|gamma|/sqrt(eps)")


def _layer_norm_bound(module: nn.LayerNorm | nn.GroupNorm, input_shape: tuple[int, ...]) -> Bound:
    return Bound(normalization_bound(module.weight, module.eps), "max|gamma|/sqrt(eps)")


def _rms_norm_bound(module: nn.Module, input_shape: tuple[int, ...]) -> Bound:
    weight = getattr(module, "weight", None)
    eps = getattr(module, "eps", None)
    if eps is None:  # torch uses the machine epsilon of the input's dtype
        dtype = weight.dtype if weight is not None else torch.get_default_dtype()
        eps = torch.finfo(dtype).eps
    return Bound(normalization_bound(weight, float(eps)), "max|gamma|/sqrt(eps)")


@functools.cache
def derivative_bound(name: str) -> float:
    """``sup |f'|`` of a smooth activation, from its derivative on a grid of step 1e-4 over
    ``[-20, 20]`` (float64) plus a margin of 1e-6: the error of a grid maximum of a smooth
    function is of the order of ``|f'''| h^2 / 8``, far below it; beyond the interval the
    derivatives of GELU, SiLU and Mish are within 1e-6 of 0 or 1.
    ``name``: ``"silu"``, ``"mish"`` or ``"gelu_tanh"``."""
    functions: dict[str, Callable[[Tensor], Tensor]] = {
        "silu": F.silu,
        "mish": F.mish,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    }
    if name not in functions:
        raise ValueError(f"name={name!r}: one of {sorted(functions)}")
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64, requires_grad=True)
        (slope,) = torch.autograd.grad(functions[name](x).sum(), x)
    return float(slope.abs().max()) + 1e-6


# GELU(x) = x Phi(x): f'' = phi(x) (2 - x^2) vanishes at +-sqrt(2), where |f'| is largest.
GELU_BOUND = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)
# SELU's slope is scale * alpha * exp(x) < scale * alpha below zero, scale above.
SELU_BOUND = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def _gelu_bound(approximate: str) -> float:
    return GELU_BOUND if approximate == "none" else derivative_bound("gelu_tanh")


def _constant(value: float, method: str = "constant") -> ModuleBound:
    def bound(module: nn.Module, input_shape: tuple[int, ...]) -> Bound:
        return Bound(value, method)

    return bound


def _attribute(compute: Callable[[Any], float], method: str = "constant") -> ModuleBound:
    def bound(module: nn.Module, input_shape: tuple[int, ...]) -> Bound:
        return Bound(compute(module), method)

    return bound


def _log_softmax_size(dim: int | None, input_shape: Sequence[int]) -> int:
    if dim is None:
        return math.prod(input_shape)
    index = dim - 1 if dim > 0 else dim  # dim counts the batch dimension
    return int(input_shape[index])


def _log_softmax_bound(module: nn.LogSoftmax, input_shape: tuple[int, ...]) -> Bound:
    # Jacobian I - 1 p^T: norm at most 1 + ||1|| ||p|| <= 1 + sqrt(n).
    n = _log_softmax_size(module.dim, input_shape)
    return Bound(1.0 + math.sqrt(n), "triangle")


def _register_builtins() -> None:
    one = _constant(1.0)
    for kind in (
        nn.ReLU,
        nn.ReLU6,
        nn.Hardtanh,
        nn.Tanh,
        nn.Softplus,
        nn.Softsign,
        nn.CELU,
        nn.LogSigmoid,
        nn.Tanhshrink,
        nn.Softshrink,
        nn.Identity,
        nn.Flatten,
        nn.Unflatten,
        nn.ConstantPad1d,
        nn.ConstantPad2d,
        nn.ConstantPad3d,
        nn.ZeroPad1d,
        nn.ZeroPad2d,
        nn.ZeroPad3d,
        # Dropout is the identity in eval mode.
        nn.Dropout,
        nn.Dropout1d,
        nn.Dropout2d,
        nn.Dropout3d,
        nn.AlphaDropout,
        nn.FeatureAlphaDropout,
    ):
        register_bound(kind, one)
    register_bound(nn.Sigmoid, _constant(0.25))
    register_bound(nn.Hardsigmoid, _constant(1 / 6))
    register_bound(nn.Hardswish, _constant(1.5))
    register_bound(nn.SELU, _constant(SELU_BOUND))
    register_bound(nn.Softmax, _constant(0.5, "gershgorin"))
    register_bound(nn.Softmin, _constant(0.5, "gershgorin"))
    register_bound(nn.LogSoftmax, _log_softmax_bound)
    register_bound(nn.LeakyReLU, _attribute(lambda m: max(1.0, abs(m.negative_slope))))
    register_bound(nn.ELU, _attribute(lambda m: max(1.0, float(m.alpha))))
    register_bound(nn.PReLU, _attribute(lambda m: max(1.0, float(m.weight.detach().abs().max()))))
    register_bound(nn.GELU, _attribute(lambda m: _gelu_bound(m.approximate), "derivative"))
    register_bound(nn.SiLU, _attribute(lambda m: derivative_bound("silu"), "derivative"))
    register_bound(nn.Mish, _attribute(lambda m: derivative_bound("mish"), "derivative"))
    register_bound(nn.Linear, _linear_bound, context=True)
    for kind in (
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
    ):
        register_bound(kind, _conv_bound, context=True)
    for kind in (
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
    ):
        register_bound(kind, _average_pool_bound, context=True)
    for kind in _MAX_POOLS:
        register_bound(kind, _max_pool_bound)
    register_bound(nn.modules.batchnorm._BatchNorm, _batch_norm_bound)
    register_bound(nn.SyncBatchNorm, _batch_norm_bound)
    register_bound(nn.modules.instancenorm._InstanceNorm, _instance_norm_bound)
    register_bound(nn.LayerNorm, _layer_norm_bound)
    register_bound(nn.GroupNorm, _layer_norm_bound)
    if hasattr(nn, "RMSNorm"):
        register_bound(nn.RMSNorm, _rms_norm_bound)


_register_builtins()


# ---- functions and tensor methods ---------------------------------------------------------


@dataclass(frozen=True)
class FunctionCall:
    """One call of a function or tensor method in a traced model, as a rule sees it.

    Attributes:
        target: the function (``operator.add``, ``torch.cat``, ``F.relu``) or the tensor
            method's name (``"view"``).
        name: where it is: ``"<module path>.<node name>"``.
        args, kwargs: the values it was called with (tensors of a batch of two examples).
        arg_bounds, kwarg_bounds: the same structures, with the Lipschitz bound (with respect
            to the network input) at every value that depends on the input, ``None`` elsewhere.
        output: what it returned.
        context: numerical settings, for rules that compute an operator norm.
        dependent: ``(value, bound)`` of every argument that depends on the input, in order
            (a value may be a tuple, such as the output of ``chunk``).
    """

    target: Callable[..., Any] | str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    arg_bounds: tuple[Any, ...]
    kwarg_bounds: dict[str, Any]
    output: Any
    context: BoundContext
    dependent: tuple[tuple[Any, float], ...] = ()

    @property
    def function_name(self) -> str:
        """``Tensor.<method>``, or the function's importable name (``operator.mul``)."""
        if isinstance(self.target, str):
            return f"Tensor.{self.target}"
        return _function_path(self.target)

    @property
    def short_name(self) -> str:
        """``Tensor.<method>``, or the function's own name (``max_pool2d``)."""
        if isinstance(self.target, str):
            return f"Tensor.{self.target}"
        return str(getattr(self.target, "__name__", self.target))

    def inputs(self) -> list[tuple[Any, float]]:
        """``(value, bound)`` of every argument that depends on the input, in order."""
        return list(self.dependent)

    def argument(self, index: int, keyword: str, default: Any = None) -> Any:
        """The argument at ``index`` or named ``keyword`` (``default`` if not given)."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(keyword, default)

    def bound_of(self, index: int, keyword: str) -> Any:
        """The bound of that argument (``None`` if it does not depend on the input)."""
        if index < len(self.arg_bounds):
            return self.arg_bounds[index]
        return self.kwarg_bounds.get(keyword)

    def refuse(self, reason: str) -> LipschitzBoundError:
        """An error naming this call, for rules that cannot bound it."""
        return LipschitzBoundError(f"function {self.function_name} at {self.name!r}: {reason}")


@dataclass(frozen=True)
class FunctionBound:
    """A rule's answer when the call scales by a factor worth a row of its own.

    Attributes:
        lipschitz: the output's bound with respect to the network input.
        factor: the call's own Lipschitz constant (the row's bound).
        method: how ``factor`` was found.
    """

    lipschitz: float
    factor: float
    method: str


FunctionRule = Callable[[FunctionCall], "float | FunctionBound"]
_FUNCTION_BOUNDS: dict[Any, FunctionRule] = {}


def register_function_bound(target: Callable[..., Any] | str, rule: FunctionRule) -> None:
    """Register (or replace) how a function or tensor method composes bounds.

    ``target`` is the function as ``torch.fx`` records it (``torch.cat``, ``F.gelu``,
    ``operator.add``) or a tensor method's name (``"view"``). ``rule(call)`` gets a
    :class:`FunctionCall` and returns the bound of the call's output with respect to the
    network input (``call.inputs()`` has the bounds of its inputs), or a
    :class:`FunctionBound` that also reports the call's own factor as a row. It is called
    only when some argument depends on the input. Example, for ``torch.special.erf``
    (slope at most ``2 / sqrt(pi)``)::

        register_function_bound(
            torch.special.erf, lambda call: 2 / math.sqrt(math.pi) * call.inputs()[0][1]
        )

    Raises ``TypeError`` when ``target`` is neither callable nor a string, or ``rule`` is not
    callable.
    """
    if not (isinstance(target, str) or callable(target)):
        raise TypeError(f"target={target!r}: must be a function or a tensor method's name")
    if not callable(rule):
        raise TypeError(f"rule={rule!r}: must be callable as rule(call)")
    _FUNCTION_BOUNDS[target] = rule


def unregister_function_bound(target: Callable[..., Any] | str) -> None:
    """Remove the rule registered for ``target``; ``ValueError`` if there is none."""
    if target not in _FUNCTION_BOUNDS:
        raise ValueError(f"target={target!r}: no rule is registered for it")
    del _FUNCTION_BOUNDS[target]


def _leaves(structure: Any) -> list[Any]:
    if isinstance(structure, tuple | list):
        return [leaf for item in structure for leaf in _leaves(item)]
    if isinstance(structure, dict):
        return [leaf for item in structure.values() for leaf in _leaves(item)]
    if isinstance(structure, slice):
        return _leaves((structure.start, structure.stop, structure.step))
    return [structure]


def _only(call: FunctionCall) -> tuple[Any, float]:
    inputs = call.inputs()
    if len(inputs) != 1:
        raise call.refuse(
            f"{len(inputs)} of its arguments depend on the network input; its rule covers one"
        )
    return inputs[0]


def _broadcast(value: Any, output: Any) -> float:
    """``sqrt(k)`` when an elementwise operation repeats each element of ``value`` ``k``
    times in ``output`` (broadcasting, ``expand``, ``repeat``), else 1."""
    if isinstance(value, Tensor) and isinstance(output, Tensor) and value.numel() > 0:
        return max(1.0, math.sqrt(output.numel() / value.numel()))
    return 1.0


def _first_argument(call: FunctionCall) -> float:
    """The bound of the first argument, the only one whose values reach the output (``view``,
    ``reshape_as``, ``to``: other arguments give shapes, dtypes, devices)."""
    bound = call.bound_of(0, "input")
    if not isinstance(bound, float):
        raise call.refuse("only its first argument may depend on the network input")
    return bound * _broadcast(call.argument(0, "input"), call.output)


def _scaled(factor: float | Callable[[FunctionCall], float]) -> FunctionRule:
    """Elementwise maps with slope at most ``factor``."""

    def rule(call: FunctionCall) -> float:
        value = factor(call) if callable(factor) else factor
        return value * _first_argument(call)

    return rule


def _sum_rule(call: FunctionCall) -> float:
    alpha = abs(float(call.kwargs.get("alpha", 1.0)))
    total = 0.0
    for index, (keyword, weight) in enumerate((("input", 1.0), ("other", alpha))):
        bound = call.bound_of(index, keyword)
        if bound is not None:
            total += weight * bound * _broadcast(call.argument(index, keyword), call.output)
    return total


def _largest(value: Any, *, inverse: bool = False) -> float:
    if isinstance(value, Tensor):
        magnitude = value.detach().double().abs()
        if inverse:
            return float(magnitude.min().reciprocal()) if magnitude.numel() else 0.0
        return float(magnitude.max()) if magnitude.numel() else 0.0
    magnitude = abs(complex(value))
    return (math.inf if magnitude == 0 else 1 / magnitude) if inverse else magnitude


def _product_rule(call: FunctionCall) -> float | FunctionBound:
    (index, bound), other = _operand(call, "multiplication")
    factor = _largest(other)
    value = call.argument(index, ("input", "other")[index])
    return FunctionBound(factor * bound * _broadcast(value, call.output), factor, "max|c|")


def _operand(call: FunctionCall, what: str) -> tuple[tuple[int, float], Any]:
    bounds = [call.bound_of(0, "input"), call.bound_of(1, "other")]
    dependent = [i for i, b in enumerate(bounds) if b is not None]
    if len(dependent) != 1:
        raise call.refuse(
            f"a {what} of two values that depend on the network input has no global "
            "Lipschitz bound; register a bound for the module around it"
        )
    index = dependent[0]
    return (index, float(bounds[index])), call.argument(1 - index, ("input", "other")[1 - index])


def _division_rule(call: FunctionCall) -> float | FunctionBound:
    if call.kwargs.get("rounding_mode") is not None:
        raise call.refuse("a division with rounding is not continuous")
    if call.bound_of(1, "other") is not None:
        raise call.refuse(
            "a division by a value that depends on the network input has no global Lipschitz "
            "bound; register a bound for the module around it"
        )
    bound = call.bound_of(0, "input")
    factor = _largest(call.argument(1, "other"), inverse=True)
    value = call.argument(0, "input")
    return FunctionBound(factor * bound * _broadcast(value, call.output), factor, "max|1/c|")


def _matrix_rule(call: FunctionCall) -> float | FunctionBound:
    (index, bound), other = _operand(call, "matrix product")
    if not (isinstance(other, Tensor) and other.dim() == 2):
        raise call.refuse("the rule covers products with a constant matrix (2-d tensor) only")
    value = call.argument(index, ("input", "other")[index])
    if index == 1 and value.dim() < 3:
        raise call.refuse("a constant matrix times a batch of vectors mixes the batch's examples")
    factor = float(torch.linalg.matrix_norm(other.detach().double(), ord=2))
    return FunctionBound(factor * bound, factor, "svd")


def _linear_function_rule(call: FunctionCall) -> float | FunctionBound:
    bound = _first_argument(call)
    weight = call.argument(1, "weight")
    if call.bound_of(1, "weight") is not None or not isinstance(weight, Tensor):
        raise call.refuse("the rule covers a constant weight only")
    factor = float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
    return FunctionBound(factor * bound, factor, "svd")


def _concatenation_rule(call: FunctionCall) -> float:
    bounds = [b for b in _leaves(call.bound_of(0, "tensors")) if b is not None]
    return math.sqrt(sum(b * b for b in bounds))


def _reduction(kind: str) -> FunctionRule:
    """``mean``: ``1/sqrt(n)``; ``sum``: ``sqrt(n)``; ``max``/``min``: 1 (n per output)."""

    def rule(call: FunctionCall) -> float | FunctionBound:
        bound = _first_argument(call)
        value, output = call.argument(0, "input"), call.output
        output = output[0] if isinstance(output, tuple) else output
        n = value.numel() / max(output.numel(), 1)
        factor = {"mean": 1 / math.sqrt(n), "sum": math.sqrt(n), "extreme": 1.0}[kind]
        if factor == 1.0:
            return bound
        return FunctionBound(factor * bound, factor, "constant")

    return rule


def _getitem_rule(call: FunctionCall) -> float:
    container, index = call.args[0], call.args[1]
    bound = call.bound_of(0, "input")
    if call.bound_of(1, "index") is not None:
        raise call.refuse("an index that depends on the network input")
    if isinstance(container, Tensor):
        allowed = (int, slice, type(None), type(Ellipsis))
        if not all(
            isinstance(leaf, allowed) for leaf in (index if isinstance(index, tuple) else (index,))
        ):
            raise call.refuse(
                "indexing with tensors or lists may repeat elements; the rule covers integers, "
                "slices, None and Ellipsis"
            )
    return float(bound)


def _dropout_rule(call: FunctionCall) -> float:
    training = bool(call.argument(2, "training", True))
    p = float(call.argument(1, "p", 0.5))
    return _first_argument(call) / (1 - p) if training and p < 1 else _first_argument(call)


def _pad_rule(call: FunctionCall) -> float:
    if call.argument(2, "mode", "constant") != "constant":
        raise call.refuse("padding that repeats elements (reflect, replicate, circular)")
    return _first_argument(call)


def _clamp_rule(call: FunctionCall) -> float:
    if len(call.inputs()) != 1:
        raise call.refuse("clamping to bounds that depend on the network input")
    return _first_argument(call)


def _softmax_rule(call: FunctionCall) -> float | FunctionBound:
    return FunctionBound(0.5 * _first_argument(call), 0.5, "gershgorin")


def _log_softmax_rule(call: FunctionCall) -> float | FunctionBound:
    value = call.argument(0, "input")
    dim = call.argument(1, "dim")
    n = value.numel() if dim is None else int(value.shape[dim])
    factor = 1.0 + math.sqrt(n)
    return FunctionBound(factor * _first_argument(call), factor, "triangle")


def _norm_function_rule(weight_index: int, eps_index: int) -> FunctionRule:
    def rule(call: FunctionCall) -> float | FunctionBound:
        weight = call.argument(weight_index, "weight")
        eps = float(call.argument(eps_index, "eps", 1e-5))
        if call.bound_of(weight_index, "weight") is not None:
            raise call.refuse("a normalisation weight that depends on the network input")
        factor = normalization_bound(weight, eps)
        return FunctionBound(factor * _first_argument(call), factor, "max|gamma|/sqrt(eps)")

    return rule


def _module_rule(build: Callable[..., nn.Module], names: Sequence[str]) -> FunctionRule:
    """A functional form of a registered module (pooling): the module's bound."""

    def rule(call: FunctionCall) -> float | FunctionBound:
        options = dict(zip(names, call.args[1:], strict=False))
        options.update({k: v for k, v in call.kwargs.items() if k != "input"})
        options.pop("return_indices", None)
        module = build(**options)
        value = call.argument(0, "input")
        shape = tuple(int(d) for d in value.shape[1:])
        found = layer_bound(
            module,
            shape,
            path=call.context.key,
            warm_start=call.context.warm_start,
            dense_limit=call.context.dense_limit,
            tol=call.context.tol,
            max_iter=call.context.max_iter,
            generator=call.context.generator,
            device=call.context.device,
            fourier=call.context.fourier,
        )
        return FunctionBound(found.bound * _first_argument(call), found.bound, found.method)

    return rule


def _conv_function_rule(nd: int) -> FunctionRule:
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    names = ("stride", "padding", "dilation", "groups")

    def rule(call: FunctionCall) -> float | FunctionBound:
        weight = call.argument(1, "weight")
        if call.bound_of(1, "weight") is not None or not isinstance(weight, Tensor):
            raise call.refuse("the rule covers a constant weight only")
        options = dict(zip(names, call.args[3:], strict=False))
        options.update({k: v for k, v in call.kwargs.items() if k in names})
        weight64 = weight.detach().to(dtype=torch.float64, device=call.context.device)

        def apply(x: Tensor) -> Tensor:
            return conv(x, weight64, None, **options)

        shape = tuple(int(d) for d in call.argument(0, "input").shape[1:])
        result = call.context.operator_norm(apply, shape)
        return FunctionBound(result.norm * _first_argument(call), result.norm, result.method)

    return rule


def _register_function_builtins() -> None:
    same = _scaled(1.0)
    for target in (
        # shape, layout, copies and casts
        torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
        torch.permute, torch.movedim, torch.t, torch.narrow, torch.chunk, torch.split,
        torch.unbind, torch.clone, torch.flip, torch.roll, torch.detach,
        "flatten", "view", "reshape", "squeeze", "unsqueeze", "transpose", "permute",
        "movedim", "t", "contiguous", "narrow", "chunk", "split", "unbind", "clone",
        "detach", "to", "float", "double", "half", "bfloat16", "type", "type_as", "view_as",
        "reshape_as", "flip", "roll", "expand", "expand_as", "repeat",
        # 1-Lipschitz elementwise maps
        F.relu, F.relu_, torch.relu, torch.relu_, "relu", "relu_", F.relu6, F.hardtanh,
        F.hardtanh_, torch.tanh, F.tanh, "tanh", F.softplus, F.softsign, F.celu,
        F.logsigmoid, F.tanhshrink, F.softshrink, torch.abs, "abs", operator.neg, torch.neg,
        "neg", operator.pos,
    ):  # fmt: skip
        register_function_bound(target, same)
    for target in (torch.clamp, torch.clip, "clamp", "clip", "clamp_min", "clamp_max"):
        register_function_bound(target, _clamp_rule)
    for target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.dropout):
        register_function_bound(target, _dropout_rule)
    register_function_bound(F.pad, _pad_rule)
    for target in (torch.sigmoid, F.sigmoid, "sigmoid"):
        register_function_bound(target, _scaled(0.25))
    register_function_bound(F.hardsigmoid, _scaled(1 / 6))
    register_function_bound(F.hardswish, _scaled(1.5))
    register_function_bound(F.selu, _scaled(SELU_BOUND))
    register_function_bound(
        F.leaky_relu, _scaled(lambda c: max(1.0, abs(float(c.argument(1, "negative_slope", 0.01)))))
    )
    register_function_bound(F.elu, _scaled(lambda c: max(1.0, float(c.argument(1, "alpha", 1.0)))))
    register_function_bound(
        F.gelu, _scaled(lambda c: _gelu_bound(str(c.kwargs.get("approximate", "none"))))
    )
    register_function_bound(F.silu, _scaled(lambda c: derivative_bound("silu")))
    register_function_bound(F.mish, _scaled(lambda c: derivative_bound("mish")))
    for target in (F.softmax, F.softmin, torch.softmax, "softmax"):
        register_function_bound(target, _softmax_rule)
    for target in (F.log_softmax, torch.log_softmax, "log_softmax"):
        register_function_bound(target, _log_softmax_rule)
    for target in (operator.add, operator.iadd, torch.add, "add", "add_", operator.sub,
                   operator.isub, torch.sub, "sub", "sub_"):  # fmt: skip
        register_function_bound(target, _sum_rule)
    for target in (operator.mul, operator.imul, torch.mul, "mul", "mul_"):
        register_function_bound(target, _product_rule)
    for target in (operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div",
                   "div_"):  # fmt: skip
        register_function_bound(target, _division_rule)
    for target in (operator.matmul, torch.matmul, torch.mm, "matmul", "mm"):
        register_function_bound(target, _matrix_rule)
    register_function_bound(F.linear, _linear_function_rule)
    for target in (torch.cat, torch.concat, torch.concatenate, torch.stack):
        register_function_bound(target, _concatenation_rule)
    for target in (torch.mean, "mean"):
        register_function_bound(target, _reduction("mean"))
    for target in (torch.sum, "sum"):
        register_function_bound(target, _reduction("sum"))
    for target in (torch.amax, torch.amin, "amax", "amin"):
        register_function_bound(target, _reduction("extreme"))
    register_function_bound(operator.getitem, _getitem_rule)
    register_function_bound(F.layer_norm, _norm_function_rule(2, 4))
    register_function_bound(F.group_norm, _norm_function_rule(2, 4))
    for nd in (1, 2, 3):
        register_function_bound(getattr(F, f"conv{nd}d"), _conv_function_rule(nd))
        pool = ("kernel_size", "stride", "padding")
        average = ("ceil_mode", "count_include_pad", "divisor_override")
        register_function_bound(
            getattr(F, f"max_pool{nd}d"),
            _module_rule(getattr(nn, f"MaxPool{nd}d"), (*pool, "dilation", "ceil_mode")),
        )
        register_function_bound(
            getattr(F, f"avg_pool{nd}d"),
            _module_rule(getattr(nn, f"AvgPool{nd}d"), (*pool, *average)),
        )
        register_function_bound(
            getattr(F, f"adaptive_avg_pool{nd}d"),
            _module_rule(getattr(nn, f"AdaptiveAvgPool{nd}d"), ("output_size",)),
        )
        register_function_bound(
            getattr(F, f"adaptive_max_pool{nd}d"),
            _module_rule(getattr(nn, f"AdaptiveMaxPool{nd}d"), ("output_size",)),
        )


_register_function_builtins()


# ---- composition over the traced graph ----------------------------------------------------


class _LeafTracer(fx.Tracer):
    """Modules with a registered bound (and other ``torch.nn`` modules, so that an unknown one
    is named, not its insides) are leaves; everything else is traced through."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if _registration(m) is not None:
            return True
        if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            return False
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except LipschitzBoundError:
            raise
        except Exception as error:  # torch.fx raises many kinds; name the module for all
            name = self.path_of_module(m)
            raise _untraceable(name, m, error) from error


def _untraceable(name: str, module: nn.Module, error: Exception) -> LipschitzBoundError:
    kind = type(module)
    return LipschitzBoundError(
        f"cannot trace module {name!r} ({kind.__name__}) with torch.fx ({error}); register a "
        "bound for it so that it is bounded as one layer: "
        "`from intriguing.analysis.spectral import register_bound; "
        f"register_bound({_class_path(kind)}, lambda module, input_shape: ...)`"
    )


def _contains_tensor(value: Any) -> bool:
    return any(isinstance(leaf, Tensor) for leaf in _leaves(value))


def _node_place(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return f"{path}.{node.name}"
    return node.name


class _BoundInterpreter(fx.Interpreter):
    """Runs the traced model on a batch of zeros and carries, for every node, an upper bound
    of its Lipschitz constant with respect to the input (``None``: it does not depend on it)."""

    def __init__(
        self,
        module: fx.GraphModule,
        *,
        stage: str,
        root_name: str,
        settings: dict[str, Any],
    ) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.stage = stage
        self.root_name = root_name
        self.settings = settings
        self.bounds: dict[fx.Node, float | None] = {}
        self.calls: dict[str, int] = {}
        self.layers: list[LayerBound] = []
        self.network: float | None = None
        self.inputs = 0

    def _row_path(self, name: str) -> str:
        count = self.calls.get(name, 0) + 1
        self.calls[name] = count
        return name if count == 1 else f"{name}#{count}"

    def _context(self, path: str) -> BoundContext:
        key = f"{self.stage}.{path}" if self.stage else path
        return BoundContext(key, **self.settings)

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_module":  # name an unknown module before running it
            module = self.fetch_attr(str(n.target))
            depends = any(self.bounds[node] is not None for node in n.all_input_nodes)
            if depends and _registration(module) is None:
                name = str(n.target) or self.root_name
                raise _unknown_module(f"{self.stage}.{name}" if self.stage else name, module)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        value = super().run_node(n)
        self.bounds[n] = self._bound(n, args, kwargs, value)
        if self.bounds[n] is not None and n.op != "output":
            for leaf in _leaves(value):
                if isinstance(leaf, Tensor) and (leaf.dim() == 0 or leaf.shape[0] != _TRACE_BATCH):
                    raise LipschitzBoundError(
                        f"{n.op} {n.target!r} at {_node_place(n)!r} returns a tensor of shape "
                        f"{tuple(leaf.shape)} from a batch of {_TRACE_BATCH} examples: it mixes "
                        "the examples of a batch, and the bounds are per example"
                    )
        return value

    def _bound(self, n: fx.Node, args: Any, kwargs: Any, value: Any) -> float | None:
        if n.op == "placeholder":
            self.inputs += 1
            return 1.0 if self.inputs == 1 else None
        if n.op == "get_attr":
            return None
        dependent: list[tuple[Any, float]] = []

        def visit(node: fx.Node) -> fx.Node:
            bound = self.bounds[node]
            if bound is not None:
                dependent.append((self.env[node], bound))
            return node

        fx.node.map_arg((n.args, n.kwargs), visit)
        if not dependent:
            return None
        if n.op == "output":
            self.network = math.sqrt(sum(b * b for _, b in dependent))
            return self.network
        if not _contains_tensor(value):
            return None  # sizes, dtypes and other facts of the shape, not of the values
        if n.op == "call_module":
            return self._module(n, dependent)
        # Node arguments become their bounds; other leaves (constants) read as None.
        arg_bounds = _bounds_only(n.args, fx.node.map_arg(n.args, lambda node: self.bounds[node]))
        kwarg_bounds = _bounds_only(
            n.kwargs, fx.node.map_arg(n.kwargs, lambda node: self.bounds[node])
        )
        return self._function(n, args, kwargs, arg_bounds, kwarg_bounds, value, dependent)

    def _module(self, n: fx.Node, pairs: list[tuple[Any, float]]) -> float:
        target = str(n.target)
        module = self.fetch_attr(target)
        name = target or self.root_name
        if len(pairs) != 1 or not isinstance(pairs[0][0], Tensor):
            raise LipschitzBoundError(
                f"module {name!r} ({type(module).__name__}) takes {len(pairs)} values that depend "
                "on the network input; a module's bound covers one input tensor"
            )
        path = self._row_path(name)
        context = self._context(path)
        layer = layer_bound(
            module,
            tuple(pairs[0][0].shape[1:]),
            stage=self.stage,
            path=path,
            warm_start=context.warm_start,
            dense_limit=context.dense_limit,
            tol=context.tol,
            max_iter=context.max_iter,
            generator=context.generator,
            device=context.device,
            fourier=context.fourier,
        )
        self.layers.append(layer)
        return layer.bound * pairs[0][1]

    def _function(
        self,
        n: fx.Node,
        args: Any,
        kwargs: Any,
        arg_bounds: Any,
        kwarg_bounds: Any,
        value: Any,
        dependent: list[tuple[Any, float]],
    ) -> float:
        place = _node_place(n)
        rule = _FUNCTION_BOUNDS.get(n.target)
        if rule is None:
            described = (
                f"Tensor.{n.target}" if isinstance(n.target, str) else _function_path(n.target)
            )
            target = repr(n.target) if isinstance(n.target, str) else described
            raise LipschitzBoundError(
                f"no Lipschitz bound for function {described} at {place!r}; register a rule "
                "(`from intriguing.analysis.spectral import register_function_bound; "
                f"register_function_bound({target}, "
                "lambda call: ...)`), or a bound for the module that calls it (`register_bound`)"
            )
        call = FunctionCall(
            n.target,  # type: ignore[arg-type]
            place,
            tuple(args),
            dict(kwargs),
            tuple(arg_bounds),
            dict(kwarg_bounds),
            value,
            self._context(place),
            tuple(dependent),
        )
        result = rule(call)
        if isinstance(result, FunctionBound):
            first = next((v for v, _ in call.inputs() if isinstance(v, Tensor)), None)
            shape = tuple(first.shape[1:]) if first is not None else ()
            self.layers.append(
                LayerBound(
                    self.stage,
                    self._row_path(place),
                    call.short_name,
                    "",
                    "N/A",
                    tuple(int(d) for d in shape),
                    float(result.factor),
                    None,
                    result.method,
                )
            )
            result = result.lipschitz
        result = float(result)
        if not (math.isfinite(result) and result >= 0):
            raise LipschitzBoundError(
                f"function {call.function_name} at {place!r}: its rule gave {result!r}, not a "
                "finite non-negative bound"
            )
        return result


def _bounds_only(structure: Any, bounds: Any) -> Any:
    """``bounds`` (``structure`` with its nodes mapped to their bounds) with every leaf that
    was not a node set to ``None``."""
    if isinstance(structure, fx.Node):
        return bounds
    if isinstance(structure, tuple | list):
        return type(structure)(_bounds_only(s, b) for s, b in zip(structure, bounds, strict=True))
    if isinstance(structure, dict):
        return {k: _bounds_only(structure[k], bounds[k]) for k in structure}
    if isinstance(structure, slice):
        parts = [
            _bounds_only(s, b)
            for s, b in zip(
                (structure.start, structure.stop, structure.step),
                (bounds.start, bounds.stop, bounds.step),
                strict=True,
            )
        ]
        return slice(*parts)
    return None


def _function_path(function: Any) -> str:
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", repr(function))
    if module in {"_operator", "operator"}:
        return f"operator.{name}"
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return f"torch.nn.functional.{getattr(function, '__name__', name)}"
    if module.startswith("torch"):
        return f"torch.{getattr(function, '__name__', name)}"
    return f"{module}.{name}" if module else name


def _placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    tensors = [*module.parameters(), *module.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = floating[0].dtype if floating else torch.get_default_dtype()
    return device, dtype


def _trace(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    stage: str,
    root_name: str,
    settings: dict[str, Any],
) -> tuple[list[LayerBound], float]:
    """Rows and composed bound of ``module`` (already in eval mode) on ``input_shape``."""
    if _registration(module) is not None:  # the whole module is one registered layer
        context = BoundContext(f"{stage}.{root_name}" if stage else root_name, **settings)
        layer = layer_bound(
            module,
            input_shape,
            stage=stage,
            path=root_name,
            warm_start=context.warm_start,
            dense_limit=context.dense_limit,
            tol=context.tol,
            max_iter=context.max_iter,
            generator=context.generator,
            device=context.device,
            fourier=context.fourier,
        )
        return [layer], layer.bound
    if type(module).forward is nn.Module.forward:
        raise LipschitzBoundError(
            f"{root_name} ({type(module).__name__}) defines no forward() to trace; bound the "
            "submodule that computes its output"
        )
    tracer = _LeafTracer()
    try:
        graph = tracer.trace(module)
    except LipschitzBoundError:
        raise
    except Exception as error:  # torch.fx raises many kinds; name the model for all
        raise _untraceable(root_name, module, error) from error
    traced = fx.GraphModule(tracer.root, graph, type(module).__name__)
    interpreter = _BoundInterpreter(traced, stage=stage, root_name=root_name, settings=settings)
    device, dtype = _placement(module)
    example = torch.zeros(_TRACE_BATCH, *input_shape, device=device, dtype=dtype)
    try:
        interpreter.run(example)
    except LipschitzBoundError as error:  # without the graph that torch.fx appends
        raise LipschitzBoundError(error.message) from error.__cause__
    except (RuntimeError, TypeError) as error:
        if "Expected positional argument" in str(error):
            raise LipschitzBoundError(
                f"{root_name} ({type(module).__name__}): its forward takes more than one input; "
                "bounds are for a module of one input tensor"
            ) from error
        reason = first_line(error)
        raise ValueError(
            f"input_shape={tuple(input_shape)}: {root_name} ({type(module).__name__}) cannot "
            f"run on a batch of shape {tuple(example.shape)}: {reason}"
        ) from error
    if interpreter.network is None:
        raise LipschitzBoundError(
            f"{root_name} ({type(module).__name__}): its output does not depend on its input"
        )
    _check_per_example(traced, tuple(input_shape), device, dtype, root_name)
    return interpreter.layers, interpreter.network


def _check_per_example(
    traced: fx.GraphModule,
    input_shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    root_name: str,
) -> None:
    """Refuse a model whose output for one example changes with another example of its batch
    (an operation across the batch that keeps its shape, such as a softmax over dimension 0):
    the bounds are per example. Two random batches that differ in their second example only."""
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(_TRACE_BATCH, *input_shape, generator=generator)
    second = first.clone()
    second[1:] = torch.randn(_TRACE_BATCH - 1, *input_shape, generator=generator)
    outputs = [_leaves(traced(batch.to(device=device, dtype=dtype))) for batch in (first, second)]
    tolerance = 1e-4 if dtype in (torch.float32, torch.float64) else 0.05
    for a, b in zip(*outputs, strict=True):
        if not (isinstance(a, Tensor) and a.is_floating_point() and a.dim() > 0):
            continue
        scale = 1.0 + float(a[0].abs().max()) if a[0].numel() else 1.0
        if not torch.allclose(a[0], b[0], rtol=tolerance, atol=tolerance * scale):
            raise LipschitzBoundError(
                f"{root_name}: the output for one example changes with the other examples of "
                "its batch (an operation across the batch dimension); the bounds are per example"
            )


def _settings(
    module: nn.Module,
    *,
    warm_start: MutableMapping[str, Tensor] | None,
    dense_limit: int,
    tol: float,
    max_iter: int,
    seed: int,
    device: torch.device | str | None,
    fourier: bool,
) -> dict[str, Any]:
    if device is None:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if torch.device(device).type == "mps":
        device = "cpu"  # no float64 there
    return {
        "warm_start": warm_start,
        "dense_limit": dense_limit,
        "tol": tol,
        "max_iter": max_iter,
        "generator": torch.Generator().manual_seed(seed),
        "device": torch.device(device),
        "fourier": fourier,
    }


@torch.no_grad()
def module_bounds(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    warm_start: MutableMapping[str, Tensor] | None = None,
    dense_limit: int = 1024,
    tol: float = 1e-7,
    max_iter: int = 300,
    seed: int = 0,
    device: torch.device | str | None = None,
    fourier: bool = False,
) -> ModelBounds:
    """Every layer's upper Lipschitz bound in ``module``, and the module's, composed over its
    ``torch.fx`` graph (see the module docstring).

    Args:
        module: any ``nn.Module`` whose ``forward`` takes one tensor of shape
            ``(B, *input_shape)`` (other arguments must have defaults); evaluated in eval mode,
            its mode restored afterwards.
        input_shape: shape of one example (e.g. ``(3, 32, 32)``).
        warm_start: maps a layer's name to its last top singular vector (read, updated).
        dense_limit, tol, max_iter: see :func:`linear_operator_norm`.
        seed: seed of random starting vectors (every DDP rank finds the same numbers).
        device: where operator norms are computed (default: the module's).
        fourier: also report the paper's Fourier-domain bound of 2-d convolutions (an SVD per
            frequency: slower than the exact norm for wide layers; off by default here).

    Returns:
        :class:`ModelBounds`; ``network`` bounds ``||f(x) - f(x')|| / ||x - x'||`` for every
        pair of inputs of that shape.

    Raises:
        LipschitzBoundError (a ``ValueError``): a module or function without a bound, one
            that ``torch.fx`` cannot trace, or an operation that mixes a batch's examples; the
            message names it, its place in the model, and how to register a bound.
        ValueError: ``input_shape`` is empty or not positive.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape={tuple(input_shape)}: must be positive sizes of one example")
    settings = _settings(
        module,
        warm_start=warm_start,
        dense_limit=dense_limit,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        device=device,
        fourier=fourier,
    )
    was_training = module.training
    module.eval()
    try:
        layers, network = _trace(
            module, shape, stage="", root_name=type(module).__name__, settings=settings
        )
    finally:
        module.train(was_training)
    return ModelBounds(shape, tuple(layers), network)


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
    fourier: bool = True,
) -> SpectralBounds:
    """Every stage's and layer's upper Lipschitz bound of a StagedNetwork, at the shapes they
    see (the paper's Table 5).

    Each stage is bounded like :func:`module_bounds` on ``network.layer_shape`` of the stage
    before it; a stage that is a chain of layers gets the product of its layers' bounds.
    Layers are named ``<stage>.<path>`` (``conv1.0``). Random starting vectors come from
    ``seed`` (so every DDP rank finds the same numbers). ``warm_start`` (see
    :func:`layer_bound`) makes repeated calls on a slowly changing network cheap.
    ``fourier``: convolutions also report the paper's Fourier-domain bound (Table 5).
    """
    settings = _settings(
        network,
        warm_start=warm_start,
        dense_limit=dense_limit,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        device=device,
        fourier=fourier,
    )
    names = list(network.layer_names)
    was_training = network.training
    network.eval()
    try:
        stages = []
        for index, (name, stage) in enumerate(network.stages.items()):
            stage_input = network.layer_shape(names[index])
            layers, composed = _trace(
                stage, stage_input, stage=name, root_name="0", settings=settings
            )
            product = math.prod(layer.bound for layer in layers)
            stages.append(
                StageBound(
                    name,
                    tuple(stage_input),
                    tuple(layers),
                    None if composed == product else composed,
                )
            )
    finally:
        network.train(was_training)
    return SpectralBounds(tuple(stages))


def spectral_bounds(
    module: nn.Module,
    input_shape: Sequence[int] | None = None,
    **options: Any,
) -> SpectralBounds | ModelBounds:
    """:func:`network_bounds` for a StagedNetwork (``input_shape`` must be its own or
    ``None``), :func:`module_bounds` for any other module (``input_shape`` required).
    ``options``: those of both (``warm_start``, ``dense_limit``, ``tol``, ``max_iter``,
    ``seed``, ``device``, ``fourier``). Raises ``ValueError`` for a missing or mismatched
    ``input_shape``."""
    if isinstance(module, StagedNetwork):
        if input_shape is not None and tuple(int(d) for d in input_shape) != module.input_shape:
            raise ValueError(
                f"input_shape={tuple(input_shape)}: this StagedNetwork takes {module.input_shape}"
            )
        return network_bounds(module, **options)
    if input_shape is None:
        raise ValueError(
            f"input_shape=None: needed to bound a {type(module).__name__} (one example's shape)"
        )
    return module_bounds(module, input_shape, **options)


__all__ = [
    "Bound",
    "BoundContext",
    "FunctionBound",
    "FunctionCall",
    "LayerBound",
    "LipschitzBoundError",
    "ModelBounds",
    "NormResult",
    "SpectralBounds",
    "StageBound",
    "autograd_adjoint",
    "batch_norm_bound",
    "conv2d_fourier_bound",
    "conv2d_operator",
    "conv_operator",
    "derivative_bound",
    "has_bound",
    "layer_bound",
    "linear_operator_norm",
    "max_pool_bound",
    "module_bounds",
    "network_bounds",
    "normalization_bound",
    "register_bound",
    "register_function_bound",
    "spectral_bounds",
    "unregister_bound",
    "unregister_function_bound",
]
