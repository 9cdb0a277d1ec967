"""Layers by name for any nn.Module: lookup, output ranges, hooks, activations."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from intriguing.attacks import (
    INPUT,
    get_layer,
    layer_activations,
    layer_path,
    layer_range,
    perturb_layer,
    register_layer_range,
)
from intriguing.trainers import fully_connected


class Wrapper(nn.Module):
    """A user's LightningModule-like wrapper holding the network one level down."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_layer_by_path_or_unique_suffix(resnet):
    wrapped = Wrapper(resnet)
    assert layer_path(wrapped, "layer3") == "network.layer3"
    assert get_layer(wrapped, "layer3") is resnet.layer3
    assert get_layer(wrapped, "network.layer3.1.conv2") is resnet.layer3[1].conv2
    assert get_layer(resnet, "layer3.1.conv2") is resnet.layer3[1].conv2
    staged = Wrapper(fully_connected((1, 8, 8), 10, hidden=[16]))
    assert layer_path(staged, "fc1") == "network.stages.fc1"


def test_unknown_ambiguous_and_input_names_raise(resnet):
    with pytest.raises(ValueError, match=r"unknown layer 'layer9'.*'conv1'"):
        get_layer(resnet, "layer9")
    with pytest.raises(ValueError, match=r"'conv1' is ambiguous.*layer1\.0\.conv1"):
        get_layer(Wrapper(resnet), "conv1")
    with pytest.raises(ValueError, match="network's input"):
        get_layer(resnet, INPUT)
    with pytest.raises(ValueError, match="no submodules"):
        get_layer(nn.Linear(2, 2), "fc1")
    with pytest.raises(ValueError, match="non-empty string"):
        get_layer(resnet, "")


def test_built_in_ranges_read_the_configuration():
    assert layer_range(nn.ReLU()) == (0.0, math.inf)
    assert layer_range(nn.ReLU6()) == (0.0, 6.0)
    assert layer_range(nn.Hardtanh(-2.0, 3.0)) == (-2.0, 3.0)
    assert layer_range(nn.ELU(alpha=0.5)) == (-0.5, math.inf)
    assert layer_range(nn.Sigmoid()) == (0.0, 1.0)
    assert layer_range(nn.Softmax(dim=1)) == (0.0, 1.0)
    assert layer_range(nn.Linear(2, 2)) == (-math.inf, math.inf)
    gelu_minimum = float(nn.GELU()(torch.linspace(-3, 0, 10001)).min())
    assert layer_range(nn.GELU())[0] <= gelu_minimum


def test_sequential_looks_through_range_preserving_layers():
    stage = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Dropout(0.1), nn.Flatten())
    assert layer_range(stage) == (-1.0, 1.0)
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU6()), nn.MaxPool2d(2))
    assert layer_range(nested) == (0.0, 6.0)
    assert layer_range(nn.Sequential(nn.ReLU(), nn.Linear(4, 4))) == (-math.inf, math.inf)
    assert layer_range(nn.Sequential(nn.Dropout())) == (-math.inf, math.inf)


def test_torchvision_residual_blocks_end_in_relu(resnet):
    assert layer_range(resnet.layer3) == (0.0, math.inf)
    assert layer_range(resnet.layer3[0]) == (0.0, math.inf)
    assert layer_range(resnet.layer3[0].bn2) == (-math.inf, math.inf)
    assert layer_range(resnet) == (-math.inf, math.inf)


def test_declared_and_registered_ranges():
    class Capped(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(-2.0, 2.0)

    class Subclass(Capped):
        pass

    module = nn.Linear(3, 3)
    module.output_range = (0.0, 6.0)
    assert layer_range(module) == (0.0, 6.0)
    assert layer_range(nn.Sequential(nn.Linear(3, 3), module, nn.Identity())) == (0.0, 6.0)
    register_layer_range(Capped, (-2.0, 2.0))
    assert layer_range(Subclass()) == (-2.0, 2.0)
    register_layer_range(Subclass, lambda m: (-1.0, 1.0))
    assert layer_range(Subclass()) == (-1.0, 1.0) and layer_range(Capped()) == (-2.0, 2.0)
    with pytest.raises(ValueError, match="lower < upper"):
        register_layer_range(Capped, (1.0, 0.0))
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        register_layer_range(int, (0.0, 1.0))  # type: ignore[arg-type]
    module.output_range = (3.0, 1.0)
    with pytest.raises(ValueError, match="output_range of Linear"):
        layer_range(module)


def test_perturb_layer_replaces_the_output_and_removes_its_hook(resnet):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        clean = resnet(x)
        with perturb_layer(resnet, "layer4", torch.zeros_like) as layer:
            assert layer is resnet.layer4
            zeroed = resnet(x)
        expected = resnet.fc(torch.zeros(2, 512))
        torch.testing.assert_close(zeroed, expected)
        with pytest.raises(RuntimeError, match="boom"), perturb_layer(resnet, "layer4", torch.abs):
            raise RuntimeError("boom")
        torch.testing.assert_close(resnet(x), clean)
    assert not resnet.layer4._forward_hooks


def test_layer_activations_in_one_pass(resnet):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        found = layer_activations(resnet, x, [INPUT, "layer3", "layer3.0.bn1", "fc"])
        torch.testing.assert_close(found["fc"], resnet(x))
        h = resnet.layer2(resnet.layer1(resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))))
        torch.testing.assert_close(found["layer3"], resnet.layer3(h))
        # bn1's output is then written in place by the block's ReLU(inplace=True): the
        # captured activation must still be bn1's own output, negative values included.
        torch.testing.assert_close(
            found["layer3.0.bn1"], resnet.layer3[0].bn1(resnet.layer3[0].conv1(h))
        )
        assert found["layer3.0.bn1"].min() < 0
    assert found[INPUT] is x
    with pytest.raises(ValueError, match="ran 2 times"):
        layer_activations(resnet, x, ["layer3.0.relu"])
    unused = Wrapper(nn.Linear(4, 2))
    unused.spare = nn.ReLU()
    with pytest.raises(ValueError, match="ran 0 times"):
        layer_activations(unused, torch.zeros(1, 4), ["spare"])
