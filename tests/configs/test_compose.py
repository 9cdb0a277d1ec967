"""The typed schema: presets compose, overrides apply, wrong keys and types fail by name."""

from __future__ import annotations

import pytest

from intriguing.configs import ConfigError, available, compose
from intriguing.configs.schema import ModelFamily, TrainSplit


def test_every_experiment_preset_composes() -> None:
    names = available("experiment")
    assert {"fc100-100-10", "fc200-200-10", "fc10-1e-4", "ae400-10", "conv", "demo"} <= set(names)
    for name in names:
        config = compose([f"experiment={name}"])
        assert config.name == name


def test_group_files_and_overrides_apply_in_order() -> None:
    config = compose(
        ["experiment=fc100-100-10", "model=fc200-200-10", "trainer.max_epochs=5", "seed=3"]
    )
    assert list(config.model.hidden) == [200, 200]
    assert config.trainer.max_epochs == 5
    assert config.seed == 3


def test_values_are_parsed_and_typed() -> None:
    config = compose(["model.hidden=[10,20]", "optim.lr=1e-2", "data.split=p1", "resume=null"])
    assert list(config.model.hidden) == [10, 20]
    assert config.optim.lr == pytest.approx(1e-2)
    assert config.data.split == TrainSplit.p1
    assert config.resume is None
    assert compose(["model.family=conv"]).model.family == ModelFamily.conv


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["trainer.max_epochz=3"], "trainer.max_epochz"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs"),
        (["model.family=resnet"], "model.family"),
        (["data.batch_size=[1,2]"], "data.batch_size"),
        (["experiment=no-such-experiment"], "experiment=no-such-experiment"),
        (["model=no-such-model"], "model=no-such-model"),
        (["trainer.max_epochs"], "trainer.max_epochs"),
    ],
)
def test_bad_config_fails_naming_the_key(words: list[str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose(words)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_experiment_defaults_must_name_known_groups(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  optimizer: adam\n")
    with pytest.raises(ConfigError, match="unknown: optimizer"):
        compose([f"experiment={bad}"])


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("backfeed.layers=input", r"^backfeed\.layers: expected a list, e.g\. \[a,b\] or \[\]"),
        ("backfeed.generator=fgsm", r"^backfeed\.generator: expected a mapping, e\.g\. \{name"),
    ],
)
def test_a_value_of_the_wrong_kind_is_named_in_plain_words(word: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compose([word])
