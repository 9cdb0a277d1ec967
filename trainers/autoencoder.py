"""Pretraining of AE400-10's sparse sigmoid autoencoder, a Lightning run of its own.

Szegedy et al. (2013) train "a 400-unit sigmoid sparse autoencoder" on MNIST's images and a
softmax classifier on its code (AE400-10, Table 1). The loss here is the per-image squared
reconstruction error, plus ``sparsity_weight`` times the KL divergence between the target mean
activation ``rho`` and each code unit's mean activation over the batch, plus L2 weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import MeanMetric

from intriguing.trainers.networks import sparse_decoder, sparse_encoder


def kl_sparsity(code: Tensor, target: float) -> Tensor:
    """``sum_j KL(rho || rho_hat_j)`` with ``rho_hat_j`` unit j's mean activation in the batch."""
    rho_hat = code.mean(dim=0).clamp(1e-6, 1 - 1e-6)
    rho = torch.full_like(rho_hat, target)
    return (rho * (rho / rho_hat).log() + (1 - rho) * ((1 - rho) / (1 - rho_hat)).log()).sum()


class SparseAutoencoder(LightningModule):
    """Sparse sigmoid autoencoder; its ``encoder`` is the ``code`` stage of AE400-10."""

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        hidden: int = 400,
        sparsity_target: float = 0.05,
        sparsity_weight: float = 0.1,
        weight_decay: float = 1e-6,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        # Saved into checkpoints (plain values, so they load with weights_only); not sent to
        # the logger, which gets the run's whole config.
        self.save_hyperparameters(logger=False)
        self.encoder = sparse_encoder(input_shape, hidden)
        self.decoder = sparse_decoder(input_shape, hidden)
        self.val_reconstruction = MeanMetric()

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def _losses(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encoder(x)
        reconstruction = (self.decoder(code) - x).pow(2).flatten(1).sum(dim=1).mean()
        return reconstruction, kl_sparsity(code, self.hparams["sparsity_target"])

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        reconstruction, sparsity = self._losses(batch[0])
        loss = reconstruction + self.hparams["sparsity_weight"] * sparsity
        self.log("pretrain/reconstruction", reconstruction, prog_bar=True)
        self.log("pretrain/sparsity", sparsity)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        reconstruction, _ = self._losses(batch[0])
        self.val_reconstruction.update(reconstruction, weight=len(batch[0]))
        self.log("val/reconstruction", self.val_reconstruction, prog_bar=True)

    def configure_optimizers(self) -> Any:
        decayed = [self.encoder[1].weight, self.decoder[0].weight]
        ids = {id(p) for p in decayed}
        free = [p for p in self.parameters() if id(p) not in ids]
        return torch.optim.Adam(
            [
                {"params": decayed, "weight_decay": self.hparams["weight_decay"]},
                {"params": free, "weight_decay": 0.0},
            ],
            lr=self.hparams["lr"],
        )
