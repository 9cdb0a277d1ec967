"""Peer attacks (torchattacks, or any ``(x, y) -> x_adv`` function) behind our interface.

:class:`PeerAttack` runs an attack of another library as one of ours: called as
``attack(x, y, target=None)``, it returns an :class:`attacks.AttackResult` (success, distortion,
logits, clean logits from a fresh forward pass of our own), so that anything taking our
attacks (``AdversarialBackfeed(generator=...)``, ``TransferRobustness(attack=...)``,
``intriguing evaluate``) takes a peer's too; :func:`attacks.build_attack` builds one from
``{"name": "torchattacks.PGD", "eps": 0.1, "steps": 40, ...}``.

A torchattacks attack is run against our forward pass of the model, not the model itself:
the model in eval mode (every submodule's flag restored afterwards), our normalisation
(``mean``/``std``, in place of torchattacks' ``set_normalization_used``), and our precision.
That precision matters. torchattacks' gradient attacks ascend the cross-entropy, whose
gradient with respect to the logits is ``softmax - onehot``: on an overconfident model the
predicted class's float32 probability rounds to exactly 1.0 and the gradient vanishes, so a
float32 FGSM fools far fewer images than the same FGSM in float64 (on MNIST FC nets measured
72.4% against 79.3%, issue 12). Our own attacks ascend ``-log(1 - p_y)`` computed with
``logsumexp`` (:func:`attacks.attack_loss`), which has no such cliff. Pass
``compute_dtype=torch.float64`` to run the peer in float64 (the model's lower-precision
parameters are copied for the attack's forward passes only); in float32 the adapter warns,
counting the examples whose probability rounds to 1.0, instead of losing them silently.

torchattacks is an optional dependency (``pip install intriguing[eval]``); this module imports
it only when a peer attack is built by name.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from intriguing.attacks.base import (
    Attack,
    Problem,
    Statistic,
    compute_dtype,
)

#: Prefix of the attack names :func:`attacks.build_attack` hands to :class:`PeerAttack`.
PEER_PREFIX = "torchattacks."
INSTALL_HINT = "pip install intriguing[eval]"
#: torchattacks attacks that break on float64 images (FAB 3.5.1 mixes in float32 tensors):
#: they get float32 images, and our forward in the compute dtype returns float32 logits. FAB
#: steps on logit differences, not the cross-entropy, so float32 logits lose nothing there.
FLOAT32_ONLY = ("FAB",)

#: A plain peer attack: pixels ``(batch, ...)`` and labels ``(batch,)`` -> adversarial pixels.
PeerFunction = Callable[[Tensor, Tensor], Tensor]


def import_torchattacks() -> Any:
    """The ``torchattacks`` module.

    Raises:
        ImportError: naming the package and the extra that installs it.
    """
    try:
        return importlib.import_module("torchattacks")
    except ImportError as error:
        raise ImportError(
            f"torchattacks is not installed; peer attacks and AutoAttack need it: {INSTALL_HINT}"
        ) from error


def is_peer_spec(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec["name"]`` names a torchattacks attack (``"torchattacks.PGD"``)."""
    return str(spec.get("name", "")).lower().startswith(PEER_PREFIX)


def is_torchattacks_attack(value: object) -> bool:
    """Whether ``value`` is a torchattacks attack instance (checked without importing it)."""
    module = type(value).__module__ or ""
    return module.split(".")[0] == "torchattacks" and hasattr(value, "set_model")


def as_attack(
    value: Attack | PeerFunction | Any,
    model: nn.Module,
    *,
    layer: str | None = None,
    mean: Statistic | None = None,
    std: Statistic | None = None,
) -> Attack:
    """``value`` when it is one of our attacks, else :class:`PeerAttack` of it (a torchattacks
    attack or an ``(x, y) -> x_adv`` function) on ``model`` with ``mean``/``std``: for what
    a user's attack factory returns (``AdversarialBackfeed(generator=lambda model, layer:
    torchattacks.PGD(model, ...))``).

    Raises:
        ValueError: for a peer at a hidden ``layer`` (peers perturb the input only).
        TypeError: for a value that is neither (see :class:`PeerAttack`).
    """
    if isinstance(value, Attack):
        return value
    if layer not in (None, "input"):
        raise ValueError(
            f"layer {layer!r}: a peer attack ({type(value).__name__}) perturbs the input only"
        )
    return PeerAttack(model, value, mean=mean, std=std)


