"""Training with DDP on two CPU processes (gloo): it finishes, and its test error, reduced
across processes by torchmetrics, equals a single-process evaluation of the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from intriguing.datamodules import build_datamodule
from intriguing.trainers import load_classifier

from .conftest import read_summary


@pytest.mark.ddp
def test_ddp_on_two_cpu_processes_matches_single_process_evaluation(
    run_process, tmp_path: Path
) -> None:
    outcome = run_process(
        "train",
        "experiment=fc100-100-10",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "data.train_subset=2048",
        "data.val_size=1000",
        "data.test_subset=1001",  # odd: the two processes get unequal shares
        "logger=csv",
        f"output_dir={tmp_path / 'out'}",
        timeout=600,
    )
    assert outcome.code == 0, outcome.err[-3000:]
    summary = read_summary(tmp_path / "out", "fc100-100-10")
    checkpoint = torch.load(summary["checkpoint"], weights_only=True)
    # 2 processes x 1,024 examples each / batch 64 = 16 steps per epoch.
    assert checkpoint["global_step"] == 2 * 16

    model = load_classifier(summary["checkpoint"])
    datamodule = build_datamodule({"name": "mnist", "test_subset": 1001})
    datamodule.prepare_data()
    datamodule.setup("test")
    images, labels = datamodule.tensors("test")
    with torch.no_grad():
        error = (model(images).argmax(1) != labels).float().mean().item()
    assert summary["metrics"]["test/error"] == pytest.approx(error, abs=1e-6)


@pytest.mark.ddp
def test_backfeed_under_ddp_keeps_a_pool_per_process_and_reduces_its_figures(
    run_process, tmp_path: Path
) -> None:
    outcome = run_process(
        "train",
        "experiment=fc100-100-10",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.train_subset=1024",
        "data.val_size=256",
        "data.test_subset=256",
        "backfeed.enabled=true",
        "backfeed.generator.name=fgsm",
        "backfeed.val_attack.name=fgsm",
        "backfeed.val_subset=100",
        "backfeed.pool_size=101",  # odd: the processes keep 51 and 50
        "backfeed.refresh_fraction=0.5",
        "logger=csv",
        f"output_dir={tmp_path / 'out'}",
        timeout=600,
    )
    assert outcome.code == 0, outcome.err[-3000:]
    summary = read_summary(tmp_path / "out", "fc100-100-10")
    content = torch.load(summary["checkpoint"], weights_only=True)
    (state,) = [v for k, v in content["callbacks"].items() if "AdversarialBackfeed" in k]
    assert state["world_size"] == 2
    sizes = [rank["pools"]["input"]["size"] for rank in state["ranks"]]
    assert sizes == [51, 50]
    # The two processes drew from their own random streams and data shards.
    first, second = (rank["pools"]["input"]["examples"] for rank in state["ranks"])
    assert not torch.equal(first[:50], second[:50])
    assert summary["metrics"]["backfeed/input/pool_size"] == 101  # summed over processes
