"""Model families: registered once with their typed config; a user's own family is built,
composed and validated by name; defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from torch import nn

from intriguing.configs import ConfigError, compose, to_container
from intriguing.registry import field_default
from intriguing.trainers import ImageClassifier, StagedNetwork, build_network
from intriguing.trainers.families import (
    FAMILIES,
    AutoencoderConfig,
    FCConfig,
    family_entry,
    family_names,
    register_family,
)


@dataclass
class TinyConfig:
    width: int = 3
    scales: list[float] = field(default_factory=lambda: [1.0])


def tiny(input_shape, num_classes, *, width: int = 3, scales=(1.0,)) -> StagedNetwork:
    size = 1
    for d in input_shape:
        size *= d
    return StagedNetwork(
        [("body", nn.Sequential(nn.Flatten(), nn.Linear(size, width), nn.ReLU())),
         ("logits", nn.Linear(width, num_classes))],
        input_shape=input_shape,
    )  # fmt: skip


@pytest.fixture
def tiny_family():
    """The user's family, registered for the test only (as a user's module would at import)."""
    register_family("tiny_test_family", TinyConfig, section="tiny_test")(tiny)
    yield
    FAMILIES.remove("tiny_test_family")


def test_a_users_family_is_built_composed_and_checked(tiny_family) -> None:
    assert "tiny_test_family" in family_names()
    network = build_network({"family": "tiny_test_family", "tiny_test": {"width": 5}}, (1, 4, 4), 3)
    assert network.layer_shape("body") == (5,)
    config = compose(["model.family=tiny_test_family", "model.tiny_test.width=7"])
    assert to_container(config)["model"]["tiny_test"] == {"width": 7, "scales": [1.0]}
    with pytest.raises(ConfigError, match=r"model\.tiny_test\.width"):
        compose(["model.family=tiny_test_family", "model.tiny_test.width=wide"])
    with pytest.raises(ConfigError, match=r"model\.tiny_test\.depth"):
        compose(["model.tiny_test.depth=2"])
    module = ImageClassifier(
        model=to_container(config)["model"], optim={}, input_shape=(1, 4, 4), num_classes=3
    )
    assert module.network.layer_shape("body") == (7,)


def test_family_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_family("fc", TinyConfig, section="other", target="somewhere:else")
    with pytest.raises(ValueError, match="key of the model section"):
        register_family("x_test", TinyConfig, section="hidden")
    with pytest.raises(ValueError, match="section 'conv' holds family 'conv'"):
        register_family("x_test", TinyConfig, section="conv")
    with pytest.raises(ValueError, match="no key 'scales'"):
        register_family("x_test", TinyConfig)
    with pytest.raises(TypeError, match="AutoencoderConfig"):
        register_family("x_test", TinyConfig, section="x", pretrained_stage="body")
    assert "x_test" not in FAMILIES.entries


def test_a_builder_default_that_drifts_from_its_config_is_refused() -> None:
    def drifted(input_shape, num_classes, *, width: int = 4) -> StagedNetwork:
        raise AssertionError("not built")

    register_family("drift_test_family", TinyConfig, section="tiny_test")(drifted)
    try:
        with pytest.raises(TypeError, match="defaults width to 4, its config to 3"):
            family_entry("drift_test_family").load()
    finally:
        FAMILIES.remove("drift_test_family")


def test_builtin_defaults_are_the_configs() -> None:
    """The drift of issue 13 (fc's hidden=[] in the factory, [100, 100] in the schema) is gone:
    every builder's defaults are its config's, and a model section without settings builds
    what the schema's defaults describe."""
    for name in ("fc", "ae", "conv", "preact_resnet"):
        family_entry(name).load()  # raises on a drifted default
    assert field_default(FCConfig, "hidden") == [100, 100]
    assert list(build_network({"family": "fc"}, (1, 28, 28), 10).stages) == [
        "fc1", "fc2", "logits",
    ]  # fmt: skip
    assert compose([]).model.hidden == [100, 100]


def test_the_ae_family_declares_its_pretrained_code_stage() -> None:
    ae = family_entry("ae")
    assert issubclass(ae.config, AutoencoderConfig) and ae.section == "autoencoder"
    assert ae.frozen_stages({"family": "ae"}) == ("code",)
    assert ae.frozen_stages({"family": "ae", "autoencoder": {"finetune_encoder": True}}) == ()
    module = ImageClassifier(
        model={"family": "ae", "autoencoder": {"hidden": 8}}, optim={},
        input_shape=(1, 4, 4), num_classes=3,
    )  # fmt: skip
    assert not any(p.requires_grad for p in module.network.stages["code"].parameters())
    assert family_entry("fc").frozen_stages({}) == ()
