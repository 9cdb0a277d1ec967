"""``intriguing attack`` end to end: a saved checkpoint, real MNIST, a progress bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from intriguing.cli.main import main


@pytest.fixture
def checkpoint(mnist_classifier_checkpoint: Path) -> Path:
    return mnist_classifier_checkpoint


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
        (
            ["--attack", "pgd", "--epsilon", "-1"],
            "PGD: epsilon=-1.0: must be finite and at least 0",
        ),
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
