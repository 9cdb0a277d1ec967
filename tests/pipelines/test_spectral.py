"""``pipelines.spectral``: Table 5's bounds from Python, without the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from intriguing.analysis.spectral import module_bounds
from intriguing.cli.main import main
from intriguing.configs import ConfigError
from intriguing.pipelines.spectral import SpectralSettings, spectral_report, write_report

FACTORY = """
from torch import nn


def build() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3))
"""


def test_a_factory_model_with_weights_is_bounded_and_written(tmp_path: Path) -> None:
    factory = tmp_path / "pipeline_nets.py"
    factory.write_text(FACTORY)
    namespace: dict = {}
    exec(compile(FACTORY, "pipeline_nets", "exec"), namespace)  # the same model, to compare
    model: nn.Module = namespace["build"]()
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    settings = SpectralSettings(model=f"{factory}:build", state_dict=weights, input_shape=(1, 6, 6))
    report = spectral_report(settings)
    assert report.title == f"Upper Lipschitz bounds (L2) of {factory}:build, inputs 1x6x6"
    expected = module_bounds(model, (1, 6, 6))
    assert report.bounds.network == pytest.approx(expected.network, rel=1e-9)
    assert report.source["input_shape"] == "1x6x6" and report.source["state_dict"] == str(weights)
    written = write_report(report, markdown_path=tmp_path / "t.md", json_path=tmp_path / "t.json")
    assert written == [tmp_path / "t.md", tmp_path / "t.json"]
    assert (tmp_path / "t.md").read_text() == report.text()
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["model"] == f"{factory}:build"
    assert [row["layer"] for row in record["layers"]] == ["0", "1", "2", "3"]


def test_settings_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give exactly one of them"):
        SpectralSettings()
    with pytest.raises(ConfigError, match="--input-shape C,H,W is needed"):
        spectral_report(SpectralSettings(model="torch.nn:Identity"))
    with pytest.raises(ConfigError, match="--module goes with --model, not --checkpoint"):
        spectral_report(SpectralSettings(checkpoint=tmp_path / "x.ckpt", module="fc"))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"input_shape": 784}, TypeError, "input_shape=784: expected a sequence of positive"),
        ({"input_shape": "1,28,28"}, TypeError, "input_shape='1,28,28': expected a sequence"),
        ({"input_shape": (1, 0, 28)}, ValueError, "input_shape=(1, 0, 28): sizes must be at"),
        ({"input_shape": ()}, ValueError, "input_shape=(): must not be empty"),
        ({"input_shape": (1, 2.5)}, TypeError, "input_shape=(1, 2.5): item 1 (2.5): expected"),
        ({"tol": -1}, ValueError, "tol=-1: must be finite and at least 0"),
        ({"tol": float("nan")}, ValueError, "tol=nan: must be finite and at least 0"),
        ({"dense_limit": 10.5}, TypeError, "dense_limit=10.5: expected a whole number"),
        ({"module": 3}, TypeError, "module=3: expected a str or None"),
    ],
)
def test_fields_are_refused_by_name_and_value(
    changes: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^SpectralSettings: " + re.escape(message)):
        SpectralSettings(model="torch.nn:Identity", **changes)
    assert SpectralSettings(model="torch.nn:Identity", input_shape=[1, 2, 2], tol=0).tol == 0


def test_the_command_line_reports_a_refused_tolerance_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    words = ["spectral", "--model", "torch.nn:Identity", "--input-shape", "1,2,2", "--tol", "-1"]
    assert main(words) == 2
    assert capsys.readouterr().err == (
        "intriguing spectral: error: SpectralSettings: tol=-1.0: must be finite and at least 0\n"
    )
