"""``intriguing spectral --model MODULE:FACTORY``: bounds of any nn.Module from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from intriguing.analysis.spectral import module_bounds
from intriguing.cli.main import main

FACTORY = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.norm = nn.BatchNorm2d(2)

    def forward(self, x):
        return torch.relu(x + self.norm(self.conv(x)))


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), Block(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)
    )


def attention() -> nn.Module:
    return nn.Sequential(nn.Flatten(1), nn.Unflatten(1, (6, 6)), nn.MultiheadAttention(6, 2))
"""


@pytest.fixture()
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "user_nets.py"
    path.write_text(FACTORY)
    return path


def test_spectral_bounds_a_factory_model_with_its_weights(
    factory: Path, tmp_path: Path, capsys
) -> None:
    namespace: dict = {}
    exec(compile(FACTORY, "user_nets", "exec"), namespace)  # the same model, to compare
    torch.manual_seed(0)
    model = namespace["build"]()
    weights = tmp_path / "weights.pt"
    torch.save({"state_dict": model.state_dict()}, weights)  # as a Lightning checkpoint
    out = tmp_path / "bounds.json"
    code = main(
        [
            "spectral",
            "--model",
            f"{factory}:build",
            "--state-dict",
            str(weights),
            "--input-shape",
            "1,6,6",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Input shape | Network upper bound |" in printed
    record = json.loads(out.read_text())
    expected = module_bounds(model, (1, 6, 6))
    assert record["spectral/network"] == pytest.approx(expected.network, rel=1e-9)
    assert [row["layer"] for row in record["layers"]] == [
        "0",
        "1.conv",
        "1.norm",
        "2",
        "3",
    ]
    # --module bounds one submodule: the residual block, 1 + its branch.
    code = main(
        ["spectral", "--model", f"{factory}:build", "--module", "1", "--input-shape", "2,6,6"]
    )
    assert code == 0


def test_spectral_model_errors_are_one_line(factory: Path, capsys) -> None:
    assert main(["spectral", "--model", f"{factory}:build"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(["spectral", "--model", f"{factory}:missing", "--input-shape", "1,6,6"]) == 2
    assert "no callable 'missing'" in capsys.readouterr().err
    assert main(["spectral", "--model", f"{factory}:attention", "--input-shape", "1,6,6"]) == 2
    err = capsys.readouterr().err
    assert "MultiheadAttention" in err and "register_bound" in err
    assert main(["spectral", "--model", f"{factory}:build", "--input-shape", "1,5,5"]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_factory_file_imports_its_siblings(tmp_path: Path, capsys) -> None:
    """As `python nets.py` would: the file's folder is on sys.path while it is imported."""
    (tmp_path / "sibling_layers.py").write_text(
        "from torch import nn\n\ndef head():\n    return nn.Linear(4, 3)\n"
    )
    (tmp_path / "sibling_nets.py").write_text(
        "from torch import nn\nimport sibling_layers\n\n"
        "def build():\n    return nn.Sequential(nn.Flatten(), sibling_layers.head())\n"
    )
    code = main(
        ["spectral", "--model", f"{tmp_path / 'sibling_nets.py'}:build", "--input-shape", "4"]
    )
    assert code == 0, capsys.readouterr().err
    import sys

    assert str(tmp_path) not in sys.path


def test_lightning_checkpoint_keys_with_a_prefix(factory: Path, tmp_path: Path, capsys) -> None:
    namespace: dict = {}
    exec(compile(FACTORY, "user_nets", "exec"), namespace)
    network = namespace["build"]()
    prefixed = {f"model.{key}": value for key, value in network.state_dict().items()}
    weights = tmp_path / "lit.ckpt"
    torch.save({"state_dict": prefixed}, weights)
    command = ["spectral", "--model", f"{factory}:build", "--input-shape", "1,6,6"]
    assert main([*command, "--state-dict", str(weights)]) == 0  # stripped: fits exactly
    assert "stripped the keys' prefix 'model.'" in capsys.readouterr().err
    # With another tensor of the LightningModule's, the rest does not fit: a hint.
    torch.save({"state_dict": {**prefixed, "model.extra": torch.zeros(1)}}, weights)
    assert main([*command, "--state-dict", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "start with 'model.'" in err and "--module model" in err
