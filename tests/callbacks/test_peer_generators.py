"""A torchattacks attack as AdversarialBackfeed's generator and as a transfer attack, through
PeerAttack (issue 12: a torchattacks attack as a generator failed with 'Tensor' object has no
attribute 'success')."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from intriguing.analysis.transfer import attack_examples
from intriguing.callbacks import AdversarialBackfeed

pytest.importorskip("torchattacks")

PGD = {"name": "torchattacks.PGD", "eps": 0.3, "alpha": 0.1, "steps": 3}


class Plain(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        self.sizes.append(len(x))
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def data(count: int = 128) -> TensorDataset:
    x = torch.rand(count, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x.mean(dim=(1, 2, 3)) > 0.5).long())


def test_torchattacks_pgd_as_the_backfeed_generator(tmp_path: Path) -> None:
    module = Plain()
    backfeed = AdversarialBackfeed(
        pool_size=64, mix_ratio=0.5, refresh_fraction=0.5, generator=PGD, val_attack=None
    )
    trainer = pl.Trainer(
        callbacks=[backfeed],
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data(), batch_size=32))
    assert module.sizes == [48, 48, 48, 48]
    pool = backfeed.pools["input"]
    assert pool.size > 0
    assert module.training


def test_misspelt_peer_generator_is_refused_in_the_constructor() -> None:
    with pytest.raises(ValueError, match=r"generator.*epsilon"):
        AdversarialBackfeed(pool_size=64, generator={**PGD, "epsilon": 0.1})


def test_torchattacks_attack_for_transfer_examples() -> None:
    model = Plain().net.eval()
    x, y = data(16).tensors
    perturbed, success = attack_examples(model, x, y, PGD)
    assert perturbed.shape == x.shape
    assert float((perturbed - x).abs().max()) <= 0.3 + 1e-6
    with torch.no_grad():
        assert torch.equal(success, model(perturbed).argmax(1) != y)


def fit(generator, tmp_path: Path) -> AdversarialBackfeed:
    backfeed = AdversarialBackfeed(
        pool_size=64, mix_ratio=0.5, refresh_fraction=0.5, generator=generator, val_attack=None
    )
    trainer = pl.Trainer(
        callbacks=[backfeed],
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(Plain(), DataLoader(data(), batch_size=32))
    return backfeed


def test_a_factory_returning_a_torchattacks_attack(tmp_path: Path) -> None:
    """The issue's failure: a factory's torchattacks attack returned a bare tensor."""
    import torchattacks

    def make(model: nn.Module, layer: str):
        return torchattacks.PGD(model, eps=0.3, alpha=0.1, steps=3)

    assert fit(make, tmp_path).pools["input"].size > 0


def test_a_torchattacks_attack_given_itself(tmp_path: Path) -> None:
    import torchattacks

    peer = torchattacks.FGSM(nn.Linear(2, 2), eps=0.3)  # run on the trained module instead
    assert fit(peer, tmp_path).pools["input"].size > 0
