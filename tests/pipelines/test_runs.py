"""Run folders (issue 13, item 6): a run that fails leaves its folder marked failed, with its
checkpoints, and a failed run is never taken for a finished one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from intriguing.configs import compose
from intriguing.pipelines.runs import (
    FAILED,
    SUMMARY_FILE,
    RunSummary,
    find_finished_run,
    fingerprint,
)
from intriguing.pipelines.train import train

TINY = [
    "experiment=fc100-100-10",
    "model.hidden=[8]",
    "model.weight_decay=[0.0,0.0]",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "data.train_subset=256",
    "data.test_subset=64",
    "data.val_size=0",
    "logger=none",
]


def _run_folder(config, stamp: str, **fields) -> Path:
    """A run folder as ``train`` leaves it: a checkpoint and a summary with ``fields``."""
    run_dir = Path(config.output_dir) / config.name / stamp
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    RunSummary(
        name=config.name,
        run_dir=str(run_dir),
        checkpoint=str(checkpoint),
        fingerprint=fingerprint(config),
        **fields,
    ).save()
    return run_dir


def test_find_finished_run_skips_failed_runs_and_runs_with_errors(tmp_path: Path) -> None:
    config = compose([*TINY, f"output_dir={tmp_path}"])
    _run_folder(config, "20260101-000000", status=FAILED, error="training failed (boom)")
    _run_folder(config, "20260101-000001", error="evaluation failed (ValueError: x)")
    assert find_finished_run(config) is None
    finished = _run_folder(config, "20260101-000002")
    found = find_finished_run(config)
    assert found is not None and found.run_dir == str(finished)


def test_a_summary_without_status_reads_as_finished(tmp_path: Path) -> None:
    """Summaries written before ``status`` existed stay finished runs."""
    config = compose([*TINY, f"output_dir={tmp_path}"])
    run_dir = _run_folder(config, "20260101-000000")
    record = json.loads((run_dir / SUMMARY_FILE).read_text())
    del record["status"]
    (run_dir / SUMMARY_FILE).write_text(json.dumps(record))
    assert find_finished_run(config) is not None


class _Crash(Callback):
    """Fails in the second training step, as an out-of-memory error or a bug would."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 1:
            raise RuntimeError("boom\nsecond line of the message")


def test_a_run_that_crashes_in_training_is_marked_failed_not_finished(tmp_path: Path) -> None:
    config = compose([*TINY, f"output_dir={tmp_path}"])
    with pytest.raises(RuntimeError, match="boom"):
        train(config, extra_callbacks=[_Crash()])
    (path,) = (tmp_path / config.name).glob(f"*/{SUMMARY_FILE}")
    summary = RunSummary.load(path.parent)
    assert summary.status == FAILED
    assert summary.error == "training failed (RuntimeError: boom)"
    assert summary.fingerprint == fingerprint(config)
    assert (path.parent / "config.yaml").is_file()  # the folder is kept, marked
    assert find_finished_run(config) is None