class _ProblemModel(nn.Module):
    """The module a torchattacks attack runs on: the current problem's forward pass (our
    normalisation and precision). The user's model is a submodule, so that torchattacks
    finds its device and its train/eval calls reach it (our attack restores every flag)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_fn: Callable[[Tensor], Tensor] | None = None
        self.dtype = torch.float32
        #: Example-gradients taken: the batch size of every forward pass with gradients.
        self.gradient_rows = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.forward_fn is None:
            raise RuntimeError("PeerAttack: the peer ran its model outside an attack call")
        if x.requires_grad:
            self.gradient_rows += len(x)
        # Our precision inside; the logits in the caller's dtype, as parts of some peers
        # (FAB) make float32 tensors whatever the input's dtype and cannot mix them.
        return self.forward_fn(x.to(self.dtype)).to(x.dtype)


class PeerAttack(Attack):
    """A peer attack (torchattacks, or a function ``(x, y) -> x_adv``) as one of ours.

    Args:
        model: the classifier, taking normalised inputs when ``mean``/``std`` are given.
        attack: a torchattacks attack instance (built on any model: it is run against this
            one, through our forward pass, and left as it was found), a specification
            ``{"name": "torchattacks.CLASS", **constructor_arguments}`` (e.g.
            ``{"name": "torchattacks.PGD", "eps": 0.1, "alpha": 0.01, "steps": 40}``), or a
            function ``(x, y) -> x_adv`` on pixels in the attack's compute dtype (it runs
            against whatever model it holds; success is judged on ``model``).
        mean, std: the data normalisation (see :class:`attacks.Attack`); inputs and budgets
            are in pixel units. ``None`` adopts an instance's ``set_normalization_used``.
        compute_dtype: ``None``: the project's rule (float32; float64 for a float64 model);
            ``torch.float64``: run the peer in float64, which keeps the cross-entropy's
            gradient where the float32 probability of the label rounds to 1.0 (see the module
            docstring).

    Shapes and units: ``x`` is ``(batch, ...)`` in ``[0, 1]`` (torchattacks clamps to that
    box, so other ``bounds`` and hidden layers are refused); ``AttackResult.adv`` has ``x``'s
    shape and dtype. ``gradient_evaluations`` is the peer's gradient-enabled forward rows
    spread evenly over the batch (torchattacks does not report per example).

    Raises:
        ImportError: for a specification when torchattacks is not installed.
        ValueError: for an unknown torchattacks class, constructor arguments it does not take
            (named), mean/std given twice, a ``compute_dtype`` other than ``None`` and
            float64, or (when called) a target for a peer without a targeted mode.
        TypeError: when ``attack`` is neither a mapping, a torchattacks attack nor callable.
    """

    name = "peer"

    def __init__(
        self,
        model: nn.Module,
        attack: Mapping[str, Any] | PeerFunction | Any,
        *,
        mean: Statistic | None = None,
        std: Statistic | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        if compute_dtype not in (None, torch.float64):
            raise ValueError(f"compute_dtype={compute_dtype!r}: expected None or torch.float64")
        self._module = _ProblemModel(model)
        peer: Any
        if isinstance(attack, Mapping):
            peer, name = self._build(dict(attack)), str(attack["name"])
        elif is_torchattacks_attack(attack):
            peer, name = attack, PEER_PREFIX + type(attack).__name__
            used = getattr(attack, "normalization_used", None)
            if used is not None:
                if mean is not None or std is not None:
                    raise ValueError(
                        "mean/std: given here and by the attack's set_normalization_used; "
                        "give them once"
                    )
                mean, std = used["mean"].flatten(), used["std"].flatten()
        elif callable(attack):
            peer, name = attack, getattr(attack, "__name__", type(attack).__name__)
        else:
            raise TypeError(
                f"attack: expected a torchattacks attack, a {{'name': 'torchattacks.CLASS', ...}} "
                f"mapping or a function (x, y) -> x_adv, got {type(attack).__name__}"
            )
        super().__init__(model, mean=mean, std=std)
        self.peer = peer
        self.name = name
        self.precision = compute_dtype
        self._warned = False

    def _build(self, spec: dict[str, Any]) -> Any:
        name = str(spec.pop("name"))
        if not name.lower().startswith(PEER_PREFIX):
            raise ValueError(f"attack.name {name!r}: expected 'torchattacks.CLASS'")
        library = import_torchattacks()
        cls_name = name[len(PEER_PREFIX) :]
        base = importlib.import_module("torchattacks.attack").Attack
        cls = getattr(library, cls_name, None)
        if not inspect.isclass(cls) or not issubclass(cls, base):
            known = sorted(
                n
                for n in dir(library)
                if inspect.isclass(getattr(library, n)) and issubclass(getattr(library, n), base)
            )
            raise ValueError(
                f"attack.name {name!r}: torchattacks has no attack {cls_name!r} "
                f"(it has {', '.join(known)})"
            )
        accepted = inspect.signature(cls.__init__).parameters
        for key in spec:
            if key not in accepted or key in ("self", "model"):
                takes = ", ".join(p for p in accepted if p not in ("self", "model"))
                raise ValueError(
                    f"attack.{key}: torchattacks.{cls_name} takes no {key!r} (it takes {takes})"
                )
        # torchattacks prints when the model has no parameters (a stand-in); the device is
        # set at every call instead.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                return cls(self._module, **spec)
            except (TypeError, ValueError, AssertionError) as error:
                raise ValueError(f"attack {name}: {error}") from None

    def _compute_dtype(self, input_dtype: torch.dtype) -> torch.dtype:
        if self.precision is not None:
            return self.precision
        return compute_dtype(self.model, input_dtype)

    def _perturb(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        origin = problem.origin
        module = self._module
        module.forward_fn = problem.forward_at()
        module.dtype = origin.dtype
        module.gradient_rows = 0
        try:
            if is_torchattacks_attack(self.peer):
                self._warn_if_degenerate(problem)
                with _running_on(self.peer, module, origin.device, problem.target):
                    goal = problem.labels if problem.target is None else problem.target
                    adv = self.peer(origin.clone(), goal)
            else:
                if problem.target is not None:
                    raise ValueError(
                        f"target: the peer function {self.name} is untargeted (x, y) -> x_adv"
                    )
                adv = self.peer(origin.clone(), problem.labels.clone())
        finally:
            module.forward_fn = None
        if not isinstance(adv, Tensor) or adv.shape != origin.shape:
            shape = tuple(adv.shape) if isinstance(adv, Tensor) else type(adv).__name__
            raise ValueError(
                f"peer attack {self.name} returned {shape}, expected x's shape "
                f"{tuple(origin.shape)}"
            )
        adv = adv.detach().to(device=origin.device, dtype=origin.dtype)
        per_example = module.gradient_rows // max(len(origin), 1)
        evaluations = torch.full((len(origin),), per_example, device=origin.device)
        return adv, evaluations, {}

    def _warn_if_degenerate(self, problem: Problem) -> None:
        """Warns (once) when float32 rounds the label's probability to 1.0 for some examples:
        the cross-entropy gradient torchattacks ascends is zero there."""
        if self._warned or problem.origin.dtype != torch.float32:
            return
        with torch.no_grad():
            logits = problem.logits(problem.origin).float()
        probability = logits.softmax(dim=1).gather(1, problem.labels[:, None])[:, 0]
        stuck = int((probability == 1.0).sum())
        if stuck:
            self._warned = True
            warnings.warn(
                f"{self.name}: for {stuck} of {len(probability)} examples the label's float32 "
                "probability rounds to 1.0, where the cross-entropy gradient vanishes and the "
                "attack cannot move; pass compute_dtype=torch.float64 to keep it",
                RuntimeWarning,
                stacklevel=4,
            )


def _in_float32(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``forward`` on float32 images, its result in the given images' dtype."""

    def run(images: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return forward(images.float(), *args, **kwargs).to(images.dtype)

    return run


def _attacks_of(peer: Any) -> list[Any]:
    """The attack and every attack it holds (AutoAttack's components)."""
    return [peer, *peer.__dict__.get("_attacks", {}).values()]


@contextlib.contextmanager
def _running_on(
    peer: Any, module: nn.Module, device: torch.device, target: Tensor | None
) -> Iterator[None]:
    """``peer`` (and its components) set to run on ``module`` without normalisation of its
    own (ours is in the forward pass), on ``device``, targeted at given labels when
    ``target`` is not None; everything restored afterwards."""
    attacks = _attacks_of(peer)
    fields = ("model", "device", "_normalization_applied", "attack_mode", "targeted")
    saved = [{key: a.__dict__.get(key) for key in fields} for a in attacks]
    saved_maps = [a.__dict__.get("_target_map_function") for a in attacks]
    if target is not None and "targeted" not in getattr(peer, "supported_mode", ()):
        raise ValueError(f"target: torchattacks.{type(peer).__name__} has no targeted mode")
    try:
        for a in attacks:
            if type(a).__name__ in FLOAT32_ONLY:
                a.forward = _in_float32(type(a).forward.__get__(a))
            a.model = module
            a.device = device
            a._normalization_applied = None
            if target is not None:
                a.targeted = True
                a.attack_mode = "targeted(label)"
                a._target_map_function = "function is a string"
        yield
    finally:
        for a, values, target_map in zip(attacks, saved, saved_maps, strict=True):
            a.__dict__.pop("forward", None)
            for key, value in values.items():
                object.__setattr__(a, key, value)
            object.__setattr__(a, "_target_map_function", target_map)
