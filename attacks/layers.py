"""Layers by name, for any ``nn.Module``: find a submodule, read its output's range, hook it.

Hidden-layer attacks, per-layer adversarial pools and unit analyses all name a layer of a
model the user built, which need not be one of ours. This module is the one mechanism they
share:

- :func:`get_layer` / :func:`layer_path`: a submodule by its dotted path (``"layer3.1.conv2"``)
  or by a unique suffix of it (``"fc1"`` finds ``"network.stages.fc1"`` inside a
  LightningModule, ``"layer3"`` a torchvision ResNet's ``layer3`` inside a user's wrapper);
- :func:`layer_range` / :func:`register_layer_range`: the elementwise range of a module's
  output, the box of an attack at that layer (Szegedy et al. 2013, Section 4.1 perturb inside
  the valid range; at a hidden layer that is the range of the activation): a range declared
  on the module (``module.output_range = (0.0, 6.0)``), else one registered for its type
  (ReLU, Sigmoid, torchvision's residual blocks, ...), else read off the last bounding layer
  of an ``nn.Sequential``, else unbounded;
- :func:`perturb_layer`: run the whole network with a layer's output replaced (a forward
  hook), so that everything reading that output, skip connections included, sees the change;
- :func:`layer_activations`: the outputs of named layers for an input, in one forward pass.

``INPUT`` (``"input"``) names the network's input wherever a layer name is expected.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import Tensor, nn

INPUT = "input"

Range = tuple[float, float]
RangeRule = Range | Callable[[nn.Module], Range]

UNBOUNDED: Range = (-math.inf, math.inf)

# Modules whose output stays inside any elementwise box that holds their input (they select,
# average or reshape values): an nn.Sequential's range is that of its last layer that is not
# one of these. AlphaDropout is not one (it writes a fixed negative value and rescales).
_RANGE_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def _hardtanh(module: nn.Module) -> Range:
    return (float(module.min_val), float(module.max_val))  # type: ignore[arg-type]


def _below_alpha(module: nn.Module) -> Range:
    return (-float(module.alpha), math.inf)  # type: ignore[arg-type]


def _threshold(module: nn.Module) -> Range:
    return (min(float(module.threshold), float(module.value)), math.inf)  # type: ignore[arg-type]


# Minima of the smooth ReLU-like functions, rounded outwards (GELU: x * Phi(x) has its minimum
# -0.16997 at x = -0.7518; SiLU: -0.27846 at x = -1.2785; Mish: -0.30884 at x = -1.1924).
_REGISTRY: dict[type[nn.Module], RangeRule] = {
    nn.ReLU: (0.0, math.inf),
    nn.Hardtanh: _hardtanh,  # ReLU6 is a Hardtanh(0, 6)
    nn.Sigmoid: (0.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
    nn.Tanh: (-1.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
    nn.Softmax: (0.0, 1.0),
    nn.Softmax2d: (0.0, 1.0),
    nn.Softmin: (0.0, 1.0),
    nn.LogSoftmax: (-math.inf, 0.0),
    nn.LogSigmoid: (-math.inf, 0.0),
    nn.Softplus: (0.0, math.inf),
    nn.ELU: _below_alpha,
    nn.CELU: _below_alpha,
    nn.SELU: (-1.0507009873554805 * 1.6732632423543772, math.inf),
    nn.GELU: (-0.1700, math.inf),
    nn.SiLU: (-0.2785, math.inf),
    nn.Mish: (-0.3089, math.inf),
    nn.Hardswish: (-0.375, math.inf),
    nn.Threshold: _threshold,
}
_lazy_done: set[str] = set()


def _check_range(value: Any, what: str) -> Range:
    """``value`` as a ``(lower, upper)`` pair of floats with ``lower < upper``."""
    try:
        lower, upper = (float(v) for v in value)
    except (TypeError, ValueError):
        message = f"{what} must be a pair (lower, upper) of numbers, got {value!r}"
        raise ValueError(message) from None
    if math.isnan(lower) or math.isnan(upper) or not lower < upper:
        raise ValueError(f"{what} {value!r}: need lower < upper")
    return lower, upper


def register_layer_range(module_type: type[nn.Module], bounds: RangeRule) -> None:
    """Declare the elementwise range of the output of every module of ``module_type``.

    Args:
        module_type: an ``nn.Module`` subclass; its subclasses inherit the range unless they
            are registered themselves (the nearest class in the method resolution order wins).
        bounds: ``(lower, upper)`` (infinite allowed), or a function of the module instance
            returning it, for a range that depends on the module's configuration (as
            ``nn.Hardtanh``'s ``min_val``/``max_val``).

    Raises:
        TypeError: when ``module_type`` is not an ``nn.Module`` subclass.
        ValueError: when ``bounds`` is neither a callable nor a pair with ``lower < upper``.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(bounds):
        bounds = _check_range(bounds, f"bounds for {module_type.__name__}")
    _REGISTRY[module_type] = bounds


