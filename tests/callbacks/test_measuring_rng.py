"""Measuring callbacks leave the training run as it was: with shuffled training data, a run
with TransferRobustness (or backfeed's PGD val_attack, with nothing mixed in) trains exactly
the weights a run without it trains (the global generator, which shuffles later epochs, is
untouched by their loaders and random attacks)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from intriguing.callbacks import AdversarialBackfeed, TransferRobustness
from intriguing.callbacks.rng import untouched_rng


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 1, 4, 4, generator=generator)
    return TensorDataset(x, (x.mean((1, 2, 3)) * 6).long().clamp(0, 2))


def _train(tmp_path: Path, callbacks: list[pl.Callback]) -> dict[str, Tensor]:
    torch.manual_seed(0)
    module = Tiny()
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        inference_mode=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    train = DataLoader(_data(64, 0), batch_size=16, shuffle=True)
    trainer.fit(module, train, DataLoader(_data(32, 1), batch_size=8))
    return {name: value.clone() for name, value in module.state_dict().items()}


def _zoo() -> dict[str, nn.Module]:
    return {"mlp": nn.Sequential(nn.Flatten(), nn.Linear(16, 3))}


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransferRobustness(_zoo(), subset=16, attack={"name": "pgd"}, grid_examples=0),
        lambda: AdversarialBackfeed(
            pool_size=32,
            mix_ratio=0.0,
            generator={"name": "fgsm"},
            val_attack={"name": "pgd", "steps": 2},
            val_subset=16,
        ),
    ],
    ids=["transfer", "backfeed-val-attack"],
)
def test_a_measuring_callback_does_not_change_the_trained_weights(tmp_path: Path, make) -> None:
    without = _train(tmp_path, [])
    with_callback = _train(tmp_path, [make()])
    for name, value in without.items():
        torch.testing.assert_close(with_callback[name], value, rtol=0, atol=0, msg=name)


def test_untouched_rng_restores_the_global_state() -> None:
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with untouched_rng(torch.device("cpu")):
        torch.rand(5)
    torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)
