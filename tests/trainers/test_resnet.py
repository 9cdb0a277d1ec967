"""PreAct ResNet-18: shapes, stage names, parameter count, standardisation, decay groups."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from intriguing.configs import compose
from intriguing.trainers import ImageClassifier
from intriguing.trainers.networks import build_network, decay_groups, weighted_stages
from intriguing.trainers.resnet import CIFAR10_MEAN, CIFAR10_STD, PreActBlock, preact_resnet

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    """The network of the preset, built from its composed model config."""
    model = OmegaConf.to_container(compose(["experiment=preact-resnet18-cifar10"]).model)
    torch.manual_seed(0)
    return build_network(model, (3, 32, 32), 10)


def test_preact_resnet18_stages_shapes_and_parameter_count(resnet18) -> None:
    assert tuple(resnet18.stages) == STAGES
    shapes = {name: resnet18.layer_shape(name) for name in STAGES}
    assert shapes == {
        "stem": (64, 32, 32),
        "layer1": (64, 32, 32),
        "layer2": (128, 16, 16),
        "layer3": (256, 8, 8),
        "layer4": (512, 4, 4),
        "pool": (512,),
        "logits": (10,),
    }
    # Wong et al.'s / Rice et al.'s PreActResNet18 (kuangliu's plus a final batch norm).
    assert sum(p.numel() for p in resnet18.parameters()) == 11_172_170
    assert resnet18.layer_bounds("pool") == (0.0, float("inf"))
    assert resnet18.layer_bounds("layer3") == (float("-inf"), float("inf"))
    blocks = [m for m in resnet18.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 8
    # A 1x1 projection where the width and resolution change: first block of layer2..4.
    assert [b.shortcut is not None for b in blocks] == [False, False] + [True, False] * 3
    assert all(b.conv1.bias is None and b.conv2.bias is None for b in blocks)
    resnet18.eval()
    with torch.no_grad():
        assert resnet18(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_forward_from_a_hidden_layer_is_the_rest_of_the_network(resnet18) -> None:
    resnet18.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = resnet18(x)
        hidden = resnet18.activations(x, ["layer2", "pool"])
        assert hidden["pool"].shape == (2, 512) and bool((hidden["pool"] >= 0).all())
        for name in ("input", "layer2", "pool"):
            h = x if name == "input" else hidden[name]
            assert torch.allclose(resnet18.forward_from(name, h), logits, atol=1e-5)


def test_standardisation_is_part_of_the_stem() -> None:
    torch.manual_seed(0)
    plain = preact_resnet((3, 32, 32), 10, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1))
    standardised = preact_resnet(
        (3, 32, 32),
        10,
        widths=(4, 8, 8, 8),
        blocks=(1, 1, 1, 1),
        input_mean=CIFAR10_MEAN,
        input_std=CIFAR10_STD,
    )
    missing, unexpected = standardised.load_state_dict(
        {k.replace("stem.0.", "stem.1."): v for k, v in plain.state_dict().items()}, strict=False
    )
    assert missing == ["stages.stem.0.mean", "stages.stem.0.std"] and not unexpected
    plain.eval()
    standardised.eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(standardised(x), plain((x - mean) / std), atol=1e-5)
    assert standardised.layer_bounds("input") == (0.0, 1.0)


def test_weight_decay_goes_to_conv_and_linear_weights_only(resnet18) -> None:
    assert weighted_stages(resnet18) == ["stem", "layer1", "layer2", "layer3", "layer4", "logits"]
    groups = decay_groups(resnet18, [5e-4])
    decayed = [p for g in groups if g["weight_decay"] == 5e-4 for p in g["params"]]
    free = [p for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    weights = [m.weight for m in resnet18.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert {id(p) for p in decayed} == {id(p) for p in weights}
    assert len(decayed) + len(free) == len(list(resnet18.parameters()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": (2, 2), "widths": (64, 128, 256)}, "one value per residual stage"),
        ({"blocks": (2, 0), "widths": (8, 8)}, "must all be >= 1"),
        ({"input_mean": (0.5,), "input_std": (0.2, 0.2)}, "one value per channel"),
        ({"input_mean": (0.5, 0.5, 0.5), "input_std": (0.2, 0.0, 0.2)}, "must be positive"),
    ],
)
def test_bad_settings_raise_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preact_resnet((3, 32, 32), 10, **kwargs)


def test_unknown_family_names_the_new_one() -> None:
    with pytest.raises(ValueError, match="expected fc, ae, conv or preact_resnet"):
        build_network({"family": "resnet"}, (3, 32, 32), 10)


def test_a_training_step_under_bf16_autocast() -> None:
    """Mixed precision: the staged PreAct ResNet trains under autocast (CPU bf16 here)."""
    torch.manual_seed(0)
    module = ImageClassifier(
        model={
            "family": "preact_resnet",
            "weight_decay": [5e-4],
            "resnet": {"blocks": [1, 1, 1, 1], "widths": [8, 16, 16, 16]},
        },
        optim={"name": "sgd", "lr": 0.1, "schedule": "none"},
        input_shape=(3, 32, 32),
        num_classes=10,
    )
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = module(x)
        loss = nn.functional.cross_entropy(logits, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    grads = [p.grad for p in module.parameters()]
    assert all(
        g is not None and g.dtype == torch.float32 and bool(g.isfinite().all()) for g in grads
    )