def _register_lazily() -> None:
    """Ranges of classes from optional libraries, registered once those are imported.

    A model can only hold torchvision's residual blocks once torchvision's ResNet module is
    imported, so it is looked up in ``sys.modules`` rather than imported here. Both blocks
    end in ``relu(out + identity)``.
    """
    if "torchvision" in _lazy_done:
        return
    resnet = sys.modules.get("torchvision.models.resnet")
    if resnet is None:
        return
    for block in ("BasicBlock", "Bottleneck"):
        kind = getattr(resnet, block, None)
        if isinstance(kind, type) and issubclass(kind, nn.Module):
            _REGISTRY.setdefault(kind, (0.0, math.inf))
    _lazy_done.add("torchvision")


def _own_range(module: nn.Module) -> Range | None:
    """The range declared on the module or registered for its type (``None``: neither)."""
    declared = getattr(module, "output_range", None)
    if declared is not None:
        return _check_range(declared, f"output_range of {type(module).__name__}")
    _register_lazily()
    for kind in type(module).__mro__:
        rule = _REGISTRY.get(kind)
        if rule is not None:
            value = rule(module) if callable(rule) else rule
            return _check_range(value, f"the range registered for {kind.__name__}")
    return None


def _range_or_preserved(module: nn.Module) -> Range | None:
    """The module's output range, or ``None`` when the module keeps its input's range."""
    own = _own_range(module)
    if own is not None:
        return own
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module)):
            found = _range_or_preserved(child)
            if found is not None:
                return found
        return None
    if isinstance(module, _RANGE_PRESERVING):
        return None
    return UNBOUNDED


