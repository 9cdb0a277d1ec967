"""The whole run config is validated before anything trains (issue 13, items 2 and 6): the same
mistake raises the same type from the library, and the config layer names the key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from intriguing.callbacks import AdversarialBackfeed, SpectralMonitor, TransferRobustness
from intriguing.cli.main import main
from intriguing.configs import ConfigError, compose
from intriguing.datamodules import DataSourceError, build_datamodule
from intriguing.pipelines.validate import validate_run_config
from intriguing.trainers import CheckpointError, ImageClassifier

MODEL = {"family": "fc", "hidden": [8], "weight_decay": [0.0, 0.0]}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AdversarialBackfeed(mix_ratio=1.5), r"mix_ratio=1\.5: must be in \[0, 1\]"),
        (lambda: AdversarialBackfeed(pool_size=0), r"pool_size=0: must be at least 1"),
        (lambda: SpectralMonitor(every_n_epochs=0), r"every_n_epochs=0: must be at least 1"),
        (lambda: TransferRobustness([], subset=0), r"subset=0: must be at least 1"),
        (lambda: build_datamodule({"test_subset": 0}), r"test_subset=0: must be null or in"),
        (
            lambda: ImageClassifier(
                model=MODEL, optim={"name": "rmsprop"}, input_shape=[1, 4, 4], num_classes=3
            ),
            r"optim\.name='rmsprop': expected one of adam, sgd",
        ),
    ],
)
def test_the_library_raises_plain_value_errors_naming_the_parameter(build, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        build()
    assert type(raised.value) is ValueError  # not ConfigError, DataSourceError, CheckpointError
    assert not isinstance(raised.value, ConfigError | DataSourceError | CheckpointError)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (
            ["backfeed.layers=[fc9]"],
            r"^backfeed\.layers: 'fc9': unknown layer 'fc9' in ImageClassifier: its layers are "
            r".*'network\.stages\.fc1'",
        ),
        (["backfeed.layers=[logits]"], r"^backfeed\.layers: 'logits' is the model's output"),
        (["backfeed.mix_ratio=1.5"], r"^backfeed\.mix_ratio=1\.5: must be in \[0, 1\]$"),
        (["backfeed.pool_size=0"], r"^backfeed\.pool_size=0: must be at least 1$"),
        (["data.test_subset=0"], r"^data\.test_subset=0: must be null or in \[1, 10000\]$"),
        (["optim.lr=-1"], r"^optim\.lr=-1\.0: must be a number >= 0"),
        (["spectral.enabled=true", "spectral.every_n_epochs=0"], r"^spectral\.every_n_epochs=0"),
    ],
)
def test_validation_names_the_config_key(words: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_run_config(compose(["experiment=demo", *words]))


def test_valid_presets_pass() -> None:
    for preset in ("demo", "backfeed-fc100", "ae400-10", "conv"):
        validate_run_config(compose([f"experiment={preset}"]))


@pytest.mark.parametrize(
    "words",
    [
        ["backfeed.layers=[fc9]", "--print-config"],
        ["backfeed.layers=[fc9]"],  # a run with a baseline: refused before the baseline trains
        ["optim.lr=-1"],
    ],
)
def test_train_refuses_in_one_line_before_anything_trains(tmp_path: Path, capsys, words) -> None:
    started = time.perf_counter()
    code = main(["train", "experiment=demo", f"output_dir={tmp_path}", *words])
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("intriguing train: error: ")
    if "backfeed.layers=[fc9]" in words:
        assert "backfeed.layers: 'fc9'" in line and "'network.stages.fc1'" in line
    else:
        assert "optim.lr=-1.0" in line
    assert list(tmp_path.iterdir()) == []  # no run folder: nothing started
    assert seconds < 5


def test_a_bad_optimizer_name_fails_before_training(tmp_path: Path, capsys) -> None:
    code = main(["train", "experiment=demo", "optim.name=rmsprop", f"output_dir={tmp_path}"])
    assert code == 2 and "optim.name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
