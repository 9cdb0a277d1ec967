"""Shared test set-up: W&B offline into a temporary folder, small thread counts, seeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

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
    """Every test runs offline, writes below its own tmp_path and starts from seed 0."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
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
