"""Loading checkpoints named by a user: they are data, never code.

Every load goes through ``torch.load(weights_only=True)``: a file that would need arbitrary
code to unpickle is refused with a message, not executed. Models are rebuilt from the
primitive hyperparameters that :class:`~trainers.classifier.ImageClassifier` saves.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from intriguing.trainers.classifier import ImageClassifier


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe, or not the kind of model asked for."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise CheckpointError(
            f"checkpoint {path}: refused, it needs arbitrary code to load ({first}); "
            "only tensors and primitives are accepted"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: not a readable checkpoint ({error})") from None
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
        first = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: weights do not fit ({first})") from None
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
