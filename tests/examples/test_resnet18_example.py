"""The worked example (examples/resnet18_cifar10.py) runs: a user's own LightningModule around
torchvision's ResNet-18 with all three callbacks, pools at the input and at ``layer3``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resnet18_cifar10.py"


def load_example():
    spec = importlib.util.spec_from_file_location("resnet18_cifar10", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_trains_with_all_three_callbacks(monkeypatch):
    example = load_example()
    seen: dict[str, list] = {"batch_sizes": []}
    made: list = []
    original_callbacks = example.callbacks
    original_step = example.CifarResNet.training_step

    def record_callbacks(zoo, **options):
        made.extend(original_callbacks(zoo, **options))
        return made

    def record_step(self, batch, batch_idx):
        seen["batch_sizes"].append(len(batch[0]))
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(example, "callbacks", record_callbacks)
    monkeypatch.setattr(example.CifarResNet, "training_step", record_step)
    argv = ["--synthetic", "96", "--image-size", "8", "--epochs", "1", "--batch-size", "16"]
    seconds = example.main([*argv, "--quiet"])
    assert len(seconds["plain"]) == len(seconds["callbacks"]) == 1
    backfeed, transfer, spectral = made
    # Pools at the input and at layer3 were filled, and their examples reached training_step:
    # the backfed run's batches (the second half of the recorded steps) grew by the mix.
    assert set(backfeed.pools) == {"input", "layer3"}
    assert all(pool.size > 0 for pool in backfeed.pools.values())
    plain_steps = seen["batch_sizes"][: len(seen["batch_sizes"]) // 2]
    backfed_steps = seen["batch_sizes"][len(seen["batch_sizes"]) // 2 :]
    assert set(plain_steps) == {16}
    # mix_ratio 0.5 per pool, both pools in every step: 16 clean rows, and at most 8 from
    # each pool (fewer while a pool holds fewer examples).
    assert backfed_steps and all(16 < size <= 16 + 8 + 8 for size in backfed_steps)
    # Transfer to and from the plain twin, and the spectral bound, were measured.
    assert transfer.last is not None
    assert spectral.last is not None
    assert torch.isfinite(torch.tensor(spectral.last.network))
