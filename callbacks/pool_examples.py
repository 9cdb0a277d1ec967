"""A few examples of each adversarial pool, logged to W&B as a table every few epochs.

What the pools of :class:`~callbacks.backfeed.AdversarialBackfeed` hold is otherwise seen only
through averages (success rate, distortion, age). :class:`PoolExamplesLogger` shows the
examples themselves, as Szegedy et al. (2013) do in their Figure 5 (clean image, the
perturbation magnified, the adversarial image): one row per example with its label and age,
as a ``wandb.Table`` with ``wandb.Image`` cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from intriguing.attacks import INPUT
from intriguing.callbacks.backfeed import AdversarialBackfeed
from intriguing.registry import Binding

#: The W&B key of the table.
EXAMPLES_KEY = "backfeed/examples"
#: The table's columns: the pool (its layer), the example's slot in that pool, its label,
#: the optimizer steps since it was made, three images, the perturbation's L-inf and L2 norm
#: (in pixels for the input pool, in the layer's output units for a hidden one), a note.
COLUMNS = [
    "pool",
    "slot",
    "label",
    "age_steps",
    "clean",
    "perturbation",
    "adversarial",
    "linf",
    "l2",
    "note",
]


class PoolExamplesLogger(Callback):
    """Log a table of the first ``examples`` slots of every adversarial pool to W&B after every
    ``every_n_epochs``-th training epoch.

    Each row is one pooled example: its pool, slot, label and age (optimizer steps since it
    was made), and three images in pixels (the datamodule's normalisation undone with the
    backfeed callback's ``mean``/``std``), each clipped to [0, 1]:

    - ``clean``: the input the example was made from;
    - ``perturbation``: adversarial minus clean, scaled for visibility: mid-grey is 0, white
      ``+linf`` and black ``-linf``, with ``linf`` = the perturbation's largest absolute pixel
      change (given in its own column with its L2 norm, in pixel units);
    - ``adversarial``: the example as it is mixed into training.

    The input pool stores adversarial examples only, so the clean input is the one this
    callback kept when the example was added (``AdversarialBackfeed.last_added``); for an
    example made before this fit started (a resumed run) it is not known and the row says so.
    A hidden layer's pool stores the clean input and a perturbation of the layer's output:
    its rows show the input as ``clean``, leave the two other images empty and give the layer
    perturbation's norms (in the layer's output units).

    Inputs must be images (``(C, H, W)`` with 1 or 3 channels, ``(H, W)``, or a flat square
    ``(H * W,)``); other inputs get rows without images. Only the global-zero process logs
    (its own share of the pools under DDP); no process makes any collective call. Nothing is
    logged without a :class:`~lightning.pytorch.loggers.WandbLogger`, without an
    ``AdversarialBackfeed`` callback (a warning says so) or while the pools are empty.

    Args:
        every_n_epochs: log after every this many training epochs (at least 1).
        examples: examples shown per pool (at least 1).

    Raises:
        ValueError: when ``every_n_epochs`` or ``examples`` is below 1.
    """

    def __init__(self, every_n_epochs: int = 5, examples: int = 8) -> None:
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs}: must be at least 1")
        if int(examples) < 1:
            raise ValueError(f"examples={examples}: must be at least 1")
        self.every_n_epochs = int(every_n_epochs)
        self.examples = int(examples)
        self._backfeed: AdversarialBackfeed | None = None
        # pool -> slot -> (step the example was made at, its clean input on the CPU)
        self._clean: dict[str, dict[int, tuple[int, Tensor]]] = {}
        self._seen: dict[str, tuple[Tensor, Tensor]] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        found = [c for c in trainer.callbacks if isinstance(c, AdversarialBackfeed)]
        self._backfeed = found[0] if found else None
        self._clean, self._seen = {}, {}
        if not found:
            rank_zero_warn("PoolExamplesLogger: no AdversarialBackfeed callback, nothing to log")

    def _logger(self, trainer: pl.Trainer) -> WandbLogger | None:
        if self._backfeed is None or not trainer.is_global_zero:
            return None
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Keep the clean inputs of the shown slots that the input pool took this step."""
        if self._logger(trainer) is None:
            return
        assert self._backfeed is not None
        for layer, added in self._backfeed.last_added.items():
            if self._seen.get(layer) is added:
                continue
            self._seen[layer] = added
            slots, clean = added
            pool = self._backfeed.pools[layer]
            shown = slots < self.examples
            sources = clean[shown.to(clean.device)]
            kept = self._clean.setdefault(layer, {})
            for slot, source in zip(slots[shown].tolist(), sources, strict=True):
                made_at = int(pool.made_at_step[slot])
                kept[slot] = (made_at, source.detach().to("cpu", torch.float32, copy=True))

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        logger = self._logger(trainer)
        if logger is None:
            return
        rows = self.rows(trainer.global_step)
        if rows:
            logger.log_table(EXAMPLES_KEY, columns=COLUMNS, data=rows, step=trainer.global_step)

    def rows(self, step: int) -> list[list[Any]]:
        """The table's rows (:data:`COLUMNS`) at optimizer step ``step``: the first
        ``examples`` filled slots of every pool (none before the fit's setup)."""
        import wandb

        backfeed = self._backfeed
        if backfeed is None:
            return []
        rows: list[list[Any]] = []
        for layer, pool in backfeed.pools.items():
            if not pool.size or pool.examples is None:
                continue
            ages = pool.ages(step)
            for slot in range(min(self.examples, pool.size)):
                example = pool.examples[slot].detach().to("cpu", torch.float32)
                label, age = int(pool.labels[slot]), int(ages[slot])
                head = [layer, slot, label, age]
                if layer != INPUT:
                    assert pool.perturbations is not None
                    delta = pool.perturbations[slot].detach().float()
                    note = (
                        f"perturbation of {layer}'s output, shape {tuple(delta.shape)} "
                        "(not an image); clean is the input"
                    )
                    clean = _image(wandb, _pixels(example, backfeed), f"label {label}")
                    norms = [float(delta.abs().max()), float(delta.norm())]
                    rows.append([*head, clean, None, None, *norms, note])
                    continue
                adversarial = _pixels(example, backfeed)
                made_at, source = self._clean.get(layer, {}).get(slot, (None, None))
                adversarial_image = _image(wandb, adversarial, f"label {label}, age {age}")
                if source is None or made_at != int(pool.made_at_step[slot]):
                    note = "clean input not known (made before this fit started)"
                    rows.append([*head, None, None, adversarial_image, None, None, note])
                    continue
                clean = _pixels(source, backfeed)
                delta = adversarial - clean
                linf = float(delta.abs().max())
                scaled = 0.5 + 0.5 * delta / linf if linf > 0 else torch.full_like(delta, 0.5)
                rows.append(
                    [
                        *head,
                        _image(wandb, clean, f"label {label}"),
                        _image(wandb, scaled, f"x{0.5 / linf if linf else 0:.3g}, grey = 0"),
                        adversarial_image,
                        linf,
                        float(delta.norm()),
                        "",
                    ]
                )
        return rows


