"""The registry of callbacks (issue 13, item 1): each callback declares its name and typed
config once; the run config's sections, their validation and the run's callbacks derive from
it, and a user's own callback is switched on by config without editing ours."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import get_type_hints

import pytest
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor

from intriguing.callbacks.registry import (
    REGISTRY,
    callback_entry,
    callback_names,
    enabled_callbacks,
    register_callback,
)
from intriguing.configs import ConfigError, compose, to_container
from intriguing.configs.schema import ExperimentConfig
from intriguing.pipelines.build import training_callbacks
from intriguing.pipelines.runs import fingerprint
from intriguing.pipelines.train import train
from intriguing.pipelines.validate import validate_run_config


@dataclass
class CountConfig:
    every_n_steps: int = 2
    label: str = "steps"


class CountSteps(Callback):
    """A user's callback: counts training steps."""

    def __init__(self, every_n_steps: int = 2, label: str = "steps") -> None:
        self.every_n_steps, self.label, self.steps = every_n_steps, label, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1


@pytest.fixture
def user_callback() -> Iterator[str]:
    register_callback("count_steps", CountConfig)(CountSteps)
    yield "count_steps"
    REGISTRY.remove("count_steps")


def test_the_schema_sections_of_the_research_callbacks_are_their_registered_configs() -> None:
    hints = get_type_hints(ExperimentConfig)
    own = callback_names(own_section=True)
    assert own == ("backfeed", "spectral", "transfer")
    for name in own:
        assert hints[name] is callback_entry(name).config


def test_callbacks_sections_are_checked_and_written_out_with_every_key() -> None:
    config = compose(["callbacks.early_stopping.patience=5", "callbacks.lr_monitor={}"])
    container = to_container(config)["callbacks"]
    assert container["early_stopping"]["patience"] == 5
    assert container["early_stopping"]["monitor"] == "val/error"
    assert set(container["lr_monitor"]) == {"logging_interval", "log_momentum", "log_weight_decay"}
    made = training_callbacks(config)
    assert [type(c) for c in made] == [EarlyStopping, LearningRateMonitor]
    assert made[0].patience == 5 and made[0].monitor == "val/error"


