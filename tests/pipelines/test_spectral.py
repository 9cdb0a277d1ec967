"""``pipelines.spectral``: Table 5's bounds from Python, without the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from intriguing.analysis.spectral import module_bounds
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
