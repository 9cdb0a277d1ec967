"""``pipelines.attack``: Table 1's minimum distortion of a checkpoint from Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intriguing.configs import ConfigError
from intriguing.pipelines.attack import CheckpointAttackSettings, attack_checkpoint, save_record
from intriguing.trainers import CheckpointError


def test_attack_checkpoint_returns_a_typed_record(
    mnist_classifier_checkpoint: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    settings = CheckpointAttackSettings(
        mnist_classifier_checkpoint,
        attack="fgsm",
        target_shift=1,
        subset=12,
        batch_size=8,
        data_dir=str(mnist_dir),
        epsilon=0.1,
        progress=False,
    )
    record = attack_checkpoint(settings)
    assert record.dataset == "mnist" and record.split == "test" and record.num_classes == 10
    assert record.attack == {"name": "fgsm", "layer": None, "epsilon": 0.1}
    assert record.summary.examples == 12 and 0 <= record.summary.success_rate <= 1
    saved = json.loads(save_record(record, tmp_path / "out" / "attack.json").read_text())
    assert saved["checkpoint"] == str(mnist_classifier_checkpoint)
    assert saved["target_shift"] == 1 and saved["device"] == "cpu"
    assert saved["attack/examples"] == 12
    assert saved["attack/mean_distortion"] == pytest.approx(record.summary.mean_distortion)


def test_attack_checkpoint_refuses_by_name(mnist_classifier_checkpoint: Path, mnist_dir: Path):
    common = {"subset": 2, "data_dir": str(mnist_dir), "progress": False}
    with pytest.raises(CheckpointError, match="no layer 'fc9'; its layers are"):
        attack_checkpoint(
            CheckpointAttackSettings(mnist_classifier_checkpoint, layer="fc9", **common)
        )
    with pytest.raises(ConfigError, match="--target-shift 20: the target would equal the label"):
        attack_checkpoint(
            CheckpointAttackSettings(mnist_classifier_checkpoint, target_shift=20, **common)
        )
