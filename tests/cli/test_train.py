"""`intriguing train`: every preset runs, real training learns, resume continues, W&B holds
what was logged, bad configs exit 2 without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import intriguing.pipelines.evaluation as experiment_module
from intriguing.configs import available, compose
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.runs import find_finished_run, resolve_resume
from intriguing.pipelines.train import train as run_experiment
from intriguing.trainers import load_classifier

from .conftest import read_summary, wandb_summary

FAST = ["trainer.enable_progress_bar=false", "data.train_subset=512", "data.test_subset=256"]
# The robust error's attacks (PGD, APGD-CE, APGD-T, FGSM) with two steps and no restart: the
# figures are computed and recorded as in a real run, in a fraction of a second.
FAST += ["evaluation.robust_steps=2", "evaluation.pgd_steps=2", "evaluation.pgd_restarts=1"]
# The CIFAR-10 presets need the real data set (a download): test_cifar_presets.py trains them
# on CIFAR-10 files made in the test.
OFFLINE_PRESETS = [name for name in available("experiment") if "cifar10" not in name]
# Presets whose per-step attack is costly on a CPU (the conv net attacked at every step, and
# validated under PGD on 500 images): fewer steps and images, the same code paths.
PRESET_FAST = {
    "pgd-at-conv": ["backfeed.generator.steps=2", "backfeed.val_subset=16"],
    "fgsm-rs-conv": ["backfeed.val_subset=16"],
}


@pytest.mark.parametrize("experiment", OFFLINE_PRESETS)
def test_every_experiment_preset_runs_a_fast_dev_run(experiment, run_cli, tmp_path: Path) -> None:
    outcome = run_cli(
        "train",
        f"experiment={experiment}",
        "trainer.fast_dev_run=true",
        "model.autoencoder.pretrain_epochs=1",
        "backfeed.pool_size=64",  # presets with backfeeding: a pool the 512 images can fill
        "evaluation.subset=16",
        "logger=none",
        f"output_dir={tmp_path}",
        *FAST,
        *PRESET_FAST.get(experiment, []),
    )
    assert outcome.code == 0, outcome.err
    assert "test/error" in outcome.out


def test_short_real_training_reaches_an_asserted_error(run_cli, tmp_path: Path) -> None:
    outcome = run_cli(
        "train",
        "experiment=fc100-100-10",
        "trainer.max_epochs=3",
        "data.train_subset=10000",
        "data.test_subset=2000",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"output_dir={tmp_path}",
    )
    assert outcome.code == 0, outcome.err
    summary = read_summary(tmp_path, "fc100-100-10")
    # 10,000 real MNIST images, 3 epochs: about 6% on the whole test set and 8.6% on its
    # harder first 2,000 images (measured); chance is 90%.
    assert summary["metrics"]["test/error"] < 0.12
    assert summary["metrics"]["train/error"] < 0.08
    assert summary["epochs"] == 3
    # The checkpoint reloads with weights only and gives the same error on the same images.
    model = load_classifier(summary["checkpoint"])
    datamodule = build_datamodule({"name": "mnist", "test_subset": 2000})
    datamodule.prepare_data()
    datamodule.setup("test")
    images, labels = datamodule.tensors("test")
    with torch.no_grad():
        error = (model(images).argmax(1) != labels).float().mean().item()
    assert error == pytest.approx(summary["metrics"]["test/error"], abs=1e-6)


# Table 1's presets as shipped, on all 60,000 training and 10,000 test images: the paper's
# error, and the bound this project holds each preset to (seed 0 measured 7.57%, 9.19%,
# 21.6%, 1.73%, 1.54%; FC100-100-10 over seeds 0-2: 1.60-1.86%).
TABLE1_ERRORS = [
    ("fc10-1e-4", 0.074, 0.080),
    ("fc10-1e-2", 0.094, 0.097),
    ("fc10-1", 0.20, 0.22),
    ("fc100-100-10", 0.0164, 0.019),
    ("fc200-200-10", 0.0154, 0.017),
]


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "paper", "bound"), TABLE1_ERRORS)
def test_table1_preset_reaches_its_error_on_the_full_test_set(
    experiment: str, paper: float, bound: float, run_cli, tmp_path: Path
) -> None:
    outcome = run_cli(
        "train",
        f"experiment={experiment}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"output_dir={tmp_path}",
    )
    assert outcome.code == 0, outcome.err
    error = read_summary(tmp_path, experiment)["metrics"]["test/error"]
    assert error <= bound, f"{experiment}: {error:.2%} (paper {paper:.2%}, bound {bound:.2%})"


def test_resume_continues_from_the_saved_step_and_the_same_wandb_run(
    run_cli, tmp_path: Path
) -> None:
    common = ["experiment=fc100-100-10", f"output_dir={tmp_path}", *FAST]
    assert run_cli("train", *common, "trainer.max_epochs=2").code == 0
    first = read_summary(tmp_path, "fc100-100-10")
    checkpoint = torch.load(first["checkpoint"], weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 2 * 512 // 64

    outcome = run_cli("train", *common, "trainer.max_epochs=3", "resume=last")
    assert outcome.code == 0, outcome.err
    second = read_summary(tmp_path, "fc100-100-10")
    assert second["run_dir"] == first["run_dir"]  # the same run folder, not a new run
    resumed = torch.load(second["checkpoint"], weights_only=True)
    assert resumed["global_step"] == 3 * 512 // 64  # continued, not restarted
    # The same W&B run: offline, W&B writes each session to a folder of its own (named by
    # date, id and, within one second, a counter), under the same run id.
    logged = wandb_summary(second["logs"])
    assert logged["run_id"] == wandb_summary(first["logs"])["run_id"]
    assert (Path(first["run_dir"]) / "wandb_id.txt").read_text() == logged["run_id"]
    assert logged["summary"]["trainer/global_step"] == 3 * 512 // 64


def test_offline_wandb_run_holds_config_and_metrics(run_cli, tmp_path: Path) -> None:
    outcome = run_cli(
        "train", "experiment=fc10-1e-2", f"output_dir={tmp_path}", "trainer.max_epochs=1", *FAST
    )
    assert outcome.code == 0, outcome.err
    summary = read_summary(tmp_path, "fc10-1e-2")
    assert "offline-run" in summary["logs"]
    logged = wandb_summary(summary["logs"])
    assert logged["state"] == "finished"
    assert logged["config"]["model"]["weight_decay"] == [0.01]
    assert logged["config"]["optim"]["name"] == "adam"
    metrics = logged["summary"]
    assert metrics["test/error"] == pytest.approx(summary["metrics"]["test/error"])
    for key in ("train/error", "train/loss", "val/error", "val/loss", "test/loss"):
        assert key in metrics


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["trainer.max_epochz=3"], "trainer.max_epochz"),
        (["model.weight_decay=abc"], "model.weight_decay"),
        (["experiment=nope"], "experiment=nope"),
        (["resume=/no/such.ckpt"], "resume=/no/such.ckpt"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_no_traceback(run_process, words, message) -> None:
    outcome = run_process("train", *words, "logger=none")
    assert outcome.code == 2
    assert message in outcome.err
    assert "Traceback" not in outcome.err
    assert len(outcome.err.strip().splitlines()) == 1


def test_compare_baseline_trains_it_once_and_reuses_it(run_cli, tmp_path: Path) -> None:
    words = [
        "train",
        "experiment=backfeed-fc100",
        "compare_baseline=true",
        "trainer.max_epochs=1",
        "backfeed.generator.name=fgsm",
        "backfeed.pool_size=200",
        "backfeed.val_subset=50",
        "evaluation.subset=50",
        "logger=none",
        f"output_dir={tmp_path}",
        *FAST,
    ]
    first = run_cli(*words)
    assert first.code == 0, first.err
    for label in (
        "clean test error",
        "robust error (L-inf 0.1)",
        "robust error (L-inf 0.3)",
        "robust error (L2 1.5)",
        "FGSM error (L-inf 0.1)",  # the adversarial test error's attack, named
        "mean minimum distortion",
    ):
        assert label in first.out
    assert "reused" not in first.out
    baselines = list((tmp_path / "backfeed-fc100-baseline").glob("*/summary.json"))
    assert len(baselines) == 1

    second = run_cli(*words)
    assert second.code == 0, second.err
    assert f"baseline: reused from {baselines[0].parent}" in second.out
    assert list((tmp_path / "backfeed-fc100-baseline").glob("*/summary.json")) == baselines
    # Another setting that changes what the baseline trains makes a new one.
    third = run_cli(*words, "optim.lr=0.01")
    assert third.code == 0, third.err
    assert len(list((tmp_path / "backfeed-fc100-baseline").glob("*/summary.json"))) == 2


class _FinalWeights(Callback):
    """Keeps a copy of the model's weights at the end of fit (the in-memory final model)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_fit_end(self, trainer, pl_module) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_last_checkpoint_is_the_final_model_and_best_is_named(tmp_path: Path) -> None:
    # checkpoint.mode=max makes the best epoch by val/error the worst one, an early one: the
    # case where Lightning's save_last with a monitor left last.ckpt at the best epoch.
    config = compose(
        [
            "experiment=fc100-100-10",
            "trainer.max_epochs=4",
            "data.val_size=200",
            "checkpoint.mode=max",
            "logger=none",
            f"output_dir={tmp_path}",
            *FAST,
        ]
    )
    final = _FinalWeights()
    summary = run_experiment(config, extra_callbacks=[final])
    assert Path(summary.checkpoint).name == "last.ckpt"
    last = torch.load(summary.checkpoint, weights_only=True)
    assert last["epoch"] == 3 and summary.epochs == 4
    assert last["state_dict"].keys() == final.state.keys()
    for key, value in final.state.items():
        assert torch.equal(last["state_dict"][key], value), key
    # The best checkpoint is named as such, in summary.json too, and is not the last epoch.
    assert summary.best_checkpoint is not None
    best = torch.load(summary.best_checkpoint, weights_only=True)
    assert Path(summary.best_checkpoint).name == f"best-epoch{best['epoch']:03d}.ckpt"
    assert best["epoch"] < 3
    saved = json.loads((Path(summary.run_dir) / "summary.json").read_text())
    assert (saved["checkpoint"], saved["best_checkpoint"]) == (
        summary.checkpoint,
        summary.best_checkpoint,
    )
    names = sorted(p.name for p in (Path(summary.run_dir) / "checkpoints").iterdir())
    assert names == sorted(["last.ckpt", Path(summary.best_checkpoint).name])
    # resume=last finds it.
    assert resolve_resume(compose([*config_words(config), "resume=last"]))[0] == Path(
        summary.checkpoint
    )


