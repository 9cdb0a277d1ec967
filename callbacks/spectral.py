"""SpectralMonitor: the per-layer Lipschitz bounds of a model while it trains.

Szegedy et al. (2013, Section 4.3) bound a network's instability by the product of its layers'
operator norms. Logged every few epochs, these bounds show how weight decay and adversarial
backfeeding change each layer's worst-case amplification, next to the empirical minimum
distortion. The numbers come from :func:`analysis.spectral.network_bounds`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from typing_extensions import override

from intriguing.analysis.spectral import SpectralBounds, network_bounds
from intriguing.trainers.stages import StagedNetwork


class SpectralMonitor(Callback):
    """Logs ``spectral/<stage>`` and ``spectral/product`` every ``every_n_epochs`` epochs.

    The bounds are those of ``pl_module.network`` (a :class:`~trainers.stages.StagedNetwork`)
    in eval mode, computed after the epoch's training steps. Convolutions use Lanczos
    iteration warm-started from the previous epoch's top singular vectors (``dense_limit=0``
    by default), so each call costs a few dozen convolutions per layer. Every rank computes
    the same numbers from the same weights and the same seed, with no collective calls;
    scalars go through ``pl_module.log``, and rank zero also logs a ``wandb.Table`` of every
    primitive layer when a :class:`~lightning.pytorch.loggers.WandbLogger` is attached.

    Args:
        every_n_epochs: compute after every n-th training epoch.
        dense_limit, tol, max_iter: passed to :func:`~analysis.spectral.network_bounds`.
        seed: seed of the first starting vectors.
        log_table: log the per-layer table to W&B (rank zero).
        prefix: prefix of the logged names.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        *,
        dense_limit: int = 0,
        tol: float = 1e-6,
        max_iter: int = 300,
        seed: int = 0,
        log_table: bool = True,
        prefix: str = "spectral/",
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs}: must be at least 1")
        self.every_n_epochs = every_n_epochs
        self.dense_limit, self.tol, self.max_iter, self.seed = dense_limit, tol, max_iter, seed
        self.log_table = log_table
        self.prefix = prefix
        self.vectors: dict[str, Tensor] = {}
        self.history: list[dict[str, float]] = []
        self.last: SpectralBounds | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(every_n_epochs=self.every_n_epochs, prefix=self.prefix)

    @staticmethod
    def _network(pl_module: pl.LightningModule) -> StagedNetwork:
        network = getattr(pl_module, "network", None)
        if not isinstance(network, StagedNetwork):
            raise ValueError(
                f"SpectralMonitor needs a module whose .network is a StagedNetwork; "
                f"{type(pl_module).__name__}.network is {type(network).__name__}"
            )
        return network

    def compute(self, network: StagedNetwork) -> SpectralBounds:
        """The bounds of ``network`` now, warm-started from (and updating) ``self.vectors``."""
        return network_bounds(
            network,
            warm_start=self.vectors,
            dense_limit=self.dense_limit,
            tol=self.tol,
            max_iter=self.max_iter,
            seed=self.seed,
        )

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Refuse an unsupported model before training starts, and find the starting vectors.
        if stage == "fit":
            self.compute(self._network(pl_module))

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        bounds = self.compute(self._network(pl_module))
        self.last = bounds
        values = bounds.summary(self.prefix)
        self.history.append({"epoch": float(trainer.current_epoch), **values})
        pl_module.log_dict(values, on_step=False, on_epoch=True)
        if self.log_table and trainer.is_global_zero:
            rows = bounds.rows()
            columns = list(rows[0])
            data = [[row[c] for c in columns] for row in rows]
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_table(f"{self.prefix}layers", columns, data)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "vectors": dict(self.vectors),
            "history": [dict(entry) for entry in self.history],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.vectors = dict(state_dict.get("vectors", {}))
        self.history = [dict(entry) for entry in state_dict.get("history", [])]