def _pixels(x: Tensor, backfeed: AdversarialBackfeed) -> Tensor:
    """One example ``(C, ...)`` in the batch's units, as pixels: ``x * std + mean`` per channel
    when the backfeed callback was given the data's normalisation, else ``x`` itself."""
    mean, std = backfeed.mean, backfeed.std
    x = x.detach().to("cpu", torch.float32)
    if mean is None or std is None:
        return x
    shape = (-1, *([1] * (x.ndim - 1))) if len(std) > 1 and x.ndim > 1 else (1,) * x.ndim
    return x * std.view(shape) + mean.view(shape)


def _picture(x: Tensor) -> np.ndarray | None:
    """``x`` in [0, 1] (clipped) as an 8-bit picture ``(H, W)`` or ``(H, W, 3)``; ``None``
    when its shape is not an image's."""
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    elif x.ndim == 1 and math.isqrt(len(x)) ** 2 == len(x):
        x = x.view(math.isqrt(len(x)), -1)
    elif x.ndim != 2:
        return None
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _image(wandb: Any, x: Tensor, caption: str) -> Any:
    """A ``wandb.Image`` of ``x`` (pixels in [0, 1]), or ``None`` when it is not an image."""
    picture = _picture(x)
    return None if picture is None else wandb.Image(picture, caption=caption)


def backfeed_callbacks(binding: Binding, values: Mapping[str, Any], *, seed: int) -> list[Callback]:
    """What a run's ``backfeed`` section makes (its registered ``build``, callbacks.registry):
    the :class:`AdversarialBackfeed` (``binding``: each key is its keyword parameter; with
    ``val_subset`` 0 it gets no ``val_attack``, i.e. no adversarial validation), and a
    :class:`PoolExamplesLogger` every ``log_examples_every_n_epochs`` epochs (0: none).

    Raises:
        ValueError: for a negative ``log_examples_every_n_epochs``, and what the backfeed
            callback raises for a bad value (naming its parameter).
    """
    section = dict(values)
    every = section["log_examples_every_n_epochs"]
    if every < 0:
        raise ValueError(f"log_examples_every_n_epochs={every}: must be 0 (never) or more")
    if not section["val_subset"]:  # no adversarial validation
        section["val_attack"] = None
    made: list[Callback] = [binding(section, seed=seed)]
    if every:
        made.append(PoolExamplesLogger(every_n_epochs=every))
    return made
