"""``pipelines.attack``: Table 1's minimum distortion of a checkpoint from Python."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"subset": -3}, ValueError, "subset=-3: must be at least 1 (or None: the whole split)"),
        ({"subset": 0}, ValueError, "subset=0: must be at least 1"),
        ({"subset": 2.5}, TypeError, "subset=2.5: expected a whole number"),
        ({"batch_size": 0}, ValueError, "batch_size=0: must be at least 1"),
        ({"steps": 0}, ValueError, "steps=0: must be at least 1 (or None: the attack's default)"),
        ({"split": "dev"}, ValueError, "split='dev': expected one of train, val, test"),
        ({"norm": "l1"}, ValueError, "norm='l1': expected one of linf, l2"),
        ({"epsilon": "0.1"}, TypeError, "epsilon='0.1': expected a number or None"),
        ({"attack": ["pgd"]}, TypeError, "attack=['pgd']: expected a str"),
        ({"checkpoint": 3}, TypeError, "checkpoint=3: expected a path"),
    ],
)
def test_settings_refuse_what_the_options_refuse(
    changes: dict, error: type[Exception], message: str
) -> None:
    """From Python, the settings refuse the values the command line's option types refuse
    (nothing is loaded: the checkpoint need not exist)."""
    fields = {"checkpoint": "no_such.ckpt", **changes}
    with pytest.raises(error, match="^CheckpointAttackSettings: " + re.escape(message)):
        CheckpointAttackSettings(**fields)
    CheckpointAttackSettings("no_such.ckpt", subset=None, steps=None, split="full_train")
