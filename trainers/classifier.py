"""The LightningModule that trains every classifier of the project (FC, AE400-10, conv)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import MeanMetric

from intriguing.trainers.families import DEFAULT_FAMILY, family_entry
from intriguing.trainers.metrics import ErrorRate
from intriguing.trainers.networks import build_network, decay_groups
from intriguing.trainers.stages import StagedNetwork

#: The optimizers and learning-rate schedules ``optim.name`` and ``optim.schedule`` may name.
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
SCHEDULES: tuple[str, ...] = ("none", "cosine", "step")


def check_optim(optim: Mapping[str, Any]) -> None:
    """Refuse, before any training, an ``optim`` mapping that
    :meth:`ImageClassifier.configure_optimizers` would refuse only when fitting starts: an
    optimizer or schedule not known, a learning rate, momentum or step size out of range.

    Raises:
        ValueError: naming ``optim.KEY`` and its value (``"optim.name='rmsprop': expected one
            of adam, sgd"``).
    """
    name, schedule = optim.get("name", "adam"), optim.get("schedule", "none")
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name={name!r}: expected one of {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule={schedule!r}: expected one of {', '.join(SCHEDULES)}")
    for key, least, default in (("lr", 0.0, 1e-3), ("momentum", 0.0, 0.9), ("gamma", 0.0, 0.1)):
        value = optim.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= least:
            raise ValueError(f"optim.{key}={value!r}: must be a number >= {least}")
    step_epochs = optim.get("step_epochs", 10)
    if not isinstance(step_epochs, int) or isinstance(step_epochs, bool) or step_epochs < 1:
        raise ValueError(f"optim.step_epochs={step_epochs!r}: must be an integer >= 1")


class ImageClassifier(LightningModule):
    """A :class:`~trainers.stages.StagedNetwork` trained with cross-entropy.

    The objective is the mean cross-entropy plus ``lambda_k / 2 * ||W_k||^2`` for each weighted
    layer k (the paper's per-layer weight decay, ``model.weight_decay``). Logs ``train/loss``,
    ``train/error``, ``val/loss``, ``val/error``, ``test/loss`` and ``test/error``; errors are
    :class:`~trainers.metrics.ErrorRate` metrics, exact under DDP.

    The training loss is the mean cross-entropy over the whole batch it gets, so examples a
    callback appends to the batch (``callbacks.AdversarialBackfeed``) are trained on. Such a
    batch carries ``clean_size``, its leading clean rows: ``train/error`` and ``train/loss``
    are accumulated over those (the loss as the step's loss, weighted by the clean rows).

    Args:
        model: the ``model`` section of the configuration (family, widths, weight decay, ...).
        optim: the ``optim`` section (optimizer, learning rate, schedule).
        input_shape: one example's shape, e.g. ``(1, 28, 28)``.
        num_classes: number of classes.

    Raises:
        ValueError: for ``optim`` settings :meth:`configure_optimizers` would refuse
            (:func:`check_optim`), at construction rather than when fitting starts.
    """

    def __init__(
        self,
        *,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        input_shape: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        check_optim(optim)
        # Saved into checkpoints (plain values, so they load with weights_only); not sent to
        # the logger, which gets the run's whole config.
        self.save_hyperparameters(logger=False)
        self.model_config = dict(model)
        self.optim_config = dict(optim)
        self.network: StagedNetwork = build_network(self.model_config, input_shape, num_classes)
        family = family_entry(str(self.model_config.get("family", DEFAULT_FAMILY)))
        for stage in family.frozen_stages(self.model_config):  # AE400-10's code, unless fine-tuned
            self.network.stages[stage].requires_grad_(False)
        self.train_error = ErrorRate()
        self.train_loss = MeanMetric()
        self.val_error = ErrorRate()
        self.test_error = ErrorRate()
        self._reset_epoch_sums()

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self.network(x)
        loss = F.cross_entropy(logits, y)
        # A batch with examples appended by a callback (AdversarialBackfeed) says how many of
        # its leading rows are the clean batch; the epoch's train/error is theirs.
        clean = int(getattr(batch, "clean_size", len(y)))
        logits, y = logits[:clean], y[:clean]
        # A small model's step costs about as much as Lightning's log() or a torchmetrics
        # update: per step only sums are kept (on the device, no synchronisation); they go
        # into the DDP-reduced metrics once per epoch (on_train_epoch_end), and the step
        # loss out only as often as the logger writes.
        with torch.no_grad():  # in place: assigning a module attribute costs more than this
            self._epoch_sums[0] += (logits.argmax(dim=1) != y).sum()
            self._epoch_sums[1] += loss.detach() * len(y)
            self._epoch_sums[2] += len(y)
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/step_loss", loss, prog_bar=True)
        return loss

    def _reset_epoch_sums(self) -> None:
        """Wrong predictions, summed loss and examples of the clean batches this epoch."""
        self._epoch_sums = torch.zeros(3, device=self.device)  # float32: exact counts to 2**24

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_sums()

    def on_train_epoch_end(self) -> None:
        """Clean-batch error and mean loss of the epoch, reduced over processes; not logged
        when no process had a clean row (every row adversarial: AdversarialBackfeed with
        ``mix="replace"`` and ``mix_ratio=1``), rather than a meaningless 0."""
        wrong, loss_sum, count = self._epoch_sums.tolist()
        if count:
            self.train_error.update(wrong=int(wrong), total=int(count))
            self.train_loss.update(loss_sum / count, weight=count)
        clean_rows = self.trainer.strategy.reduce(self._epoch_sums[2].clone(), reduce_op="sum")
        if not float(clean_rows):
            return
        self.log("train/loss", self.train_loss)
        self.log("train/error", self.train_error)

    def _evaluate(self, batch: Sequence[Tensor], stage: str, metric: ErrorRate) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self.network(x)
        loss = F.cross_entropy(logits, y)
        metric.update(logits, y)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log(f"{stage}/error", metric, prog_bar=True)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val", self.val_error)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test", self.test_error)

    def configure_optimizers(self) -> Any:
        groups = decay_groups(self.network, self.model_config.get("weight_decay", [0.0]))
        name = self.optim_config.get("name", "adam")
        lr = float(self.optim_config.get("lr", 1e-3))
        if name == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(groups, lr=lr)
        elif name == "sgd":
            momentum = float(self.optim_config.get("momentum", 0.9))
            nesterov = bool(self.optim_config.get("nesterov", True)) and momentum > 0
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
        else:
            raise ValueError(f"optim.name {name!r}: expected adam or sgd")
        schedule = self.optim_config.get("schedule", "none")
        if schedule == "none":
            return optimizer
        if schedule == "cosine":
            epochs = max(1, int(self.trainer.max_epochs or 1))
            scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        elif schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer,
                step_size=int(self.optim_config.get("step_epochs", 10)),
                gamma=float(self.optim_config.get("gamma", 0.1)),
            )
        else:
            raise ValueError(f"optim.schedule {schedule!r}: expected none, cosine or step")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
