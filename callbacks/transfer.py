"""TransferRobustness: how adversarial examples transfer to and from a model while it trains.

Szegedy et al. (2013), Tables 2 and 4: adversarial examples made for one network are
misclassified by other networks too. This callback measures it live, against a zoo of
trained models: it makes adversarial examples for the model in training on a fixed subset of
examples and measures every zoo model's error on them, and the model's error on the zoo's
adversarial sets of the same examples (made once per run stage, since the zoo does not
change). Built from :mod:`analysis.transfer`.

It works with any LightningModule in a plain ``lightning.Trainer``: the model in training is
``pl_module`` itself, called as ``pl_module(x)`` and expected to return logits ``(N,
classes)``; the zoo is any ``nn.Module`` objects, checkpoints of any LightningModule class,
or checkpoints of this project's :class:`~trainers.ImageClassifier`; the examples come from
``examples=`` (a pair of tensors or a data set), else this project's data module
(``tensors(split)``), else the trainer's validation loader (test loader in ``trainer.test``).

When it measures (``stages``): in ``fit``, at the end of every ``every_n_epochs``-th training
epoch (after that epoch's validation, when there is one; the paper's full-training-set
presets have none, so the callback does not wait for a validation loop); in
``trainer.validate``, once, at the end of the validation epoch; in ``trainer.test`` only when
asked (``stages`` holding ``"test"``: a test that follows training, as ``intriguing train``
runs it, would otherwise replace the figures of the trained model's last epoch); in
``trainer.predict``, never. What is logged (``transfer/`` by default):

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

import contextlib
import math
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler
from torchmetrics import SumMetric
from typing_extensions import override

from intriguing.analysis.plots import figure_pixels
from intriguing.analysis.transfer import (
    AdversarialCache,
    PerturbedSet,
    PixelInput,
    TransferRow,
    TransferTable,
    adversarial_set,
    check_transfer_attack,
    checkpoint_names,
    example_grid,
    model_input,
    predictions,
)
from intriguing.attacks import evaluating
from intriguing.callbacks.batches import BatchKey, batch_entry, check_batch_key
from intriguing.callbacks.registry import callback_entry
from intriguing.callbacks.rng import untouched_rng
from intriguing.configs import building, to_container
from intriguing.trainers import ErrorRate, load_classifier
from intriguing.trainers.checkpoints import load_lightning_module

MODEL = "model"  # the name of the model in training in tables and logged keys
STAGES = ("fit", "validate", "test")  # the run stages that can measure
#: A zoo entry: a checkpoint of this project's ImageClassifier (a path), a module, or
#: ``{"checkpoint": PATH, "target": "package.module:LightningModuleClass"}``.
ZooEntry = str | Path | nn.Module | Mapping[str, Any]
Examples = tuple[Tensor, Tensor] | Sequence[Tensor] | Dataset
_ZOO_KEYS = ("checkpoint", "target")


class TransferRobustness(Callback):
    """Transfer of adversarial examples between the model in training and a zoo.

    Args:
        zoo: the models to compare with, each named: a sequence of checkpoint paths of this
            project's :class:`~trainers.ImageClassifier` (named after their experiment folder
            or file), or a mapping ``name -> entry``, an entry being such a path, any
            ``nn.Module`` (moved to the training device and put in eval mode, in place), or
            ``{"checkpoint": PATH, "target": "package.module:ClassName"}`` (or the class
            itself), a checkpoint of any LightningModule class, loaded with
            ``ClassName.load_from_checkpoint(PATH, map_location=..., weights_only=True)``
            (without ``target``: an ImageClassifier).
            Every zoo model maps inputs ``(N, ...)`` to logits ``(N, classes)``, as
            ``pl_module(x)`` does.
        every_n_epochs: in ``fit``, measure after every n-th training epoch.
        stages: the run stages that measure, among ``"fit"``, ``"validate"`` and ``"test"``
            (once at the end of the test epoch, on the test loader's examples or the data
            module's ``test`` split when ``examples`` is not given).
        subset: examples attacked (the first ones of the source, shared out among processes).
        attack: the attack (an ``AttackConfig`` mapping for :func:`attacks.build_attack`;
            default the paper's L-BFGS), on the input, in pixel units in the box ``[0, 1]``.
        examples: the examples, instead of the trainer's: a pair ``(x, y)`` of tensors
            (inputs ``(N, ...)``, integer labels ``(N,)``) or a sized ``Dataset`` whose items
            are read with ``input_key``/``target_key``. ``None``: this project's data module
            when the trainer has one (``split``), else the trainer's validation loader (the
            test loader in ``trainer.test``), its batches read with ``input_key``/``target_key``.
        split: with this project's data module: ``val``, ``test`` (or any split of its
            ``tensors``), or ``auto``: ``val`` when the data module holds validation examples
            out, else ``test`` (always ``test`` in ``trainer.test``).
        input_key, target_key: where a batch (or data set item) holds the inputs and the
            labels: indices of a tuple/list batch ``(x, y, ...)`` (default 0 and 1) or keys of
            a dict batch (e.g. ``"image"`` and ``"label"``).
        mean, std: the normalisation ``(pixel - mean) / std`` applied to the examples
            outside the models (one value or one per channel), when there is one: examples
            are taken back to pixel units, attacked there (distortions in pixel units), and
            every model gets them normalised (:class:`analysis.transfer.PixelInput`).
            Adversarial sets are then not cached (the cache is keyed by checkpoint only).
        grid_examples: examples per set in the logged image grid (0: no grid).
        cache_dir: cache the zoo's adversarial sets there (:class:`AdversarialCache`); only
            zoo models loaded from checkpoint files are cached.
        batch_size: examples per attack batch.
        seed: seed of random attacks.
        prefix: prefix of the logged names.

    Raises:
        ValueError, TypeError: naming the argument, for a value that cannot be used.
    """

    def __init__(
        self,
        zoo: Sequence[str | Path] | Mapping[str, ZooEntry] = (),
        *,
        every_n_epochs: int = 1,
        stages: Sequence[str] = ("fit", "validate"),
        subset: int = 500,
        attack: Mapping[str, Any] | None = None,
        examples: Examples | None = None,
        split: str = "auto",
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        grid_examples: int = 8,
        cache_dir: str | Path | None = None,
        batch_size: int = 500,
        seed: int = 0,
        prefix: str = "transfer/",
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("every_n_epochs", every_n_epochs, 1),
            ("subset", subset, 1),
            ("grid_examples", grid_examples, 0),
            ("batch_size", batch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}={value!r}: must be an integer")
            if value < least:
                raise ValueError(f"{name}={value}: must be at least {least}")
        self.zoo = _zoo_entries(zoo)
        if isinstance(stages, str) or not set(stages) <= set(STAGES):
            raise ValueError(f"stages={stages!r}: expected a sequence of {', '.join(STAGES)}")
        self.stages = tuple(stages)
        self.attack = check_transfer_attack(attack or {"name": "lbfgs"})
        self.examples = _check_examples(examples)
        check_batch_key(input_key, "input_key")
        check_batch_key(target_key, "target_key")
        if (mean is None) != (std is None):
            raise ValueError(f"mean={mean!r}, std={std!r}: give both or neither")
        self.normalization = None
        if mean is not None and std is not None:
            stats = [_floats(mean, "mean"), _floats(std, "std")]
            PixelInput(nn.Identity(), *stats)  # checks them, naming the argument
            self.normalization = (stats[0], stats[1])
        self.every_n_epochs = every_n_epochs
        self.subset = subset
        self.split = str(split)
        self.input_key, self.target_key = input_key, target_key
        self.grid_examples = grid_examples
        self.cache = AdversarialCache(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.seed = int(seed)
        self.prefix = prefix

        self.history: list[dict[str, Any]] = []
        self.last: TransferTable | None = None
        self._loaded: dict[str, nn.Module] = {}  # the zoo as loaded, kept across stages
        self._models: dict[str, nn.Module] = {}  # the zoo as measured (on device, pixel input)
        self._classes: dict[str, int] = {}
        self._sets: dict[str, PerturbedSet] = {}
        self._stage: str | None = None
        self._images: Tensor | None = None
        self._labels: Tensor | None = None
        self._zoo_errors: dict[tuple[str, str], float] = {}
        self._zoo_distortion: dict[str, float] = {}
        self._model_checked = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(zoo=tuple(self.zoo), prefix=self.prefix)

    # ----------------------------------------------------------------------------- set-up

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Choose this process's examples, load the zoo, make the zoo's sets (collective).

        With examples from the trainer's loaders, which the loops set up only after this
        hook, that happens at the first measurement instead."""
        measured = bool(self.zoo) and stage in self.stages
        self._reset(stage if measured else None)  # no stage: no hook measures
        if not measured:
            if stage == "fit" and not self.zoo:
                rank_zero_info("TransferRobustness: the zoo is empty, nothing to measure")
            return
        if self.examples is not None or _has_tensors(trainer.datamodule):
            with untouched_rng(trainer.strategy.root_device):
                self._prepare(trainer)

    def _reset(self, stage: str | None) -> None:
        self._stage = stage
        self._images = self._labels = None
        self._sets, self._models = {}, {}
        self._model_checked = False

    def _prepare(self, trainer: pl.Trainer) -> None:
        """Examples of this process, the zoo on the device, its sets and fixed cells."""
        if self._images is not None:
            return
        device = trainer.strategy.root_device
        images, labels = self._choose_examples(trainer)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"target_key={self.target_key!r}: the labels must be integer class indices "
                f"of shape (N,), got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        images = images.detach().clone().to(device)
        labels = labels.detach().clone().to(device).long()
        if self.normalization is not None:
            images = PixelInput(nn.Identity(), *self.normalization).to(device).to_pixels(images)
        self._images, self._labels = images, labels
        self._models = {}
        for name in self.zoo:
            model = self._load(name, tuple(images.shape[1:]))
            self._models[name] = self._pixel_input(model.to(device).eval())
        self._classes = self._class_counts(self._models)
        self._sets = {
            name: adversarial_set(
                model,
                self._images,
                self._labels,
                self.attack,
                name=name,
                checkpoint=self._checkpoint_file(name),
                cache=self.cache,
                batch_size=self.batch_size,
                seed=self.seed,
            )
            for name, model in self._models.items()
        }
        self._measure_zoo(device)

    def _load(self, name: str, input_shape: tuple[int, ...]) -> nn.Module:
        """Zoo model ``name``, loaded once (on the CPU) and kept."""
        if name not in self._loaded:
            entry = self.zoo[name]
            if isinstance(entry, nn.Module):
                model = entry
            elif isinstance(entry, Path):
                model = load_classifier(entry, input_shape=input_shape).network
            elif entry.get("target") is None:
                model = load_classifier(entry["checkpoint"], input_shape=input_shape).network
            else:
                model = load_lightning_module(entry["target"], entry["checkpoint"])
            if not isinstance(entry, nn.Module):
                model.requires_grad_(False)
            self._loaded[name] = model
        return self._loaded[name]

    def _checkpoint_file(self, name: str) -> Path | None:
        """The file zoo model ``name`` was loaded from, the key of its cached sets."""
        if self.normalization is not None:
            return None  # the same checkpoint behind another normalisation: not cacheable
        entry = self.zoo[name]
        if isinstance(entry, Path):
            return entry
        return entry["checkpoint"] if isinstance(entry, Mapping) else None

    def _pixel_input(self, model: nn.Module) -> nn.Module:
        return PixelInput(model, *self.normalization) if self.normalization else model

    def _class_counts(self, models: Mapping[str, nn.Module]) -> dict[str, int]:
        """Logits per example of each zoo model; all equal, and above every label. (Not
        known, and not checked, in a process whose share of the examples is empty.)"""
        assert self._images is not None and self._labels is not None
        if not len(self._labels):
            return {}
        counts = {name: _logit_count(model, self._images, name) for name, model in models.items()}
        largest = int(self._labels.max())
        for name, count in counts.items():
            if count != next(iter(counts.values())) or largest >= count:
                raise ValueError(
                    f"zoo[{name!r}] ({self._describe(name)}): predicts {count} classes; the "
                    f"zoo predicts {sorted(set(counts.values()))} and the labels reach {largest}"
                )
        return counts

    def _describe(self, name: str) -> str:
        entry = self.zoo[name]
        if isinstance(entry, nn.Module):
            return type(entry).__name__
        return f"checkpoint {entry if isinstance(entry, Path) else entry['checkpoint']}"

    def _choose_examples(self, trainer: pl.Trainer) -> tuple[Tensor, Tensor]:
        """This process's share of the first ``subset`` examples of the source."""
        rank, world = trainer.global_rank, trainer.world_size
        if self.examples is not None:
            if isinstance(self.examples, Dataset):
                return self._dataset_examples(self.examples, rank, world)
            images, labels = self.examples
        elif _has_tensors(trainer.datamodule):
            datamodule = trainer.datamodule
            images, labels = datamodule.tensors(self._choose_split(datamodule))  # type: ignore[union-attr]
        else:
            return self._loader_examples(trainer)
        mine = torch.arange(min(self.subset, len(labels)))[rank::world]
        return images[mine.to(images.device)], labels[mine.to(labels.device)]

    def _choose_split(self, datamodule: Any) -> str:
        if self.split != "auto":
            return self.split
        if self._stage == "test":
            return "test"
        has_validation = len(datamodule.tensors("val")[1]) > 0
        return "val" if has_validation else "test"

    def _dataset_examples(self, dataset: Dataset, rank: int, world: int) -> tuple[Tensor, Tensor]:
        count = min(self.subset, len(dataset))  # type: ignore[arg-type]
        items = [self._parts(dataset[i], "data set item") for i in range(count)[rank::world]]
        return _stack(items)

    def _loader_examples(self, trainer: pl.Trainer) -> tuple[Tensor, Tensor]:
        """The first examples of the stage's loader (validation; test in ``trainer.test``).

        Under DDP Lightning gives each process a ``DistributedSampler``, which deals example
        ``i`` to process ``i % world``: each takes its part of the first ``subset``."""
        testing = self._stage == "test"
        loaders = trainer.test_dataloaders if testing else trainer.val_dataloaders
        if loaders is None and self._stage == "fit":
            # Not loaded yet (no sanity check, no validation so far): as the loop would; a
            # trainer without any val_dataloader raises, and is refused below.
            with contextlib.suppress(MisconfigurationException):
                trainer.fit_loop.epoch_loop.val_loop.setup_data()
            loaders = trainer.val_dataloaders
        loader = _first_loader(loaders)
        if loader is None:
            which = "test" if testing else "validation"
            raise ValueError(
                f"examples=None: the trainer has no {which} loader to take examples from; "
                "pass examples=(x, y) or a data set"
            )
        rank, world = trainer.global_rank, trainer.world_size
        dataset = getattr(loader, "dataset", None)
        total = min(self.subset, len(dataset)) if isinstance(dataset, Sized) else self.subset
        samplers = (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None))
        sharded = any(
            isinstance(s, DistributedSampler)
            or isinstance(getattr(s, "sampler", None), DistributedSampler)
            for s in samplers
        )
        wanted = len(range(rank, total, world)) if sharded else total
        parts: list[tuple[Tensor, Tensor]] = []
        taken = 0
        for batch in loader:
            if taken >= wanted:
                break
            images, labels = self._parts(batch, "batch")
            parts.append((images[: wanted - taken], labels[: wanted - taken]))
            taken += len(parts[-1][1])
        images, labels = (
            torch.cat([p[0] for p in parts]) if parts else torch.zeros(0),
            torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=torch.long),
        )
        return (images, labels) if sharded else (images[rank::world], labels[rank::world])

    def _parts(self, batch: Any, what: str) -> tuple[Tensor, Tensor]:
        """``(inputs, labels)`` of a batch or data set item, by ``input_key``/``target_key``
        (:func:`~callbacks.batches.batch_entry`), as tensors."""
        images = batch_entry(batch, self.input_key, argument="input_key", what=what)
        labels = batch_entry(batch, self.target_key, argument="target_key", what=what)
        return torch.as_tensor(images), torch.as_tensor(labels)

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
        if self._stage != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        scalars = self._measure_and_log(trainer, pl_module)
        self.history.append({"epoch": int(trainer.current_epoch), **scalars})

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stage == "validate" and not trainer.sanity_checking:
            self._measure_and_log(trainer, pl_module)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stage == "test":
            self._measure_and_log(trainer, pl_module)

    def _measure_and_log(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        """Measure with ``pl_module`` as the model (collective), log, return the scalars."""
        # trainer.validate and trainer.test run hooks in inference mode (Lightning's default):
        # tensors and modules made there could not be attacked. Reading the loader's examples
        # and random attacks draw from the global generator: on a fork, so that measuring does
        # not change the shuffling of later epochs.
        with torch.inference_mode(False), untouched_rng(trainer.strategy.root_device):
            return self._measure_and_log_now(trainer, pl_module)

    def _measure_and_log_now(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        self._prepare(trainer)
        model = self._pixel_input(pl_module)
        if not self._model_checked and self._classes:
            assert self._images is not None
            count = _logit_count(model, self._images, MODEL)
            expected = next(iter(self._classes.values()))
            if count != expected:
                raise ValueError(
                    f"zoo: the zoo predicts {expected} classes, the model in training "
                    f"({type(pl_module).__name__}) {count}"
                )
            self._model_checked = True
        table, own = self.measure(model)
        self.last = table
        scalars = self._scalars(table)
        pl_module.log_dict(scalars, on_step=False, on_epoch=True, sync_dist=False)
        if trainer.is_global_zero:
            self._log_rich(trainer, model, table, own)
        return scalars

    def measure(self, model: nn.Module) -> tuple[TransferTable, PerturbedSet]:
        """The source-by-target error table with ``model`` (the model in training, taking
        pixel-unit inputs) as ``model``, and its adversarial examples of this process.
        Every process must call it, after the examples are prepared."""
        assert self._images is not None and self._labels is not None
        device = self._images.device
        own = adversarial_set(
            model,
            self._images,
            self._labels,
            self.attack,
            name=MODEL,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        targets = {MODEL: model, **self._models}
        to_targets = {name: self._error(target, own, device) for name, target in targets.items()}
        from_zoo = {name: self._error(model, entry, device) for name, entry in self._sets.items()}
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


#: How the ``transfer`` section becomes the callback (intriguing.registry.Binding): every key
#: is the keyword parameter of the same name, save those excluded here with the reason.
#: How the ``transfer`` section becomes the callback (where it is registered:
#: callbacks.registry).
TRANSFER = callback_entry("transfer").binding


def transfer_callbacks(config: Any) -> list[Callback]:
    """``[TransferRobustness(...)]`` when ``config.transfer.enabled``, else ``[]``.

    Raises:
        ConfigError: naming the ``transfer.`` key of a value the callback refuses
            (:func:`intriguing.configs.config_error`).
    """
    if not config.transfer.enabled:
        return []
    with building("transfer"):
        return [TRANSFER(to_container(config)["transfer"], seed=config.seed)]


# --------------------------------------------------------------------------- helpers


def _zoo_entries(zoo: Sequence[str | Path] | Mapping[str, ZooEntry]) -> dict[str, Any]:
    """``name -> Path | nn.Module | {"checkpoint": Path, "target": str | None}``."""
    if isinstance(zoo, Mapping):
        entries = {str(name): _zoo_entry(entry, f"zoo[{name!r}]") for name, entry in zoo.items()}
    elif isinstance(zoo, (str, Path)) or not isinstance(zoo, Sequence):
        raise TypeError(
            f"zoo={zoo!r}: expected a sequence of checkpoint paths or a mapping name -> entry"
        )
    else:
        for index, entry in enumerate(zoo):
            if not isinstance(entry, (str, Path)):
                raise TypeError(
                    f"zoo[{index}]={type(entry).__name__}: a sequence holds checkpoint paths; "
                    "name other models with a mapping name -> model"
                )
        paths = [Path(path) for path in zoo]
        entries = dict(zip(checkpoint_names(paths), paths, strict=True))
    if MODEL in entries:
        raise ValueError(f"zoo: the name {MODEL!r} is the model in training's")
    return entries


def _zoo_entry(entry: Any, where: str) -> Any:
    if isinstance(entry, (str, Path)):
        return Path(entry)
    if isinstance(entry, nn.Module):
        return entry
    if isinstance(entry, Mapping):
        unknown = sorted(set(map(str, entry)) - set(_ZOO_KEYS))
        if unknown or "checkpoint" not in entry:
            raise ValueError(
                f"{where}={dict(entry)!r}: expected the keys checkpoint (a path) and, for "
                "another class than ImageClassifier, target ('package.module:ClassName')"
            )
        target = entry.get("target")
        if not (
            target is None
            or isinstance(target, str)
            or (isinstance(target, type) and issubclass(target, pl.LightningModule))
        ):
            raise TypeError(
                f"{where}.target={target!r}: must be 'package.module:ClassName' or a "
                "LightningModule class"
            )
        return {"checkpoint": Path(entry["checkpoint"]), "target": target}
    raise TypeError(
        f"{where}: a {type(entry).__name__}; expected a checkpoint path, an nn.Module or "
        "{'checkpoint': PATH, 'target': 'package.module:ClassName'}"
    )


def _check_examples(examples: Any) -> Any:
    if examples is None:
        return None
    if isinstance(examples, Dataset):
        if not isinstance(examples, Sized):
            raise TypeError(
                f"examples: a {type(examples).__name__} without len(); need a sized data set"
            )
        return examples
    if isinstance(examples, (tuple, list)) and len(examples) == 2:
        images, labels = examples
        if isinstance(images, Tensor) and isinstance(labels, Tensor):
            if len(images) != len(labels):
                raise ValueError(
                    f"examples: {len(images)} inputs but {len(labels)} labels; need one each"
                )
            return images, labels
    raise TypeError(
        f"examples: a {type(examples).__name__}; expected a pair (x, y) of tensors or a data set"
    )


def _floats(value: float | Sequence[float], name: str) -> list[float]:
    try:
        values = [float(v) for v in (value if isinstance(value, Sequence) else [value])]
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r}: expected a number or a sequence of numbers") from None
    return values


def _has_tensors(datamodule: Any) -> bool:
    """Whether the trainer's data module is this project's (``tensors(split)``)."""
    return datamodule is not None and callable(getattr(datamodule, "tensors", None))


def _first_loader(loaders: Any) -> Any:
    """The first of the trainer's loaders (one, a sequence of them, or a mapping)."""
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    return loaders


def _stack(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    if not items:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _logit_count(model: nn.Module, images: Tensor, name: str) -> int:
    """How many classes ``model`` (zoo entry ``name``, or :data:`MODEL`) scores, from its
    logits ``(N, classes)`` on one example.

    Raises:
        ValueError: naming the zoo entry (or the model in training), when the model cannot
            take the examples (its own error quoted) or does not return ``(1, classes)``.
    """
    what = "the model in training" if name == MODEL else f"zoo[{name!r}]"
    example = images[:1]
    try:
        with evaluating(model):
            logits = model(model_input(model, example))
    except RuntimeError as error:  # shapes or dtypes the model's layers refuse
        raise ValueError(
            f"zoo: {what} cannot take the examples, inputs {tuple(example.shape)} "
            f"{str(example.dtype).removeprefix('torch.')}: {error}"
        ) from error
    if not isinstance(logits, Tensor) or logits.ndim != 2 or len(logits) != 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"zoo: {what} must map inputs (N, ...) to logits (N, classes); "
            f"on inputs {tuple(example.shape)} it gave {shape}"
        )
    return int(logits.shape[1])
