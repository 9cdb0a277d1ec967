"""Argument helpers shared by the commands: a pipeline's settings from the options,
``--device`` and the ``--wandb`` options."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

import torch

from intriguing.configs import ConfigError
from intriguing.pipelines.tracking import AnalysisTracking

S = TypeVar("S")


def settings_from(
    settings: type[S],
    args: argparse.Namespace,
    *,
    options: Mapping[str, str] | None = None,
    **given: Any,
) -> S:
    """A pipeline's settings dataclass from the parsed options: each field is the option of
    the same name (its ``dest``), or the one ``options`` names for it (``{"epsilons":
    "epsilon"}``), save the fields ``given`` gives (a value the options hold in another form:
    a resolved device).

    Raises:
        TypeError: naming the field and the command, for a field no option holds (a parser
            and its pipeline that have drifted apart).
        ConfigError: a value the settings refuse that the option's type let through
            (``--tol -1``: ``"SpectralSettings: tol=-1.0: must be finite and at least 0"``).
    """
    options = dict(options or {})
    values: dict[str, Any] = {}
    for item in fields(settings):  # type: ignore[arg-type]
        if item.name in given:
            continue
        option = options.get(item.name, item.name)
        if not hasattr(args, option):
            raise TypeError(
                f"{settings.__name__}.{item.name}: no option {option!r} of "
                f"{getattr(args, 'command', 'the command')}"
            )
        values[item.name] = getattr(args, option)
    try:
        return settings(**values, **given)
    except ValueError as error:  # the user's value: one line, not a traceback
        raise ConfigError(str(error)) from None


def torch_device(word: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when there is a GPU, else the CPU) or a torch device
    name; one this machine lacks is refused by name."""
    if word == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(word)
    except RuntimeError as error:
        raise ConfigError(f"--device {word!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {word}: CUDA is not available here")
    return device


def wandb_tracking(args: Any) -> AnalysisTracking:
    """Where a command's ``--wandb``, ``--wandb-project`` and ``--wandb-group`` options send
    its results (options a command lacks count as not given)."""
    return AnalysisTracking(
        enabled=bool(getattr(args, "wandb", False)),
        project=getattr(args, "wandb_project", None),
        group=getattr(args, "wandb_group", None),
    )
