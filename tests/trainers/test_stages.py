"""Layers by name: activations and forward_from agree with the whole network's forward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from intriguing.trainers import (
    INPUT,
    StagedNetwork,
    autoencoder_classifier,
    convolutional,
    fully_connected,
)

NETWORKS = {
    "fc10": lambda: fully_connected((1, 28, 28), 10, hidden=[]),
    "fc100-100-10": lambda: fully_connected((1, 28, 28), 10, hidden=[100, 100], dropout=0.2),
    "ae400-10": lambda: autoencoder_classifier((1, 28, 28), 10),
    "conv-mnist": lambda: convolutional((1, 28, 28), 10, batch_norm=True),
    "conv-cifar": lambda: convolutional((3, 32, 32), 10, channels=[8, 16, 16], fc_hidden=[]),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_forward_from_every_layer_matches_forward(name: str) -> None:
    network = NETWORKS[name]().eval()
    x = torch.rand(3, *network.input_shape)
    logits = network(x)
    assert logits.shape == (3, network.num_classes)
    activations = network.activations(x, network.layer_names)
    for layer, h in activations.items():
        assert h.shape[1:] == network.layer_shape(layer)
        torch.testing.assert_close(network.forward_from(layer, h), logits)


def test_layer_bounds_follow_the_last_activation() -> None:
    fc = fully_connected((1, 28, 28), 10, hidden=[5, 5], dropout=0.5)
    assert fc.layer_bounds(INPUT) == (0.0, 1.0)
    assert fc.layer_bounds("fc1") == (0.0, math.inf)
    assert fc.layer_bounds("logits") == (-math.inf, math.inf)
    assert autoencoder_classifier((1, 28, 28), 10).layer_bounds("code") == (0.0, 1.0)
    conv = convolutional((1, 28, 28), 10, batch_norm=True)
    assert conv.layer_bounds("conv1") == (0.0, math.inf)  # ReLU, then max pooling


def test_unknown_layer_names_the_layers_there_are() -> None:
    network = fully_connected((1, 28, 28), 10, hidden=[5])
    with pytest.raises(ValueError, match=r"unknown layer 'fc9'.*'fc1'"):
        network.forward_from("fc9", torch.zeros(1, 5))


def test_activations_stop_at_the_last_requested_layer() -> None:
    calls: list[str] = []

    class Recorder(nn.Module):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(self.tag)
            return x

    network = StagedNetwork(
        [("a", Recorder("a")), ("b", Recorder("b")), ("logits", Recorder("c"))],
        input_shape=(4,),
    )
    calls.clear()
    network.activations(torch.zeros(2, 4), ["a"])
    assert calls == ["a"]


def test_stage_names_must_be_unique_and_not_input() -> None:
    with pytest.raises(ValueError, match="unique"):
        StagedNetwork([("input", nn.Identity())], input_shape=(2,))
