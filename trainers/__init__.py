"""LightningModules for the paper's networks, built as stacks of named stages.

Model families are registered with their typed configs in :mod:`trainers.families` (where a
user registers their own). The names below are imported when first used (PEP 562), so that
importing :mod:`trainers.families` (the config schema, the command line) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intriguing.trainers.autoencoder import SparseAutoencoder
    from intriguing.trainers.checkpoints import (
        CheckpointError,
        load_classifier,
        load_encoder_state,
    )
    from intriguing.trainers.classifier import ImageClassifier
    from intriguing.trainers.families import FamilyEntry, family_entry, register_family
    from intriguing.trainers.metrics import ErrorRate
    from intriguing.trainers.networks import (
        autoencoder_classifier,
        build_network,
        convolutional,
        fully_connected,
    )
    from intriguing.trainers.stages import INPUT, StagedNetwork

#: Where each public name is defined.
_MODULES = {
    "autoencoder": ("SparseAutoencoder",),
    "checkpoints": ("CheckpointError", "load_classifier", "load_encoder_state"),
    "classifier": ("ImageClassifier",),
    "families": ("FamilyEntry", "family_entry", "register_family"),
    "metrics": ("ErrorRate",),
    "networks": ("autoencoder_classifier", "build_network", "convolutional", "fully_connected"),
    "stages": ("INPUT", "StagedNetwork"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "INPUT",
    "CheckpointError",
    "ErrorRate",
    "FamilyEntry",
    "ImageClassifier",
    "SparseAutoencoder",
    "StagedNetwork",
    "autoencoder_classifier",
    "build_network",
    "convolutional",
    "family_entry",
    "fully_connected",
    "load_classifier",
    "load_encoder_state",
    "register_family",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
