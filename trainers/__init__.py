"""LightningModules for the paper's networks, built as stacks of named stages.

Model families are registered with their typed configs in :mod:`trainers.families` (where a
user registers their own). The names below are imported when first used (PEP 562), so that
importing :mod:`trainers.families` (the config schema, the command line) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intriguing.registry import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _MODULES, __all__)
