"""TransferRobustness: how adversarial examples transfer to and from a model while it trains.

Szegedy et al. (2013), Tables 2 and 4: adversarial examples made for one network are
misclassified by other networks too. This callback measures it live, against a zoo of
trained models (checkpoints): every few epochs it makes adversarial examples for the model in
training on a fixed subset of the validation examples and measures every zoo model's error
on them, and the model's error on the zoo's adversarial sets of the same examples (made once,
in ``setup``, since the zoo does not change). Built from :mod:`analysis.transfer`.

What is logged (``transfer/`` by default), at the end of every ``every_n_epochs``-th training
epoch (after that epoch's validation, when there is one; the paper's full-training-set
presets have none, so the callback does not wait for a validation loop):

- scalars through ``pl_module.log``: ``transfer/model->TARGET`` (the error of each zoo model
  on the model's examples; ``model->model`` is the attack's success rate),
  ``transfer/SOURCE->model`` (the model's error on each zoo model's examples),
  ``transfer/distortion`` (the average distortion of the model's examples), and their means
  ``transfer/to_zoo`` and ``transfer/from_zoo``;
- to W&B (rank zero, when a ``WandbLogger`` is attached): the source-by-target error table
  (``wandb.Table``, every zoo model and the model, each row's distortion), its heatmap and a
  grid of examples (original, magnified perturbation, adversarial, predicted labels).

Under DDP every process attacks its share of the subset; the counts are reduced with
torchmetrics (:class:`trainers.ErrorRate`), every process makes the same collective calls in
the same order, and only rank zero writes tables and images. With an empty zoo the callback
does nothing at all (no attack is run): the model's own adversarial error is what the
backfeed callback's ``val/adv_error`` measures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import SumMetric
from typing_extensions import override

from intriguing.analysis.plots import figure_pixels
from intriguing.analysis.transfer import (
    AdversarialCache,
    PerturbedSet,
    TransferRow,
    TransferTable,
    adversarial_set,
    check_transfer_attack,
    checkpoint_names,
    example_grid,
    predictions,
)
from intriguing.configs import ConfigError
from intriguing.trainers import ErrorRate, load_classifier
from intriguing.trainers.stages import StagedNetwork

MODEL = "model"  # the name of the model in training in tables and logged keys


class TransferRobustness(Callback):
    """Transfer of adversarial examples between the model in training and a zoo.

    Args:
        zoo: checkpoints of trained :class:`~trainers.ImageClassifier` models, as paths
            (named after their experiment folder or file) or a mapping ``name -> path``.
        every_n_epochs: measure after every n-th training epoch.
        subset: examples attacked (the first ones of ``split``, shared out among processes).
        attack: the attack (an ``AttackConfig`` mapping for :func:`attacks.build_attack`;
            default the paper's L-BFGS), on the input.
        split: ``val``, ``test`` (or any split of the data module's ``tensors``), or ``auto``:
            ``val`` when the data module holds validation examples out, else ``test``.
        grid_examples: examples per set in the logged image grid (0: no grid).
        cache_dir: cache the zoo's adversarial sets there (:class:`AdversarialCache`).
        batch_size: examples per attack batch.
        seed: seed of random attacks.
        prefix: prefix of the logged names.
    """

    def __init__(
        self,
        zoo: Sequence[str | Path] | Mapping[str, str | Path] = (),
        *,
        every_n_epochs: int = 1,
        subset: int = 500,
        attack: Mapping[str, Any] | None = None,
        split: str = "auto",
        grid_examples: int = 8,
        cache_dir: str | Path | None = None,
        batch_size: int = 500,
        seed: int = 0,
        prefix: str = "transfer/",
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ConfigError(f"transfer.every_n_epochs={every_n_epochs}: must be at least 1")
        if subset < 1:
            raise ConfigError(f"transfer.subset={subset}: must be at least 1")
        if grid_examples < 0:
            raise ConfigError(f"transfer.grid_examples={grid_examples}: must be >= 0")
        if isinstance(zoo, Mapping):
            self.zoo = {str(name): Path(path) for name, path in zoo.items()}
        else:
            paths = [Path(path) for path in zoo]
            self.zoo = dict(zip(checkpoint_names(paths), paths, strict=True))
        if MODEL in self.zoo:
            raise ConfigError(f"transfer.zoo: the name {MODEL!r} is the model in training's")
        try:
            self.attack = check_transfer_attack(attack or {"name": "lbfgs"})
        except ValueError as error:
            raise ConfigError(f"transfer.{error}") from None
        self.every_n_epochs = int(every_n_epochs)
        self.subset = int(subset)
        self.split = str(split)
        self.grid_examples = int(grid_examples)
        self.cache = AdversarialCache(cache_dir) if cache_dir else None
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.prefix = prefix

        self.history: list[dict[str, Any]] = []
        self.last: TransferTable | None = None
        self._models: dict[str, nn.Module] = {}
        self._sets: dict[str, PerturbedSet] = {}
        self._images: Tensor | None = None
        self._labels: Tensor | None = None
        self._zoo_errors: dict[tuple[str, str], float] = {}
        self._zoo_distortion: dict[str, float] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(zoo=tuple(self.zoo), prefix=self.prefix)

    # ----------------------------------------------------------------------------- set-up

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Load the zoo once, choose this process's examples, make the zoo's sets."""
        if stage != "fit" or not self.zoo:
            if stage == "fit":
                rank_zero_info("TransferRobustness: the zoo is empty, nothing to measure")
            return
        network = getattr(pl_module, "network", None)
        if not isinstance(network, StagedNetwork):
            raise ConfigError(
                f"transfer: the model must be an ImageClassifier (a staged network), "
                f"not {type(pl_module).__name__}"
            )
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "tensors"):
            raise ConfigError("transfer: needs a data module with tensors(split) (datamodules/)")
        images, labels = datamodule.tensors(self._choose_split(datamodule))
        rank, world = trainer.global_rank, trainer.world_size
        mine = torch.arange(min(self.subset, len(labels)))[rank::world]
        device = trainer.strategy.root_device
        self._images = images[mine.to(images.device)].detach().clone().to(device)
        self._labels = labels[mine.to(labels.device)].detach().clone().to(device)
        self._models = {}
        for name, path in self.zoo.items():
            classifier = load_classifier(path, input_shape=network.input_shape)
            if classifier.network.num_classes != network.num_classes:
                raise ConfigError(
                    f"transfer.zoo: checkpoint {path} predicts "
                    f"{classifier.network.num_classes} classes, the model {network.num_classes}"
                )
            self._models[name] = classifier.network.to(device).eval().requires_grad_(False)
        self._sets = {
            name: adversarial_set(
                model,
                self._images,
                self._labels,
                self.attack,
                name=name,
                checkpoint=self.zoo[name],
                cache=self.cache,
                batch_size=self.batch_size,
                seed=self.seed,
            )
            for name, model in self._models.items()
        }
        self._measure_zoo(device)

    def _choose_split(self, datamodule: Any) -> str:
        if self.split != "auto":
            return self.split
        has_validation = len(datamodule.tensors("val")[1]) > 0
        return "val" if has_validation else "test"

    def _measure_zoo(self, device: torch.device) -> None:
        """Zoo model on zoo set, reduced over processes: these cells never change."""
        errors = {}
        for source, entry in self._sets.items():
            for target, model in self._models.items():
                errors[source, target] = self._error(model, entry, device)
        self._zoo_errors = {cell: float(metric.compute()) for cell, metric in errors.items()}
        self._zoo_distortion = {
            name: self._mean_distortion(entry, device) for name, entry in self._sets.items()
        }

    def _error(self, model: nn.Module, entry: PerturbedSet, device: torch.device) -> ErrorRate:
        metric = ErrorRate().to(device)
        metric.update(predictions(model, entry.perturbed, batch_size=1000), entry.labels)
        return metric

    @staticmethod
    def _mean_distortion(entry: PerturbedSet, device: torch.device) -> float:
        """Average distortion of the counted examples over all processes (collective)."""
        total, count = SumMetric().to(device), SumMetric().to(device)
        counted = entry.distortion[entry.counted]
        total.update(counted.sum().double())
        count.update(torch.tensor(float(len(counted)), dtype=torch.float64, device=device))
        reduced = float(count.compute())
        return float(total.compute()) / reduced if reduced else math.nan

    # -------------------------------------------------------------------------- measuring

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._models or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        table, own = self.measure(pl_module.network)  # type: ignore[arg-type]
        self.last = table
        scalars = self._scalars(table)
        pl_module.log_dict(scalars, on_step=False, on_epoch=True, sync_dist=False)
        self.history.append({"epoch": int(trainer.current_epoch), **scalars})
        if trainer.is_global_zero:
            self._log_rich(trainer, pl_module.network, table, own)  # type: ignore[arg-type]

    def measure(self, network: nn.Module) -> tuple[TransferTable, PerturbedSet]:
        """The source-by-target error table with the model in training as ``model``, and the
        model's adversarial examples of this process. Every process must call it."""
        assert self._images is not None and self._labels is not None
        device = self._images.device
        own = adversarial_set(
            network,
            self._images,
            self._labels,
            self.attack,
            name=MODEL,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        targets = {MODEL: network, **self._models}
        to_targets = {name: self._error(model, own, device) for name, model in targets.items()}
        from_zoo = {name: self._error(network, entry, device) for name, entry in self._sets.items()}
        own_row = {name: float(metric.compute()) for name, metric in to_targets.items()}
        into_model = {name: float(metric.compute()) for name, metric in from_zoo.items()}
        distortion = self._mean_distortion(own, device)
        names = list(targets)
        rows = [
            TransferRow(
                name=MODEL,
                kind="adversarial",
                errors=[own_row[name] for name in names],
                distortion=distortion,
                examples=self.subset,
                source=MODEL,
                success_rate=own_row[MODEL],
            )
        ]
        for source in self._models:
            errors = [into_model[source], *(self._zoo_errors[source, t] for t in self._models)]
            rows.append(
                TransferRow(
                    name=source,
                    kind="adversarial",
                    errors=errors,
                    distortion=self._zoo_distortion[source],
                    examples=self.subset,
                    source=source,
                    success_rate=self._zoo_errors[source, source],
                )
            )
        title = f"Error of each column model on the examples made for each row ({self.attack})"
        return TransferTable(targets=names, rows=rows, title=title), own

    def _scalars(self, table: TransferTable) -> dict[str, float]:
        zoo = list(self._models)
        values = {f"{self.prefix}{MODEL}->{t}": table.error(MODEL, t) for t in table.targets}
        values.update({f"{self.prefix}{s}->{MODEL}": table.error(s, MODEL) for s in zoo})
        values[f"{self.prefix}distortion"] = table.rows[0].distortion
        values[f"{self.prefix}to_zoo"] = sum(table.error(MODEL, t) for t in zoo) / len(zoo)
        values[f"{self.prefix}from_zoo"] = sum(table.error(s, MODEL) for s in zoo) / len(zoo)
        return values

    def _log_rich(
        self,
        trainer: pl.Trainer,
        network: nn.Module,
        table: TransferTable,
        own: PerturbedSet,
    ) -> None:
        """The table, its heatmap and the example grid to every W&B logger (rank zero)."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        records = table.records()
        columns = list(records[0])
        data = [[record[c] for c in columns] for record in records]
        images = {f"{self.prefix}heatmap": figure_pixels(table.heatmap()).numpy()}
        if self.grid_examples and len(own):
            sets = [own, *self._sets.values()]
            grid = example_grid(sets, {MODEL: network, **self._models}, count=self.grid_examples)
            images[f"{self.prefix}examples"] = figure_pixels(grid).numpy()
        for logger in loggers:
            logger.log_table(f"{self.prefix}table", columns, data, step=trainer.global_step)
            for key, pixels in images.items():
                logger.log_image(key, [pixels], step=trainer.global_step)

    # ------------------------------------------------------------------------------ state

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(entry) for entry in self.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(entry) for entry in state_dict.get("history", [])]


def transfer_callbacks(config: Any) -> list[Callback]:
    """``[TransferRobustness(...)]`` when ``config.transfer.enabled``, else ``[]``."""
    section = config.transfer
    if not section.enabled:
        return []
    from intriguing.configs import to_container

    values = to_container(config)["transfer"]
    return [
        TransferRobustness(
            values["zoo"],
            every_n_epochs=values["every_n_epochs"],
            subset=values["subset"],
            attack=values["attack"],
            split=values["split"],
            grid_examples=values["grid_examples"],
            cache_dir=values["cache_dir"],
            batch_size=values["batch_size"],
            seed=config.seed,
        )
    ]
