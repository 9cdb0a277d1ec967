"""Loading checkpoints named by a user: they are data, never code.

Every load goes through ``torch.load(weights_only=True)``: a file that would need arbitrary
code to unpickle is refused with a message, not executed. Models are rebuilt from the
primitive hyperparameters that :class:`~trainers.classifier.ImageClassifier` saves, or, for
any other LightningModule, by the class the user names (:func:`load_lightning_module`).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning.pytorch import LightningModule

from intriguing.errors import first_line
from intriguing.trainers.classifier import ImageClassifier

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe, or not the kind of model asked for."""


def _safely(
    path: Path, load: Callable[[], T], failure: str, errors: tuple[type[Exception], ...]
) -> T:
    """``load()`` of the file ``path``, its failures as :class:`CheckpointError` naming it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        return load()
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path}: refused, it needs arbitrary code to load "
            f"({first_line(error, 'unsafe content')}); only tensors and primitives are accepted"
        ) from None
    except errors as error:
        first = first_line(error)
        raise CheckpointError(f"checkpoint {path}: {failure} ({first})") from None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True``."""
    path = Path(path)
    content = _safely(
        path,
        lambda: torch.load(path, map_location=map_location, weights_only=True),
        "not a readable checkpoint",
        (RuntimeError, EOFError, OSError, ValueError),
    )
    if not isinstance(content, dict) or "state_dict" not in content:
        raise CheckpointError(f"checkpoint {path}: not a Lightning checkpoint (no state_dict)")
    return content


def load_classifier(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    input_shape: Sequence[int] | None = None,
) -> ImageClassifier:
    """The :class:`ImageClassifier` saved at ``path``, in eval mode.

    With ``input_shape`` given, a checkpoint made for other inputs is refused by name.
    """
    content = read_checkpoint(path, map_location)
    hparams = content.get("hyper_parameters") or {}
    required = {"model", "optim", "input_shape", "num_classes"}
    if not required <= set(hparams):
        raise CheckpointError(
            f"checkpoint {path}: not an ImageClassifier checkpoint "
            f"(hyperparameters lack {sorted(required - set(hparams))})"
        )
    saved_shape = tuple(int(d) for d in hparams["input_shape"])
    if input_shape is not None and saved_shape != tuple(int(d) for d in input_shape):
        raise CheckpointError(
            f"checkpoint {path}: made for inputs of shape {saved_shape}, "
            f"but the data has shape {tuple(input_shape)}"
        )
    model = ImageClassifier(
        model=hparams["model"],
        optim=hparams["optim"],
        input_shape=saved_shape,
        num_classes=int(hparams["num_classes"]),
    )
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as error:
        first = first_line(error)
        raise CheckpointError(f"checkpoint {path}: weights do not fit ({first})") from None
    return model.eval()


def lightning_class(target: str) -> type[LightningModule]:
    """The LightningModule class ``target`` names: ``"package.module:ClassName"`` (or
    ``"package.module.ClassName"``). Raises :class:`CheckpointError` naming ``target`` when
    the module cannot be imported or the name is not a LightningModule subclass."""
    module_name, colon, attribute = target.partition(":")
    if not colon:
        module_name, _, attribute = target.rpartition(".")
    if not module_name or not attribute:
        raise CheckpointError(f"target {target!r}: expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CheckpointError(f"target {target!r}: cannot import {module_name} ({error})") from None
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, LightningModule)):
        raise CheckpointError(f"target {target!r}: not a LightningModule class")
    return found


def load_lightning_module(
    target: str | type[LightningModule],
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
) -> LightningModule:
    """The LightningModule of class ``target`` saved at ``path``, in eval mode.

    Loaded with the class's own ``load_from_checkpoint(path, map_location=...,
    weights_only=True)``: its saved hyperparameters rebuild it, and a checkpoint that would
    need arbitrary code to unpickle is refused. Raises :class:`CheckpointError` naming the
    file for a missing, unsafe or unfitting checkpoint.
    """
    cls = lightning_class(target) if isinstance(target, str) else target
    path = Path(path)
    model = _safely(
        path,
        lambda: cls.load_from_checkpoint(path, map_location=map_location, weights_only=True),
        f"cannot load {cls.__name__}",
        (RuntimeError, KeyError, TypeError, EOFError, OSError, ValueError),
    )
    return model.eval()


def load_encoder_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The encoder weights of a :class:`~trainers.autoencoder.SparseAutoencoder` checkpoint."""
    content = read_checkpoint(path)
    state = {
        key.removeprefix("encoder."): value
        for key, value in content["state_dict"].items()
        if key.startswith("encoder.")
    }
    if not state:
        raise CheckpointError(f"checkpoint {path}: holds no autoencoder encoder")
    return state
