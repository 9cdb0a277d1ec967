"""What every attack shares: input checks, the model's mode and precision, layers, results.

An attack perturbs a batch ``h`` (the network's input, or the activation of a named hidden
layer) against a function that maps it to logits, inside a box. Subclasses implement only
:meth:`Attack._perturb`; :class:`Attack` checks the inputs, puts the model in eval mode with
gradients enabled and autocast off, computes in fp32 (fp64 for an fp64 model) whatever the
model's own precision, applies the declared normalisation, adapts hidden layers, and
assembles the :class:`AttackResult` from a fresh forward pass of the adversarial batch.

Any ``nn.Module`` can be attacked at any named submodule (:mod:`attacks.layers`): the
attacked tensor is the layer's output ``h``, and the logits for ``h`` are those of the whole
network run on the input ``x`` with that output replaced by ``h`` (a forward hook), so that
skip connections and everything else reading it see the change. Models with the
:class:`LayeredModel` methods (the project's staged networks) take a fast path instead: only
the stages after the layer run.

Distortion is the paper's measure (Szegedy et al. 2013, Table 1):
``sqrt(sum((adv - x)^2) / n)``, with ``n`` the number of elements of one example.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from intriguing.attacks.layers import (
    INPUT,
    get_layer,
    layer_activations,
    layer_path,
    layer_range,
    perturb_layer,
)
from intriguing.errors import first_line

#: Logits of a batch of the attacked tensor.
Forward = Callable[[Tensor], Tensor]
#: ``forward(h, inputs)``: logits of the attacked tensor ``h`` for the examples whose model
#: input (normalised) is ``inputs``; ``inputs`` is ``None`` where the forward needs no input.
ProblemForward = Callable[[Tensor, Tensor | None], Tensor]
#: A per-channel statistic as given: a number, one number per channel, or a tensor.
Statistic = float | Sequence[float] | Tensor
DEFAULT_INPUT_BOUNDS = (0.0, 1.0)


@runtime_checkable
class LayeredModel(Protocol):
    """A classifier that can run up to a named layer and on from it.

    This is the layer mechanism of the project's staged networks (``activations``,
    ``forward_from``, ``layer_bounds``); any model providing these three methods can be
    attacked at a hidden layer.
    """

    def activations(self, x: Tensor, names: Iterable[str]) -> dict[str, Tensor]: ...

    def forward_from(self, name: str, h: Tensor) -> Tensor: ...

    def layer_bounds(self, name: str) -> tuple[float, float]: ...


@dataclass
class AttackResult:
    """The outcome of an attack on a batch, one entry per example.

    Attributes:
        adv: the adversarial batch, the shape of the attacked tensor (the input, or the
            layer's activation for a hidden-layer attack), inside the box.
        success: whether a fresh forward pass of ``adv`` is misclassified (untargeted) or
            classified as the target (targeted).
        distortion: ``sqrt(sum((adv - origin)^2) / n)`` per example, n the elements of one
            example of the attacked tensor.
        origin: the clean tensor that was perturbed (``x``, or its activation at ``layer``).
        logits: the fresh forward pass's logits of ``adv``.
        clean_logits: the logits of the clean examples.
        gradient_evaluations: per example, how many times the attack evaluated the gradient
            of the model at it (a batched evaluation counts once for every example in it).
        c: L-BFGS only: per example, the loss weight ``c`` of the solved problem whose
            minimisation produced ``adv`` (``0`` when the clean example was already
            adversarial, ``nan`` where the attack failed); ``None`` for other attacks.
        layer: the attacked layer, ``None`` for the input.
        targeted: whether the attack aimed at given targets.
    """

    adv: Tensor
    success: Tensor
    distortion: Tensor
    origin: Tensor
    logits: Tensor
    clean_logits: Tensor
    gradient_evaluations: Tensor
    c: Tensor | None = None
    layer: str | None = None
    targeted: bool = False
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.success)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    @property
    def mean_distortion(self) -> float:
        """Mean distortion over the successful examples (``nan`` when there are none)."""
        if not bool(self.success.any()):
            return math.nan
        return float(self.distortion[self.success].mean())

    @property
    def total_gradient_evaluations(self) -> int:
        return int(self.gradient_evaluations.sum())


def distortion(adv: Tensor, origin: Tensor) -> Tensor:
    """The paper's distortion ``sqrt(sum((adv - origin)^2) / n)`` per example."""
    diff = (adv - origin).flatten(1)
    return diff.pow(2).mean(dim=1).sqrt() if diff.shape[1] else diff.new_zeros(len(diff))


def scale_to_distortion(
    images: Tensor,
    direction: Tensor,
    wanted: float | Tensor,
    *,
    bounds: tuple[float, float] = DEFAULT_INPUT_BOUNDS,
    steps: int = 40,
) -> Tensor:
    """``clamp(images + s * direction)`` with ``s >= 0`` chosen per example (by bisection) so
    that its distortion from ``images`` is ``wanted``; the largest reachable where the box
    stops it. Zero directions stay zero. Used for noise matched to a distortion, and for the
    paper's "magnified" perturbations (Table 4)."""
    lower_bound, upper_bound = bounds
    target = torch.as_tensor(wanted, dtype=images.dtype, device=images.device)
    target = target.expand(len(images)).clone() if target.ndim == 0 else target
    view = (-1, *([1] * (images.ndim - 1)))

    def size(scale: Tensor) -> Tensor:
        moved = (images + scale.view(view) * direction).clamp(lower_bound, upper_bound)
        return distortion(moved, images)

    unit = distortion(direction, torch.zeros_like(direction))
    nonzero = unit > 0
    upper = torch.where(nonzero, target / unit.clamp(min=1e-30), torch.zeros_like(unit))
    lower = torch.zeros_like(upper)
    for _ in range(steps):  # grow until the box no longer keeps the distortion short
        short = (size(upper) < target) & nonzero
        if not short.any():
            break
        upper = torch.where(short, upper * 2, upper)
    for _ in range(steps):
        middle = (lower + upper) / 2
        short = size(middle) < target
        lower = torch.where(short, middle, lower)
        upper = torch.where(short, upper, middle)
    return (images + upper.view(view) * direction).clamp(lower_bound, upper_bound)


@dataclass
class Problem:
    """One attack problem: perturb ``origin`` against ``forward`` inside ``[lower, upper]``.

    ``target`` is ``None`` for an untargeted attack (any label but ``labels``). ``inputs``
    holds, row for row with ``origin``, the model input that a hidden-layer attack runs the
    whole network on (``None`` for an input attack or the staged fast path, whose forward
    needs no input); :meth:`logits` pairs the rows up.
    """

    forward: ProblemForward
    origin: Tensor
    labels: Tensor
    target: Tensor | None
    lower: float
    upper: float
    num_classes: int
    inputs: Tensor | None = None

    @property
    def targeted(self) -> bool:
        return self.target is not None

    def clamp(self, h: Tensor) -> Tensor:
        """Projection onto the box."""
        return h.clamp(min=self.lower, max=self.upper)

    def logits(self, h: Tensor, rows: Tensor | None = None) -> Tensor:
        """Logits of ``h``, a batch of the attacked tensor for the examples ``rows``
        (indices into this problem's batch; ``None``: all of them, in order)."""
        inputs = self.inputs
        if inputs is not None and rows is not None:
            inputs = inputs[rows]
        return self.forward(h, inputs)

    def forward_at(self, rows: Tensor | None = None) -> Forward:
        """:meth:`logits` for the examples ``rows`` as a one-argument function."""

        def forward(h: Tensor) -> Tensor:
            return self.logits(h, rows)

        return forward

    def subset(self, rows: Tensor) -> Problem:
        """The same problem for the examples ``rows`` only."""
        return Problem(
            forward=self.forward,
            origin=self.origin[rows],
            labels=self.labels[rows],
            target=None if self.target is None else self.target[rows],
            lower=self.lower,
            upper=self.upper,
            num_classes=self.num_classes,
            inputs=None if self.inputs is None else self.inputs[rows],
        )


def attack_loss(logits: Tensor, labels: Tensor, target: Tensor | None) -> Tensor:
    """Per-example loss whose minimisation makes an example adversarial.

    Targeted: the cross-entropy of the target (the paper's ``loss_f(x + r, l)``). Untargeted:
    ``-log(1 - p_y)``, the cross-entropy of "any class but the label", which goes to zero as
    the example leaves its class and, unlike ``-CE(y)``, is bounded below.
    """
    if target is not None:
        return F.cross_entropy(logits, target, reduction="none")
    others = logits.scatter(1, labels[:, None], -math.inf)
    return logits.logsumexp(dim=1) - others.logsumexp(dim=1)


def adversarial_margin(logits: Tensor, labels: Tensor, target: Tensor | None) -> Tensor:
    """How far each example is past the decision boundary (positive: adversarial).

    Targeted: the target's logit minus the largest other one. Untargeted: the largest logit
    of another class minus the label's.
    """
    if target is not None:
        chosen = logits.gather(1, target[:, None])[:, 0]
        rest = logits.scatter(1, target[:, None], -math.inf).amax(dim=1)
        return chosen - rest
    own = logits.gather(1, labels[:, None])[:, 0]
    return logits.scatter(1, labels[:, None], -math.inf).amax(dim=1) - own


def is_adversarial(logits: Tensor, labels: Tensor, target: Tensor | None) -> Tensor:
    """Misclassified (untargeted) or classified as the target (targeted), by argmax."""
    predicted = logits.argmax(dim=1)
    return predicted == target if target is not None else predicted != labels


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()``; every submodule's own train/eval flag restored afterwards, so mixed
    modes (a frozen encoder in eval mode inside a training model) survive."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients, to run ``model`` for its predictions; every submodule's
    own train/eval flag restored afterwards (a frozen part in eval mode inside a model in
    training stays in eval mode)."""
    with _eval_mode(model), torch.no_grad():
        yield


@contextmanager
def attack_mode(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, gradients on, inference mode and autocast off, default dtype float32;
    all restored afterwards.

    Lightning runs validation and test under ``no_grad`` or ``inference_mode``, mixed
    precision under autocast, and ``bf16-true``/``64-true`` with another default dtype:
    attacks need input gradients in fp32 there. Every submodule's own train/eval flag is
    restored, as in :func:`evaluating`.
    """
    default_dtype = torch.get_default_dtype()
    with _eval_mode(model), ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(default_dtype)


def device_of(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of the model's first parameter or buffer (``default``, else CPU, when it
    has none)."""
    for tensor in chain(model.parameters(), model.buffers()):
        return tensor.device
    return default if default is not None else torch.device("cpu")


def compute_dtype(model: nn.Module, input_dtype: torch.dtype) -> torch.dtype:
    """The dtype an attack computes in: float64 for a model with float64 parameters or
    buffers (or for a float64 input to a model with none), float32 otherwise (half and
    bfloat16 models included, whose gradients would lose too much)."""
    dtypes = {t.dtype for t in chain(model.parameters(), model.buffers()) if t.is_floating_point()}
    if torch.float64 in dtypes or (not dtypes and input_dtype == torch.float64):
        return torch.float64
    return torch.float32


def _native_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of the module's first floating-point parameter or buffer (``None``: none)."""
    for tensor in chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


class _Bound(nn.Module):
    """``fn(model, *args)`` as a module's forward, so that :func:`torch.func.functional_call`
    can run any method of ``model`` (``activations``, ``forward_from``, a hooked forward)
    with substituted parameters."""

    def __init__(self, model: nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Tensor) -> Tensor:
        return self.fn(self.model, *args)


class _Runner:
    """Runs ``fn(model, *args)`` in the attack's dtype without touching the model.

    Parameters and buffers of a lower precision than ``dtype`` (half, bfloat16; float32 in
    a float64 model) are replaced, for the call only, by detached copies in ``dtype``
    (:func:`torch.func.functional_call`): the model's own tensors, dtype and ``.grad`` stay
    as they are. A model already in ``dtype`` runs directly.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.model = model
        self.dtype = dtype
        bits = torch.finfo(dtype).bits
        self.tensors = {
            f"model.{name}": tensor.detach().to(dtype)
            for name, tensor in chain(model.named_parameters(), model.named_buffers())
            if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < bits
        }

    def __call__(self, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        if not self.tensors:
            return fn(self.model, *args)
        return functional_call(_Bound(self.model, fn), self.tensors, args)


def _statistic(name: str, value: Statistic | None) -> Tensor | None:
    """A normalisation statistic as a float64 tensor, checked to be finite (std: positive)."""
    if value is None:
        return None
    try:
        if isinstance(value, Tensor):
            tensor = value.detach().to(device="cpu", dtype=torch.float64)
        else:
            tensor = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name} must be a number, a sequence of numbers (one per channel) or a tensor, "
            f"got {value!r}"
        ) from None
    if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite and non-empty, got {value!r}")
    if name == "std" and bool((tensor <= 0).any()):
        raise ValueError(f"std must be positive, got {value!r}")
    return tensor


def _shaped(name: str, tensor: Tensor, x: Tensor) -> Tensor:
    """``tensor`` viewed to broadcast against the batch ``x``: one value, one per channel
    (dimension 1), or a tensor broadcastable to one example ``x[0]``."""
    if tensor.ndim == 0:
        return tensor.to(device=x.device, dtype=x.dtype)
    if tensor.ndim == 1:
        channels = x.shape[1] if x.ndim >= 2 else None
        if channels != len(tensor):
            raise ValueError(
                f"{name} has {len(tensor)} values, one per channel, but x of shape "
                f"{tuple(x.shape)} has "
                f"{'no channel dimension' if channels is None else f'{channels} channels'}"
            )
        view = (1, len(tensor), *([1] * (x.ndim - 2)))
        return tensor.view(view).to(device=x.device, dtype=x.dtype)
    example = tuple(x.shape[1:])
    try:
        fits = tensor.ndim <= len(example) and torch.broadcast_shapes(tensor.shape, example) == (
            example
        )
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to one example of x, "
            f"shape {example} (x has shape {tuple(x.shape)})"
        )
    return tensor[None].to(device=x.device, dtype=x.dtype)


def _inside(value: float, dtype: torch.dtype, upwards: bool) -> float:
    """The value of ``dtype`` nearest to ``value`` on the inside of the box edge ``value``
    (not below it for a lower edge, ``upwards``; not above it for an upper edge)."""
    if math.isinf(value):
        return value
    rounded = torch.tensor(value, dtype=dtype)
    if upwards and float(rounded) < value:
        rounded = torch.nextafter(rounded, torch.tensor(math.inf, dtype=dtype))
    if not upwards and float(rounded) > value:
        rounded = torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))
    return float(rounded)


def _in_dtype(h: Tensor, dtype: torch.dtype, lower: float, upper: float) -> Tensor:
    """``h`` (inside ``[lower, upper]``) in ``dtype``, rounded so that it stays inside."""
    if h.dtype == dtype:
        return h
    return h.clamp(_inside(lower, dtype, True), _inside(upper, dtype, False)).to(dtype)


def _which(mask: Tensor, limit: int = 8) -> str:
    """``"examples 0, 3, 7"`` for a boolean mask, shortened past ``limit`` entries."""
    rows = mask.nonzero().flatten().tolist()
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"example{'s' if len(rows) > 1 else ''} {shown}{more}"


def _check_labels(name: str, labels: Tensor, batch: int) -> Tensor:
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a tensor of class indices, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(
            f"{name} has shape {tuple(labels.shape)}; expected ({batch},), one per example"
        )
    return labels.long()


class Attack(ABC):
    """Base class: ``attack(x, y, target=None) -> AttackResult``, for any classifier.

    The model is any ``nn.Module`` mapping a batch to logits ``(batch, classes)``, in any
    floating dtype and on any device; ``x`` is moved to the model's device and the attack
    computes in fp32 (fp64 for an fp64 model): a half or bfloat16 model runs with float32
    copies of its parameters and buffers for the attack's forward passes only, so its own
    tensors, dtype, device, modes and ``.grad`` are unchanged afterwards. ``adv`` comes back
    in the dtype of the attacked tensor (``x``'s for the input; the model's for a layer).

    Args:
        model: the classifier.
        bounds: the box of the attacked tensor. ``None``: ``(0, 1)`` for the input, the
            layer's output range for a layer (:func:`attacks.layers.layer_range`, possibly
            infinite; ``model.layer_bounds(layer)`` for a :class:`LayeredModel`).
        layer: perturb this layer's output instead of the input: a submodule's dotted path
            or its unique suffix (:func:`attacks.layers.get_layer`), or a layer of a
            :class:`LayeredModel`; ``"input"`` (or ``None``) is the input. The attack takes
            the network's input ``x`` all the same, and returns adversarial activations; the
            logits of an activation are those of the whole network run on ``x`` with the
            layer's output replaced (a :class:`LayeredModel` runs only the stages after it).
        mean, std: the data normalisation, declared once (as torchattacks'
            ``set_normalization_used`` or ART's ``preprocessing``): ``x`` is given in pixel
            units, inside ``bounds``, and the model receives ``(x - mean) / std``. Each is a
            number, one number per channel (``x``'s dimension 1), or a tensor broadcastable
            to one example; ``None`` is 0 (mean) and 1 (std). Budgets, distortions and the
            box stay in pixel units.

    Raises:
        TypeError: when ``model`` is not an ``nn.Module``.
        ValueError: for bounds without ``lower < upper``, an unknown or ambiguous ``layer``
            (naming the layers there are), or a ``mean``/``std`` that is not finite (a
            non-positive ``std``).
    """

    #: Name used by :func:`attacks.build_attack` and in saved adversarial sets (set by
    #: :func:`attacks.registry.register_attack`).
    name: str = "attack"
    #: Whether results carry ``c``, the loss weight per example (:attr:`AttackResult.c`).
    reports_c: bool = False

    def __init__(
        self,
        model: nn.Module,
        *,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"layer must be a non-empty string or None, got {layer!r}")
        if bounds is not None:
            lower, upper = (float(b) for b in bounds)
            if not lower < upper or math.isnan(lower) or math.isnan(upper):
                raise ValueError(f"bounds {bounds}: need lower < upper")
            bounds = (lower, upper)
        self.model = model
        self.bounds = bounds
        self.layer = layer
        self.mean = _statistic("mean", mean)
        self.std = _statistic("std", std)
        hidden = layer is not None and layer != INPUT
        #: Whether the layer is attacked through the model's own ``forward_from``.
        self.staged = hidden and _is_staged_layer(model, layer)
        #: The layer's full dotted path, for the hook path (``None`` otherwise).
        self.layer_path = layer_path(model, layer) if hidden and not self.staged else None

    def __call__(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> AttackResult:
        """Attack ``x`` (labels ``y``): untargeted when ``target`` is None, targeted otherwise.

        Raises:
            ValueError: naming the examples and the reason, for NaN or infinite values,
                values outside the bounds, a shape or dtype the model cannot take, labels out
                of range, targets equal to the labels, or a mean/std that does not fit x.
        """
        return self._run(x, y, target, self._perturb)

    def minimal(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> AttackResult:
        """The smallest-distortion adversarial the attack finds for each example.

        For an attack that minimises distortion itself (L-BFGS) this is the attack;
        budget attacks override it with a search over their budget.
        """
        return self(x, y, target)

    def _compute_dtype(self, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype of the attack's forward passes (:func:`compute_dtype`; a subclass may
        ask for more precision)."""
        return compute_dtype(self.model, input_dtype)

    @abstractmethod
    def _perturb(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The adversarial batch (shape of ``problem.origin``, inside the box), the gradient
        evaluations per example, and extra per-example results (e.g. ``{"c": ...}``)."""

    def _run(
        self,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        perturb: Callable[[Problem], tuple[Tensor, Tensor, dict[str, Tensor]]],
    ) -> AttackResult:
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            raise ValueError(
                f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}"
            )
        if x.ndim < 1:
            raise ValueError("x must have a batch dimension")
        batch = x.shape[0]
        device = device_of(self.model, x.device)
        dtype = self._compute_dtype(x.dtype)
        with attack_mode(self.model, device):
            given = x.detach().to(device).clone()
            pixels = given.to(dtype)
            labels = _check_labels("y", y, batch).to(device).clone()
            goal = None if target is None else _check_labels("target", target, batch)
            goal = None if goal is None else goal.to(device).clone()
            normalise = self._normaliser(pixels)
            runner = _Runner(self.model, dtype)
            if batch == 0:
                return self._empty(given, pixels, normalise, runner, goal is not None)
            bad = ~torch.isfinite(pixels.flatten(1)).all(dim=1)
            if bad.any():
                raise ValueError(f"x has NaN or infinite values in {_which(bad)}")
            problem, clean_logits, out_dtype = self._problem(
                pixels, labels, goal, normalise, runner, given.dtype
            )
            adv, evaluations, extra = perturb(problem)
            adv = _in_dtype(problem.clamp(adv.detach()), out_dtype, problem.lower, problem.upper)
            computed = adv.to(dtype)
            with torch.no_grad():
                logits = problem.logits(computed).float()
            success = is_adversarial(logits, labels, goal)
            c = extra.pop("c", None)
            c = None if c is None else c.float()
            origin = given if self.layer_path is None and not self.staged else None
            return AttackResult(
                adv=adv,
                success=success,
                distortion=distortion(computed, problem.origin).float(),
                origin=problem.origin.to(out_dtype) if origin is None else origin,
                logits=logits,
                clean_logits=clean_logits,
                gradient_evaluations=evaluations.to(device=device, dtype=torch.long),
                c=c,
                layer=self.layer,
                targeted=goal is not None,
                extra=extra,
            )

    def _normaliser(self, pixels: Tensor) -> Callable[[Tensor], Tensor]:
        """``x -> (x - mean) / std`` for batches like ``pixels`` (checked against it)."""
        mean = None if self.mean is None else _shaped("mean", self.mean, pixels)
        std = None if self.std is None else _shaped("std", self.std, pixels)

        def normalise(h: Tensor) -> Tensor:
            if mean is not None:
                h = h - mean
            return h if std is None else h / std

        return normalise

    def _setup(
        self, pixels: Tensor, normalise: Callable[[Tensor], Tensor], runner: _Runner
    ) -> tuple[Tensor, ProblemForward, Tensor | None]:
        """The clean attacked tensor, the forward of the problem and its ``inputs``."""
        model = self.model
        if self.staged:
            staged = self.layer
            assert isinstance(model, LayeredModel) and staged is not None

            def run_from(module: LayeredModel, h: Tensor) -> Tensor:
                return module.forward_from(staged, h)

            def staged_forward(h: Tensor, _inputs: Tensor | None) -> Tensor:
                return runner(run_from, h)

            def up_to(module: LayeredModel, inputs: Tensor) -> Tensor:
                return module.activations(inputs, [staged])[staged]

            with torch.no_grad():
                origin = runner(up_to, normalise(pixels))
            return origin.detach().to(runner.dtype), staged_forward, None
        path = self.layer_path
        if path is None:

            def run(module: nn.Module, inputs: Tensor) -> Tensor:
                return module(inputs)

            def input_forward(h: Tensor, _inputs: Tensor | None) -> Tensor:
                return runner(run, normalise(h))

            return pixels, input_forward, None

        def run_replaced(module: nn.Module, h: Tensor, inputs: Tensor) -> Tensor:
            calls = 0

            def replace(output: Any) -> Tensor:
                nonlocal calls
                calls += 1
                if not isinstance(output, Tensor) or output.shape != h.shape:
                    shape = tuple(output.shape) if isinstance(output, Tensor) else type(output)
                    raise ValueError(
                        f"layer {path!r} returned {shape} here, not the attacked activation's "
                        f"shape {tuple(h.shape)}"
                    )
                return h.clone()  # a non-leaf: in-place layers after it (ReLU) may write it

            with perturb_layer(module, path, replace):
                logits = module(inputs)
            if calls != 1:
                raise ValueError(
                    f"layer {path!r} ran {calls} times in one forward pass; attack a layer that "
                    "runs once"
                )
            return logits

        def hooked_forward(h: Tensor, inputs: Tensor | None) -> Tensor:
            assert inputs is not None
            return runner(run_replaced, h, inputs)

        def capture(module: nn.Module, inputs: Tensor) -> Tensor:
            return layer_activations(module, inputs, [path])[path]

        inputs = normalise(pixels)
        with torch.no_grad():
            origin = runner(capture, inputs)
        return origin.detach().to(runner.dtype), hooked_forward, inputs

    def _out_dtype(self, input_dtype: torch.dtype, compute: torch.dtype) -> torch.dtype:
        """The dtype ``adv`` is returned in: ``x``'s for the input, the model's at a layer."""
        if not self.staged and self.layer_path is None:
            return input_dtype
        layer = None
        with suppress(ValueError):
            layer = get_layer(self.model, self.layer_path or str(self.layer))
        for module in (layer, self.model):
            native = None if module is None else _native_dtype(module)
            if native is not None:
                return native
        return compute

    def _default_box(self) -> tuple[float, float]:
        if self.bounds is not None:
            return self.bounds
        if self.staged:
            assert isinstance(self.model, LayeredModel) and self.layer is not None
            lower, upper = self.model.layer_bounds(self.layer)
            return float(lower), float(upper)
        if self.layer_path is not None:
            return layer_range(get_layer(self.model, self.layer_path))
        return DEFAULT_INPUT_BOUNDS

    def _empty(
        self,
        given: Tensor,
        pixels: Tensor,
        normalise: Callable[[Tensor], Tensor],
        runner: _Runner,
        targeted: bool,
    ) -> AttackResult:
        origin = given
        if self.staged or self.layer_path is not None:
            try:
                origin, _, _ = self._setup(pixels, normalise, runner)
                origin = origin.to(self._out_dtype(given.dtype, runner.dtype))
            except (RuntimeError, ValueError, IndexError, TypeError):
                shape = getattr(self.model, "layer_shape", None)
                if self.staged and callable(shape):
                    origin = given.new_zeros(0, *shape(self.layer))
        statistic = pixels.new_zeros(0, dtype=torch.float32)
        return AttackResult(
            adv=origin.clone(),
            success=torch.zeros(0, dtype=torch.bool, device=given.device),
            distortion=statistic,
            origin=origin,
            logits=statistic.new_zeros(0, 0),
            clean_logits=statistic.new_zeros(0, 0),
            gradient_evaluations=torch.zeros(0, dtype=torch.long, device=given.device),
            c=statistic.clone() if self.reports_c else None,
            layer=self.layer,
            targeted=targeted,
        )

    def _problem(
        self,
        pixels: Tensor,
        labels: Tensor,
        target: Tensor | None,
        normalise: Callable[[Tensor], Tensor],
        runner: _Runner,
        input_dtype: torch.dtype,
    ) -> tuple[Problem, Tensor, torch.dtype]:
        """Checks the batch against the model and the box: the problem, the clean logits and
        the dtype ``adv`` is returned in."""
        try:
            origin, forward, inputs = self._setup(pixels, normalise, runner)
            with torch.no_grad():
                logits = forward(origin, inputs)
        except (RuntimeError, IndexError, TypeError) as error:
            first = first_line(error)
            raise ValueError(
                f"x of shape {tuple(pixels.shape)} and dtype {input_dtype} (attacked in "
                f"{runner.dtype}): the model cannot take it ({first})"
            ) from None
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != len(pixels):
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(
                f"x of shape {tuple(pixels.shape)}: the model returned {shape}, "
                "expected logits of shape (batch, classes)"
            )
        num_classes = logits.shape[1]
        for name, values in (("y", labels), ("target", target)):
            if values is None:
                continue
            outside = (values < 0) | (values >= num_classes)
            if outside.any():
                raise ValueError(
                    f"{name} out of range [0, {num_classes}) in {_which(outside)} "
                    f"(values {values[outside][:8].tolist()})"
                )
        if target is not None and (same := target == labels).any():
            raise ValueError(f"target equals the label y in {_which(same)}")
        lower, upper = self._default_box()
        flat = origin.flatten(1)
        hidden = self.staged or self.layer_path is not None
        where = f"the activation of layer {self.layer!r}" if hidden else "x"
        bad = ~torch.isfinite(flat).all(dim=1)
        if bad.any():
            raise ValueError(f"{where} has NaN or infinite values in {_which(bad)}")
        outside = (flat < lower).any(dim=1) | (flat > upper).any(dim=1)
        if outside.any():
            raise ValueError(
                f"{where} lies outside the bounds [{lower}, {upper}] in {_which(outside)} "
                f"(min {float(flat.min()):.4g}, max {float(flat.max()):.4g})"
            )
        problem = Problem(
            forward=forward,
            origin=origin,
            labels=labels,
            target=target,
            lower=lower,
            upper=upper,
            num_classes=num_classes,
            inputs=inputs,
        )
        return problem, logits.detach().float(), self._out_dtype(input_dtype, runner.dtype)


def _is_staged_layer(model: nn.Module, layer: str) -> bool:
    """Whether ``layer`` is one of the layers of a :class:`LayeredModel` (the fast path)."""
    if not isinstance(model, LayeredModel):
        return False
    names = getattr(model, "layer_names", None)
    if names is not None:
        return layer in names
    try:
        model.layer_bounds(layer)
    except (ValueError, KeyError):
        return False
    return True


def loss_and_gradient(
    forward: Forward, h: Tensor, labels: Tensor, target: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Attack loss per example, its gradient with respect to ``h``, and the logits.

    Gradients are taken with :func:`torch.autograd.grad` on ``h`` only: the parameters'
    ``.grad`` stay untouched. The model runs in eval mode, so examples do not interact and
    the gradient of the summed loss is each example's own gradient.
    """
    h = h.detach().requires_grad_(True)
    logits = forward(h)
    logits = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    loss = attack_loss(logits, labels, target)
    (grad,) = torch.autograd.grad(loss.sum(), h)
    return loss.detach(), grad.detach(), logits.detach()
