"""LightningModules for the paper's networks, built as stacks of named stages."""

from intriguing.trainers.autoencoder import SparseAutoencoder
from intriguing.trainers.checkpoints import CheckpointError, load_classifier, load_encoder_state
from intriguing.trainers.classifier import ImageClassifier
from intriguing.trainers.metrics import ErrorRate
from intriguing.trainers.networks import (
    autoencoder_classifier,
    build_network,
    convolutional,
    fully_connected,
)
from intriguing.trainers.stages import INPUT, StagedNetwork

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