def test_a_null_section_switches_a_callback_off() -> None:
    config = compose(["callbacks.early_stopping={}", "callbacks.early_stopping=null"])
    assert training_callbacks(config) == []


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["callbacks.early_stop.patience=5"], r"^callbacks\.early_stop: not a registered callback"),
        (["callbacks.backfeed.pool_size=5"], r"^callbacks\.backfeed: has a section of its own"),
        (["callbacks.early_stopping.patience=x"], r"^callbacks\.early_stopping\.patience: "),
        (["callbacks.early_stopping.wait=1"], r"^callbacks\.early_stopping\.wait: Key 'wait' not"),
        (["callbacks.lr_monitor=3"], r"^callbacks\.lr_monitor=3: expected a mapping"),
    ],
)
def test_bad_callbacks_sections_fail_at_compose_naming_the_key(
    words: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        compose(words)


def test_a_value_a_lightning_callback_refuses_names_its_section() -> None:
    config = compose(["callbacks.early_stopping.mode=biggest"])
    with pytest.raises(ConfigError, match=r"^callbacks\.early_stopping: `mode` can be min, max"):
        training_callbacks(config)


def test_a_users_callback_is_switched_on_by_config(user_callback: str) -> None:
    config = compose([f"callbacks.{user_callback}.every_n_steps=7"])
    section = to_container(config)["callbacks"][user_callback]
    assert section == {"every_n_steps": 7, "label": "steps"}
    (made,) = training_callbacks(config)
    assert isinstance(made, CountSteps) and made.every_n_steps == 7
    (entry, section), *_ = enabled_callbacks(to_container(config))
    assert entry.section == f"callbacks.{user_callback}" and section["every_n_steps"] == 7


def test_a_users_callback_trains_with_a_run(user_callback: str, tmp_path: Path) -> None:
    words = [
        "experiment=fc100-100-10",
        "model.hidden=[8]",
        "model.weight_decay=[0.0,0.0]",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.train_subset=256",
        "data.test_subset=64",
        "data.val_size=0",
        "logger=none",
        f"output_dir={tmp_path}",
        f"callbacks.{user_callback}.label=mine",
    ]
    summary = train(compose(words))
    written = (Path(summary.run_dir) / "config.yaml").read_text()
    assert "count_steps:" in written and "label: mine" in written


USERS_MODULE = """
from dataclasses import dataclass
from lightning.pytorch.callbacks import Callback
from intriguing.callbacks.registry import register_callback


@dataclass
class TickConfig:
    every: int = 1


@register_callback("tick", TickConfig)
class Tick(Callback):
    def __init__(self, every: int = 1) -> None:
        self.every = every
"""


def test_a_module_named_in_imports_registers_its_callbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line's way to a user's callback: ``imports=[my_callbacks.py]``."""
    (tmp_path / "my_callbacks.py").write_text(USERS_MODULE)
    monkeypatch.chdir(tmp_path)
    try:
        config = compose(["imports=[my_callbacks.py]", "callbacks.tick.every=3"])
        (made,) = training_callbacks(config)
        assert type(made).__name__ == "Tick" and made.every == 3
        assert compose(["imports=[my_callbacks.py]"]).imports == ["my_callbacks.py"]  # once
    finally:
        REGISTRY.remove("tick")
        sys.modules.pop("my_callbacks", None)
    with pytest.raises(ConfigError, match=r"^imports: 'missing\.py': no such file"):
        compose(["imports=[missing.py]"])
    with pytest.raises(ConfigError, match=r"^imports: No module named 'no_such_package'"):
        compose(["imports=[no_such_package.callbacks]"])


def test_no_imports_and_no_callbacks_keep_the_fingerprint() -> None:
    plain = fingerprint(compose(["experiment=fc100-100-10"]))
    assert fingerprint(compose(["experiment=fc100-100-10", "imports=[]"])) == plain
    assert fingerprint(compose(["experiment=fc100-100-10", "callbacks.lr_monitor=null"])) == plain
    assert fingerprint(compose(["experiment=fc100-100-10", "callbacks.lr_monitor={}"])) != plain


def test_monitoring_a_validation_metric_without_a_validation_split_is_refused() -> None:
    words = ["experiment=fc100-100-10", "callbacks.early_stopping.patience=1"]
    with pytest.raises(ConfigError, match=r"^callbacks\.early_stopping\.monitor=val/error: "):
        validate_run_config(compose([*words, "data.val_size=0"]))
    validate_run_config(compose([*words, "callbacks.early_stopping.monitor=train/loss"]))


@dataclass
class ProbeConfig:
    layer: str = "fc1"


class Probe(Callback):
    """A user's callback that checks the model it will run on (``check_module``)."""

    def __init__(self, layer: str = "fc1") -> None:
        self.layer = layer

    def check_module(self, module, example) -> None:
        if self.layer not in dict(module.named_modules()):
            raise ValueError(f"layer={self.layer!r}: no such submodule")


def test_a_callback_that_checks_the_model_is_probed_before_training() -> None:
    register_callback("probe", ProbeConfig)(Probe)
    try:
        words = ["experiment=fc100-100-10", "callbacks.probe.layer=network.stages.fc1"]
        validate_run_config(compose(words))
        with pytest.raises(ConfigError, match=r"^callbacks\.probe\.layer='fc9': no such"):
            validate_run_config(compose([*words, "callbacks.probe.layer=fc9"]))
    finally:
        REGISTRY.remove("probe")


def test_registration_refuses_what_cannot_be_a_section() -> None:
    with pytest.raises(TypeError, match="must be a dataclass"):
        register_callback("plain", dict)
    with pytest.raises(TypeError, match="needs the key 'enabled'"):
        register_callback("sectioned", CountConfig, own_section=True)
    with pytest.raises(ValueError, match="already registered"):
        register_callback("early_stopping", CountConfig)(CountSteps)
    with pytest.raises(ValueError, match="the name of the section that holds them"):
        register_callback("callbacks", CountConfig)


def test_every_registered_config_field_has_a_default() -> None:
    """A section switched on with ``{}`` takes its config's defaults."""
    for name in callback_names():
        config = callback_entry(name).config
        missing = [f.name for f in fields(config) if f.default is f.default_factory is MISSING]
        assert missing == [], name


def test_the_registry_and_schema_import_no_torch() -> None:
    code = (
        "import sys, intriguing.callbacks.registry, intriguing.configs.schema; "
        "print(any(m.split('.')[0] in ('torch', 'lightning') for m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
