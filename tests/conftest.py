"""Shared test set-up: W&B offline into a temporary folder, small thread counts, seeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from intriguing.datamodules import SPECS, build_datamodule, fetch
from intriguing.trainers import ImageClassifier

REPO = Path(__file__).resolve().parents[1]
# Real data sets are fetched once into the repo's (git-ignored) data/ and shared by all tests.
REPO_DATA = REPO / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """The tests' models are tiny: one thread is faster, and much faster on a busy machine
    (several processes' thread pools fighting over two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs offline, writes below its own tmp_path (W&B runs: ``tmp_path/wandb``,
    as ``WANDB_DIR`` says; find one from its logger or the run's ``summary.json`` ``logs``)
    and starts from seed 0."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    # Offline runs stage the files of their tables' artifacts here (else below the home folder).
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(name, raising=False)  # the machine's own would change what is logged
    monkeypatch.setenv("INTRIGUING_DATA_DIR", str(REPO_DATA))
    torch.manual_seed(0)
    yield


@pytest.fixture
def checkpoint_for_other_inputs(tmp_path: Path) -> Path:
    """``small.ckpt``: a classifier for 1x12x12 inputs, which no MNIST model can sit beside."""
    small = ImageClassifier(
        model={"family": "fc", "hidden": [], "weight_decay": [0.0]},
        optim={"name": "adam"},
        input_shape=(1, 12, 12),
        num_classes=10,
    )
    path = tmp_path / "small.ckpt"
    torch.save({"state_dict": small.state_dict(), "hyper_parameters": dict(small.hparams)}, path)
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The repo's data/ folder with real MNIST (fetched once, as the datamodules tests do)."""
    fetch(SPECS["mnist"], REPO_DATA)
    return REPO_DATA


@pytest.fixture(scope="session")
def mnist_classifier_checkpoint(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A small FC net trained 2 epochs on 2,000 MNIST images and saved by Lightning."""
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
