"""Any ``nn.Module`` a user's factory builds, and its weights: the models of ``intriguing
spectral --model`` and ``intriguing evaluate --model`` (:mod:`pipelines.spectral`,
:mod:`pipelines.evaluate_models`).

:func:`build_model` calls ``FACTORY()`` of ``MODULE:FACTORY`` (an importable module or a
``.py`` file); :func:`load_weights` loads a state dict, or a Lightning checkpoint's, into it.
Both refuse what does not fit with a one-line :class:`~intriguing.configs.ConfigError` naming
the option the value came from (``--model``, ``--state-dict``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from intriguing.configs import ConfigError
from intriguing.registry import folder_on_path, import_components


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def build_model(spec: str) -> nn.Module:
    """``FACTORY()`` for ``spec`` = ``MODULE:FACTORY``, ``MODULE`` importable
    (``torchvision.models:resnet18``) or a ``.py`` file (``nets.py:build``), imported as
    ``python nets.py`` would: the file's folder first on ``sys.path`` while it is imported and
    its factory runs, so that it can import its sibling modules; a file is imported once per
    process (:func:`intriguing.registry.import_components`, as a config's ``imports``).

    Raises:
        ConfigError: ``spec`` is not ``MODULE:FACTORY``, the file or module cannot be found or
            imported, ``FACTORY`` is not callable, or it does not return an ``nn.Module``
            (the message starts with ``--model SPEC:``).
    """
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConfigError(
            f"--model {spec}: expected MODULE:FACTORY, e.g. torchvision.models:resnet18"
        )
    folder = None
    if module_name.endswith(".py"):
        if not Path(module_name).is_file():
            raise ConfigError(f"--model {spec}: no such file {module_name}")
        folder = Path(module_name).parent
    try:
        module = import_components(module_name)
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise ConfigError(f"--model {spec}: {module_name} has no callable {factory_name!r}")
        with folder_on_path(folder):  # the factory may import the file's siblings too
            model = factory()
    except ImportError as error:
        raise ConfigError(f"--model {spec}: {error}") from error
    except ValueError as error:  # a file that cannot be loaded as a module
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"--model {spec}: {error}") from error
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"--model {spec}: {factory_name}() returned {type(model).__name__}, not an nn.Module"
        )
    return model


def load_weights(
    model: nn.Module, path: Path, *, report: Callable[[str], None] = _to_stderr
) -> None:
    """Load a state dict (or a Lightning checkpoint's ``state_dict``) from ``path`` into
    ``model``, strictly, read with ``torch.load(weights_only=True)``.

    A LightningModule's checkpoint names its network's tensors after the attribute that holds
    it (``model.conv.weight``): when the keys share a dotted prefix and, without it, name
    exactly the model's tensors, the prefix is stripped and ``report`` is told so (one line;
    default: standard error).

    Raises:
        ConfigError: no such file, not a state dict, or tensors that do not fit the model
            (naming the keys' common prefix, when they have one, and ``--module``; the
            message starts with ``--state-dict PATH:``).
    """
    if not path.is_file():
        raise ConfigError(f"--state-dict {path}: no such file")
    content = torch.load(path, map_location="cpu", weights_only=True)
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--state-dict {path}: not a state dict ({type(content).__name__})")
    wanted = set(model.state_dict())
    prefixes = common_prefixes(list(state))
    for prefix in prefixes:
        stripped = {key.removeprefix(prefix): value for key, value in state.items()}
        if set(state) != wanted and set(stripped) == wanted:
            report(f"--state-dict {path}: stripped the keys' prefix {prefix!r}")
            state = stripped
            break
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        hint = ""
        if prefixes:
            hint = (
                f" (all its keys start with {prefixes[-1]!r}: the weights of a LightningModule "
                "holding the network as that attribute? Let the factory build that module "
                f"and bound its network with --module {prefixes[0].rstrip('.')})"
            )
        raise ConfigError(f"--state-dict {path}: does not fit the model{hint}: {error}") from error


def common_prefixes(keys: list[str]) -> list[str]:
    """The dotted prefixes every key shares, shortest first: ``["model."]`` for
    ``["model.conv.weight", "model.fc.bias"]`` (a key's last part is never one)."""
    if not keys:
        return []
    parts = [key.split(".")[:-1] for key in keys]
    shared: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        shared.append(level[0])
    return [".".join(shared[: depth + 1]) + "." for depth in range(len(shared))]
