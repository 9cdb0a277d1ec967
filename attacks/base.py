"""What every attack shares: input checks, the model's mode and precision, layers, results.

An attack perturbs a batch ``h`` (the network's input, or the activation of a named hidden
layer) against a function ``forward`` that maps it to logits (the network, or "the rest of
the network from that layer"), inside a box. Subclasses implement only
:meth:`Attack._perturb`; :class:`Attack` checks the inputs, puts the model in eval mode with
gradients enabled and autocast off, adapts hidden layers, and assembles the
:class:`AttackResult` from a fresh forward pass of the adversarial batch.

Distortion is the paper's measure (Szegedy et al. 2013, Table 1):
``sqrt(sum((adv - x)^2) / n)``, with ``n`` the number of elements of one example.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Forward = Callable[[Tensor], Tensor]
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

    ``target`` is ``None`` for an untargeted attack (any label but ``labels``).
    """

    forward: Forward
    origin: Tensor
    labels: Tensor
    target: Tensor | None
    lower: float
    upper: float
    num_classes: int

    @property
    def targeted(self) -> bool:
        return self.target is not None

    def clamp(self, h: Tensor) -> Tensor:
        """Projection onto the box."""
        return h.clamp(min=self.lower, max=self.upper)

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
def attack_mode(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, gradients on, inference mode and autocast off; modes restored afterwards.

    Lightning runs validation and test under ``no_grad`` or ``inference_mode``, and mixed
    precision under autocast: attacks need input gradients in fp32 there. Every submodule's
    own train/eval flag is restored, so mixed modes (a frozen encoder in eval mode inside a
    training model) survive.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
            yield
    finally:
        for module, training in modes:
            module.training = training


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
    """Base class: ``attack(x, y, target=None) -> AttackResult``.

    Args:
        model: a module mapping a batch to logits. For a hidden-layer attack it must provide
            the :class:`LayeredModel` methods.
        bounds: the box of the attacked tensor. ``None``: ``(0, 1)`` for the input, the
            layer's valid range (``model.layer_bounds(layer)``, possibly infinite) for a layer.
        layer: perturb this layer's activation instead of the input; the attack takes the
            network's input ``x`` all the same, and returns adversarial activations.
    """

    #: Name used by :func:`attacks.build_attack` and in saved adversarial sets.
    name: str = "attack"

    def __init__(
        self,
        model: nn.Module,
        *,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layer is not None and not isinstance(model, LayeredModel):
            raise TypeError(
                f"attacking layer {layer!r} needs a model with activations(x, names), "
                f"forward_from(name, h) and layer_bounds(name); {type(model).__name__} has not"
            )
        if bounds is not None:
            lower, upper = (float(b) for b in bounds)
            if not lower < upper or math.isnan(lower) or math.isnan(upper):
                raise ValueError(f"bounds {bounds}: need lower < upper")
            bounds = (lower, upper)
        self.model = model
        self.bounds = bounds
        self.layer = layer

    def __call__(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> AttackResult:
        """Attack ``x`` (labels ``y``): untargeted when ``target`` is None, targeted otherwise.

        Raises:
            ValueError: naming the examples and the reason, for NaN or infinite values,
                values outside the bounds, a shape the model cannot take, labels out of range
                or targets equal to the labels.
        """
        return self._run(x, y, target, self._perturb)

    def minimal(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> AttackResult:
        """The smallest-distortion adversarial the attack finds for each example.

        For an attack that minimises distortion itself (L-BFGS) this is the attack;
        budget attacks override it with a search over their budget.
        """
        return self(x, y, target)

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
            raise ValueError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', x)}")
        if x.ndim < 1:
            raise ValueError("x must have a batch dimension")
        batch = x.shape[0]
        device = x.device
        with attack_mode(self.model, device):
            x = x.detach().to(torch.float32).clone()
            labels = _check_labels("y", y, batch).to(device).clone()
            goal = None if target is None else _check_labels("target", target, batch)
            goal = None if goal is None else goal.to(device).clone()
            if batch == 0:
                return self._empty(x, goal is not None)
            bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
            if bad.any():
                raise ValueError(f"x has NaN or infinite values in {_which(bad)}")
            problem, clean_logits = self._problem(x, labels, goal)
            adv, evaluations, extra = perturb(problem)
            adv = problem.clamp(adv.detach())
            with torch.no_grad():
                logits = problem.forward(adv).float()
            success = is_adversarial(logits, labels, goal)
            c = extra.pop("c", None)
            return AttackResult(
                adv=adv,
                success=success,
                distortion=distortion(adv, problem.origin),
                origin=problem.origin,
                logits=logits,
                clean_logits=clean_logits,
                gradient_evaluations=evaluations.to(device=device, dtype=torch.long),
                c=c,
                layer=self.layer,
                targeted=goal is not None,
                extra=extra,
            )

    def _empty(self, x: Tensor, targeted: bool) -> AttackResult:
        origin = x
        if self.layer is not None:
            shape = getattr(self.model, "layer_shape", None)
            origin = x.new_zeros(0, *shape(self.layer)) if callable(shape) else x
        return AttackResult(
            adv=origin.clone(),
            success=torch.zeros(0, dtype=torch.bool, device=x.device),
            distortion=x.new_zeros(0),
            origin=origin,
            logits=x.new_zeros(0, 0),
            clean_logits=x.new_zeros(0, 0),
            gradient_evaluations=torch.zeros(0, dtype=torch.long, device=x.device),
            c=x.new_zeros(0) if self.name == "lbfgs" else None,
            layer=self.layer,
            targeted=targeted,
        )

    def _problem(self, x: Tensor, labels: Tensor, target: Tensor | None) -> tuple[Problem, Tensor]:
        """Checks the batch against the model and the box: the problem and clean logits."""
        model = self.model
        layer = self.layer
        try:
            with torch.no_grad():
                if layer is None:
                    origin = x
                    forward: Forward = model
                else:
                    assert isinstance(model, LayeredModel)
                    origin = model.activations(x, [layer])[layer].detach().float()

                    def forward(h: Tensor, _model: LayeredModel = model) -> Tensor:
                        return _model.forward_from(layer, h)

                logits = forward(origin)
        except (RuntimeError, IndexError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ValueError(
                f"x of shape {tuple(x.shape)}: the model cannot take it ({first})"
            ) from None
        if logits.ndim != 2 or logits.shape[0] != len(x):
            raise ValueError(
                f"x of shape {tuple(x.shape)}: the model returned shape {tuple(logits.shape)}, "
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
        if self.bounds is not None:
            lower, upper = self.bounds
        elif layer is None:
            lower, upper = DEFAULT_INPUT_BOUNDS
        else:
            assert isinstance(model, LayeredModel)
            lower, upper = (float(b) for b in model.layer_bounds(layer))
        flat = origin.flatten(1)
        where = "x" if layer is None else f"the activation of layer {layer!r}"
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
        )
        return problem, logits.detach().float()


def loss_and_gradient(
    forward: Forward, h: Tensor, labels: Tensor, target: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Attack loss per example, its gradient with respect to ``h``, and the logits.

    Gradients are taken with :func:`torch.autograd.grad` on ``h`` only: the parameters'
    ``.grad`` stay untouched. The model runs in eval mode, so examples do not interact and
    the gradient of the summed loss is each example's own gradient.
    """
    h = h.detach().requires_grad_(True)
    logits = forward(h).float()
    loss = attack_loss(logits, labels, target)
    (grad,) = torch.autograd.grad(loss.sum(), h)
    return loss.detach(), grad.detach(), logits.detach()
