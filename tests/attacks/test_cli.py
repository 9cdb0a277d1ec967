"""``intriguing attack`` end to end: a saved checkpoint, real MNIST, a progress bar."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from intriguing.cli.main import main
from intriguing.datamodules import SPECS, build_datamodule, fetch
from intriguing.trainers import ImageClassifier

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The repo's data/ folder with real MNIST (fetched once, as the datamodules tests do)."""
    fetch(SPECS["mnist"], REPO_DATA)
    return REPO_DATA


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A small FC net trained a few steps on MNIST and saved by Lightning."""
    torch.manual_seed(0)
    model = ImageClassifier(
        model={"family": "fc", "hidden": [16], "weight_decay": [0.0]},
        optim={"name": "adam", "lr": 1e-2, "schedule": "none"},
        input_shape=(1, 28, 28),
        num_classes=10,
    )
    data = build_datamodule({"name": "mnist", "data_dir": str(mnist_dir), "on_device": False})
    images, labels = data.tensors("train")
    images, labels = images[:2000], labels[:2000]
    folder = tmp_path_factory.mktemp("ckpt")
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
    )
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=100))
    trainer.save_checkpoint(folder / "fc.ckpt")
    return folder / "fc.ckpt"


def common(checkpoint: Path, mnist_dir: Path) -> list[str]:
    return ["attack", "--checkpoint", str(checkpoint), "--data-dir", str(mnist_dir)]


def test_attack_prints_distortion_and_saves_the_set(checkpoint, mnist_dir, tmp_path, capsys):
    saved, record = tmp_path / "adv.pt", tmp_path / "attack.json"
    arguments = ["--subset", "30", "--batch-size", "16", "--search-steps", "4"]
    arguments += ["--save", str(saved), "--json", str(record)]
    assert main([*common(checkpoint, mnist_dir), *arguments]) == 0
    captured = capsys.readouterr()
    assert "mean minimum distortion" in captured.out and "adversarial error" in captured.out
    assert "lbfgs: 100%" in captured.err  # the progress bar
    summary = json.loads(record.read_text())
    assert summary["attack/examples"] == 30 and summary["attack/success_rate"] == 1.0
    content = torch.load(saved, weights_only=True)
    assert content["adv"].shape == (30, 1, 28, 28)
    assert float(content["distortion"].mean()) == pytest.approx(
        summary["attack/mean_distortion"], rel=1e-5
    )


def test_attack_at_a_hidden_layer_with_fgsm_targeted(checkpoint, mnist_dir, tmp_path, capsys):
    record = tmp_path / "attack.json"
    arguments = ["--subset", "20", "--attack", "fgsm", "--layer", "fc1", "--target-shift", "1"]
    assert main([*common(checkpoint, mnist_dir), *arguments, "--json", str(record)]) == 0
    assert "fgsm (targeted at (label + 1) mod 10, layer fc1)" in capsys.readouterr().out
    summary = json.loads(record.read_text())
    assert summary["attack"]["layer"] == "fc1" and summary["attack/success_rate"] > 0.5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--layer", "fc9"], "no layer 'fc9'"),
        (["--attack", "pgd", "--epsilon", "-1"], "budget"),
        (["--target-shift", "10"], "target would equal the label"),
    ],
)
def test_bad_options_exit_2_in_one_line(checkpoint, mnist_dir, capsys, arguments, message):
    assert main([*common(checkpoint, mnist_dir), "--subset", "2", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_checkpoint_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["attack", "--checkpoint", str(broken)]) == 2
    assert f"checkpoint {broken}" in capsys.readouterr().err
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, other)
    assert main(["attack", "--checkpoint", str(other)]) == 2
    assert "not an ImageClassifier checkpoint" in capsys.readouterr().err
    assert main(["attack", "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "no such file" in capsys.readouterr().err
