"""The CIFAR-10 PreAct ResNet-18 presets compose as documented and train, on CIFAR-10 files
made in the test (real CIFAR-10 needs a network; see the README's set-up)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intriguing.configs import compose
from intriguing.configs.schema import ModelFamily

from ..datamodules.cifar_files import use_cifar

PRESETS = ("preact-resnet18-cifar10", "backfeed-preact-resnet18-cifar10")
EIGHT_OVER_255 = 8 / 255


@pytest.mark.parametrize("experiment", PRESETS)
def test_presets_hold_the_literature_recipe(experiment: str) -> None:
    config = compose([f"experiment={experiment}"])
    assert config.name == experiment
    assert config.model.family == ModelFamily.preact_resnet
    assert list(config.model.resnet.widths) == [64, 128, 256, 512]
    assert list(config.model.resnet.blocks) == [2, 2, 2, 2]
    assert list(config.model.weight_decay) == [5e-4]
    assert (config.optim.name, config.optim.lr, config.optim.momentum) == ("sgd", 0.1, 0.9)
    assert config.optim.nesterov is False  # heavy-ball momentum, as in the literature
    assert config.data.name == "cifar10" and config.data.batch_size == 128
    assert config.data.augment.random_crop_padding == 4 and config.data.augment.horizontal_flip
    assert config.evaluation.attack.name == "pgd"
    assert config.evaluation.attack.epsilon == pytest.approx(EIGHT_OVER_255)
    assert config.backfeed.enabled == experiment.startswith("backfeed")
    if config.backfeed.enabled:
        assert config.backfeed.generator.epsilon == pytest.approx(EIGHT_OVER_255)
    # MNIST presets keep training on unaugmented images.
    assert not compose(["experiment=fc100-100-10"]).data.augment.horizontal_flip
    assert compose(["experiment=fc100-100-10"]).data.augment.random_crop_padding == 0


@pytest.mark.parametrize("experiment", PRESETS)
def test_preset_trains_on_cifar_files_made_here(
    experiment: str, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    use_cifar(monkeypatch, data_dir, train=96, test=16)
    monkeypatch.setenv("INTRIGUING_DATA_DIR", str(data_dir))
    outcome = run_cli(
        "train",
        f"experiment={experiment}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "data.val_size=16",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        # Narrow stages keep this fast on a CPU; the full widths are tested in test_resnet.
        "model.resnet.widths=[8,16,16,16]",
        "backfeed.pool_size=16",
        "backfeed.val_subset=8",
        "evaluation.subset=4",
        "evaluation.distortion_attack.search_steps=1",
        "evaluation.distortion_attack.max_iterations=2",
        "evaluation.robust_attacks=[pgd,fgsm]",  # the preset's budgets, our attacks only
        "evaluation.pgd_steps=1",
        "evaluation.pgd_restarts=1",
        "logger=none",
        f"output_dir={tmp_path / 'out'}",
    )
    assert outcome.code == 0, outcome.err
    (summary_file,) = (tmp_path / "out" / experiment).glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    metrics = summary["metrics"]
    assert summary["epochs"] == 1 and {"val/error", "test/error"} <= set(metrics)
    assert metrics["eval/examples"] == 4 and "eval/adversarial_error" in metrics
    if experiment.startswith("backfeed"):
        assert any(key.startswith("backfeed/") for key in metrics), sorted(metrics)