def layer_range(module: nn.Module) -> Range:
    """The elementwise range ``(lower, upper)`` of ``module``'s output (may be infinite).

    In order: the module's ``output_range`` attribute (a user's declaration for their own
    module: ``module.output_range = (0.0, 6.0)``); the range registered for its type or the
    nearest base class (:func:`register_layer_range`; built in: ReLU, ReLU6 and Hardtanh with
    their configured limits, Sigmoid, Tanh, Softmax, ELU/CELU ``(-alpha, inf)``, SELU, GELU,
    SiLU, Mish, Hardswish, Softplus, ..., torchvision's ``BasicBlock`` and ``Bottleneck``
    ``(0, inf)``); for an ``nn.Sequential``, the range of its last child that bounds or
    changes the range (dropout, pooling, flattening and identity layers are looked through,
    nested Sequentials are searched the same way); anything else (a linear or convolutional
    layer, a residual sum, an unknown module) is unbounded ``(-inf, inf)``.

    Raises:
        ValueError: when a declared or registered range is not a pair with lower < upper.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    found = _range_or_preserved(module)
    return UNBOUNDED if found is None else found


def _shortened(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def layer_path(model: nn.Module, name: str) -> str:
    """The full dotted path inside ``model`` of the layer called ``name``.

    ``name`` is either a path that ``model.get_submodule`` accepts (``"layer3"``,
    ``"layer3.1.conv2"``, ``"network.stages.fc1"``) or the unique suffix, at a dot, of one
    (``"fc1"`` for ``"network.stages.fc1"``).

    Raises:
        ValueError: when ``name`` is empty or not a string, is ``"input"`` (the network's
            input, not a submodule), or when no submodule or several match it; the message
            lists the valid names (shortened) or the matches.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"layer name must be a non-empty string, got {name!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    try:
        model.get_submodule(name)
        return name
    except AttributeError:
        pass
    paths = [path for path, _ in model.named_modules() if path]
    matches = [path for path in paths if path.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    model_name = type(model).__name__
    if matches:
        raise ValueError(
            f"layer {name!r} is ambiguous in {model_name}: it matches {_shortened(matches)}; "
            "give a longer dotted path"
        )
    if name == INPUT:
        raise ValueError(f"{INPUT!r} names the network's input, not a submodule of {model_name}")
    known = f"its layers are {_shortened(paths)}" if paths else "it has no submodules"
    raise ValueError(f"unknown layer {name!r} in {model_name}: {known}")


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` called ``name`` (a dotted path or its unique suffix).

    Raises:
        ValueError: as :func:`layer_path`.
    """
    return model.get_submodule(layer_path(model, name))


@contextmanager
def perturb_layer(model: nn.Module, name: str, fn: Callable[[Any], Any]) -> Iterator[nn.Module]:
    """While active, every forward call of layer ``name`` returns ``fn(output)`` instead.

    A forward hook on :func:`get_layer` ``(model, name)``, removed on exit (also on error).
    Everything downstream of the layer, skip connections included, reads the replacement;
    the gradient of the model's output with respect to a tensor that ``fn`` returns flows
    through all of them. ``fn`` sees the layer's output as the module returned it (a tensor,
    or whatever the module returns). Yields the layer's module.

    Raises:
        ValueError: as :func:`layer_path`.
    """
    layer = get_layer(model, name)

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        return fn(output)

    handle = layer.register_forward_hook(hook)
    try:
        yield layer
    finally:
        handle.remove()


def layer_activations(model: nn.Module, x: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    """The outputs of the named layers when ``model`` runs on ``x`` (one whole forward pass).

    ``"input"`` gives ``x`` itself. The tensors are copies of what the layers returned (a later
    in-place layer, as ``ReLU(inplace=True)``, does not change them), in the model's dtype
    and with the autograd graph when gradients are enabled (wrap the call in
    ``torch.no_grad()`` to drop it). The model's train/eval mode is the caller's.

    Raises:
        ValueError: for an unknown or ambiguous name (as :func:`layer_path`), a layer that
            did not run in the forward pass, ran more than once (a module reused, as
            torchvision's ``BasicBlock.relu``: name another layer) or returned something
            other than a tensor.
    """
    wanted = list(dict.fromkeys(names))
    found: dict[str, list[Any]] = {name: [] for name in wanted if name != INPUT}
    with ExitStack() as stack:
        for name in found:

            def capture(output: Any, _store: list[Any] = found[name]) -> Any:
                # A copy: layers after this one may write its output in place (ReLU).
                _store.append(output.clone() if isinstance(output, Tensor) else output)
                return output

            stack.enter_context(perturb_layer(model, name, capture))
        model(x)
    result: dict[str, Tensor] = {}
    for name in wanted:
        if name == INPUT:
            result[name] = x
            continue
        outputs = found[name]
        if len(outputs) != 1:
            raise ValueError(
                f"layer {name!r} ran {len(outputs)} times in one forward pass of "
                f"{type(model).__name__}; its activation is defined for a layer that runs once"
            )
        if not isinstance(outputs[0], Tensor):
            raise ValueError(f"layer {name!r} returned {type(outputs[0]).__name__}, not a tensor")
        result[name] = outputs[0]
    return result
