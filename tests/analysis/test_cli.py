"""``intriguing spectral`` and ``intriguing units`` end to end on a saved checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from intriguing.analysis.spectral import network_bounds
from intriguing.cli.main import main
from intriguing.datamodules import SPECS, fetch
from intriguing.trainers import ImageClassifier, load_classifier

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def offline_summary(wandb_dir: Path) -> dict:
    """The summary of the one offline W&B run below ``wandb_dir``, read back by W&B itself."""
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    wandb = Path(sys.executable).parent / "wandb"
    command = [str(wandb), "leet", "inspect", "--summary", "--json", str(runs[0])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)["summary"]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The repo's data/ folder with real MNIST (fetched once, as the datamodules tests do)."""
    fetch(SPECS["mnist"], REPO_DATA)
    return REPO_DATA


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv net for MNIST-shaped inputs, trained a few steps and saved by Lightning."""
    torch.manual_seed(0)
    model = ImageClassifier(
        model={
            "family": "conv",
            "conv": {"channels": [3, 4], "kernel_size": 3, "pool": "max", "fc_hidden": [16]},
            "weight_decay": [0.0],
        },
        optim={"name": "adam", "lr": 1e-2, "schedule": "none"},
        input_shape=(1, 28, 28),
        num_classes=10,
    )
    images = torch.rand(64, 1, 28, 28)
    data = DataLoader(TensorDataset(images, torch.arange(64) % 10), batch_size=32)
    folder = tmp_path_factory.mktemp("ckpt")
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
    )
    trainer.fit(model, data)
    trainer.save_checkpoint(folder / "conv.ckpt")
    return folder / "conv.ckpt"


def test_spectral_prints_table_5_and_writes_markdown_and_json(
    checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out_md, out_json = tmp_path / "t5.md", tmp_path / "t5.json"
    code = main(
        [
            "spectral",
            "--checkpoint",
            str(checkpoint),
            "--markdown",
            str(out_md),
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Layer | conv1 | conv2 | fc1 | logits | Product |" in printed
    assert out_md.read_text() in printed
    record = json.loads(out_json.read_text())
    expected = network_bounds(load_classifier(checkpoint).network)
    assert record["spectral/product"] == pytest.approx(expected.product, rel=1e-9)
    assert [row["layer"] for row in record["layers"]] == [layer.name for layer in expected.layers]


def test_spectral_logs_to_an_offline_wandb_run(checkpoint: Path, tmp_path: Path) -> None:
    assert main(["spectral", "--checkpoint", str(checkpoint), "--wandb"]) == 0
    summary = offline_summary(tmp_path)
    assert summary["spectral/product"] == pytest.approx(
        network_bounds(load_classifier(checkpoint).network).product
    )
    assert summary["spectral/layers"]["_type"] == "table-file"


def test_spectral_refuses_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    assert main(["spectral", "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_units_writes_grids_numbers_and_wandb(
    checkpoint: Path, mnist_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "units"
    arguments = [
        "units",
        "--checkpoint",
        str(checkpoint),
        "--layer",
        "conv2",
        "--data-dir",
        str(mnist_dir),
        "--limit",
        "300",
        "--directions",
        "6",
        "--top-k",
        "4",
        "--rows",
        "3",
        "--out",
        str(out),
    ]
    assert main([*arguments, "--wandb"]) == 0
    printed = capsys.readouterr().out
    assert "| Random directions | 6 |" in printed
    for name in ("unit_directions.png", "random_directions.png", "purity.png", "units.md"):
        assert (out / name).is_file()
    record = json.loads((out / "units.json").read_text())
    assert len(record["random_top"]) == 6 and len(record["random_top"][0]) == 4
    summary = offline_summary(tmp_path)
    assert summary["units/unit_grid"]["_type"] == "image-file"
    assert summary["units/random_purity_mean"] == record["summary"]["units/random_purity_mean"]
    # The same seed gives the same numbers.
    assert main([*arguments, "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "units.json").read_text())
    assert again["summary"] == record["summary"]


def test_units_refuses_an_unknown_layer(checkpoint: Path, mnist_dir: Path, capsys) -> None:
    arguments = ["units", "--checkpoint", str(checkpoint), "--layer", "conv7"]
    assert main([*arguments, "--data-dir", str(mnist_dir)]) == 2
    assert "no layer 'conv7'" in capsys.readouterr().err