def config_words(config) -> list[str]:
    return ["experiment=fc100-100-10", f"output_dir={config.output_dir}"]


def test_an_evaluation_failure_writes_the_summary_and_exits_1(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 must have the same dtype\nsecond line")

    monkeypatch.setattr(experiment_module, "EVALUATION", failing)  # measure_robustness fails
    outcome = run_cli(
        "train",
        "experiment=fc100-100-10",
        "trainer.max_epochs=1",
        "evaluation.subset=16",
        "logger=none",
        f"output_dir={tmp_path}",
        *FAST,
    )
    assert outcome.code == 1
    assert len(outcome.err.strip().splitlines()) == 1 and "Traceback" not in outcome.err
    assert "evaluation failed (RuntimeError: mat1 and mat2" in outcome.err
    summary = read_summary(tmp_path, "fc100-100-10")
    assert summary["error"].startswith("evaluation failed (RuntimeError: mat1 and mat2")
    assert "test/error" in summary["metrics"] and Path(summary["checkpoint"]).is_file()
    # A failed run is not a finished run: nothing reuses it.
    assert find_finished_run(compose(["experiment=fc100-100-10", f"output_dir={tmp_path}",
                                      "trainer.max_epochs=1", "evaluation.subset=16",
                                      "logger=none", *FAST])) is None  # fmt: skip


def test_a_precision_lightning_refuses_is_refused_before_training(run_process) -> None:
    outcome = run_process("train", "trainer.precision=bf17", "logger=none")
    assert outcome.code == 2
    assert "trainer.precision=bf17" in outcome.err and "Traceback" not in outcome.err
    assert len(outcome.err.strip().splitlines()) == 1
