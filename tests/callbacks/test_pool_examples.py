"""PoolExamplesLogger: a table of pool examples (clean, perturbation, adversarial, label, age)
really lands in the offline W&B run, read back from the run's own files; no W&B, no table."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import WandbLogger

from intriguing.callbacks import AdversarialBackfeed, PoolExamplesLogger
from intriguing.callbacks.pool_examples import COLUMNS, EXAMPLES_KEY
from intriguing.datamodules import build_datamodule
from intriguing.trainers import ImageClassifier

from ..wandb_runs import logged_table, run_records

EPSILON = 0.2


@pytest.mark.slow  # a W&B run and a fit: 11-15 s on a busy 2-core machine
def test_pool_examples_table_is_logged_to_the_wandb_run(tmp_path: Path) -> None:
    module = ImageClassifier(
        model={"family": "fc", "hidden": [32, 32], "weight_decay": [0.0]},
        optim={"name": "adam", "lr": 1e-3, "schedule": "none"},
        input_shape=[1, 28, 28],
        num_classes=10,
    )
    data = build_datamodule(
        {"name": "mnist", "train_subset": 256, "val_size": 0, "test_subset": 64, "batch_size": 64}
    )
    backfeed = AdversarialBackfeed(
        pool_size=32,
        refresh_fraction=0.25,
        generator={"name": "fgsm", "epsilon": EPSILON, "norm": "linf"},
        layers=["input", "fc2"],
        val_attack=None,
    )
    logger = WandbLogger(project="intriguing", save_dir=str(tmp_path), mode="offline")
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[backfeed, PoolExamplesLogger(every_n_epochs=2, examples=3)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        inference_mode=False,
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    run_dir = Path(logger.experiment.dir).parent
    logger.experiment.finish()

    records = run_records(run_dir)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    logged = [item for item in history if f"{EXAMPLES_KEY}.nrows" in item]
    assert len(logged) == 1  # after epoch 2 only
    assert logged[0][f"{EXAMPLES_KEY}.nrows"] == 6  # 3 examples of each of the 2 pools
    assert logged[0]["trainer/global_step"] == trainer.global_step == 8

    table, files = logged_table(records, EXAMPLES_KEY)
    assert table["columns"] == COLUMNS
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in table["data"]]
    assert [(r["pool"], r["slot"]) for r in rows] == [
        ("input", 0),
        ("input", 1),
        ("input", 2),
        ("fc2", 0),
        ("fc2", 1),
        ("fc2", 2),
    ]
    for row in rows:
        assert 0 <= row["label"] <= 9
        assert 0 <= row["age_steps"] <= trainer.global_step  # steps since made
        assert row["clean"]["_type"] == "image-file" and row["clean"]["path"] in files
    for row in rows[:3]:  # input pool: clean, magnified perturbation, adversarial
        assert row["perturbation"]["path"] in files and row["adversarial"]["path"] in files
        assert len({row[k]["path"] for k in ("clean", "perturbation", "adversarial")}) == 3
        assert row["adversarial"]["caption"] == f"label {row['label']}, age {row['age_steps']}"
        assert 0 < row["linf"] <= EPSILON + 1e-5  # FGSM's L-inf budget, in pixels
        assert row["l2"] >= row["linf"] and row["note"] == ""
    for row in rows[3:]:  # hidden pool: the input, and the layer perturbation's norms
        assert row["perturbation"] is None and row["adversarial"] is None
        assert row["linf"] > 0 and "fc2's output" in row["note"]


def test_without_wandb_or_pool_nothing_is_made() -> None:
    with pytest.raises(ValueError, match="every_n_epochs=0"):
        PoolExamplesLogger(every_n_epochs=0)
    with pytest.raises(ValueError, match="examples=0"):
        PoolExamplesLogger(examples=0)
    logger = PoolExamplesLogger(every_n_epochs=1)
    assert logger.rows(step=0) == []  # no backfeed callback found (no fit yet)
