"""LightningModules for the paper's networks, built as stacks of named stages."""

from trainers.autoencoder import SparseAutoencoder
from trainers.checkpoints import CheckpointError, load_classifier, load_encoder_state
from trainers.classifier import ImageClassifier
from trainers.metrics import ErrorRate
from trainers.networks import (
    autoencoder_classifier,
    build_network,
    convolutional,
    fully_connected,
)
from trainers.stages import INPUT, StagedNetwork

__all__ = [
    "INPUT",
    "CheckpointError",
    "ErrorRate",
    "ImageClassifier",
    "SparseAutoencoder",
    "StagedNetwork",
    "autoencoder_classifier",
    "build_network",
    "convolutional",
    "fully_connected",
    "load_classifier",
    "load_encoder_state",
]
