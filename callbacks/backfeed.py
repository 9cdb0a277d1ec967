"""Adversarial backfeeding: the paper's training proposal as a Lightning callback.

Szegedy et al. (2013), Section 4.2, trained a 100-100-10 network below 1.2% test error "by
keeping a pool of adversarial examples a random subset of which is continuously replaced by
newly generated adversarial examples and which is mixed into the original training set all
the time", with examples generated "for each layer's outputs" used "to train all the layers
above". :class:`AdversarialBackfeed` does that for any LightningModule whose ``forward``
returns logits, with nothing added to the module: one :class:`~callbacks.pool.AdversarialPool`
per configured layer, refreshed on a schedule with examples made against the current weights,
and appended to every training batch itself (as MART and similar training callbacks do), so
that the pooled examples reach the module's own ``training_step`` and loss.

How the examples get into the batch: Lightning passes every batch through
``on_after_batch_transfer`` of the datamodule (when it overrides the hook) or of the
LightningModule, looked up on the instance. During ``fit`` the callback wraps that instance
attribute of both (restored at teardown) with one that calls the original and then, in
training only, appends the pool's rows. A batch that did not pass through it (a
``training_step`` that takes ``dataloader_iter``) stops training with an error: pooled
examples that cannot reach the loss are never silently dropped.

Hidden-layer pools (any submodule by name, see :func:`attacks.layers.get_layer`; skip
connections included) store the clean input, the label and the perturbation ``delta`` of the
layer's output that the attack found (``adv - origin``), not the adversarial activation
itself. The pooled inputs join the batch; during that training step's forward a hook on the
layer replaces those rows' output by ``clamp(output.detach() + delta, layer range)``: the
activation is recomputed with the current weights, and, detached, trains only the layers above
(the paper's per-layer training), while the batch's other rows are untouched.

Adversarial training as the field's baseline, with the same callback: ``mix="replace"`` puts
the adversarial rows in place of clean rows (the batch keeps its size; ``mix_ratio=1.0``
trains on adversarial rows only), and ``attack_current_batch=True`` replaces the pool by an
attack on the training batch itself, against the current weights, at every step, every
result used whether adversarial or not. With the generator ``{"name": "pgd", "keep": "last",
...}`` that is PGD adversarial training (Madry et al. 2018, "Towards deep learning models
resistant to adversarial attacks"); with ``{"name": "pgd", "steps": 1, "step_size": 1.25 *
epsilon, "keep": "last"}`` (random start being PGD's default), FGSM with random start (Wong,
Rice & Kolter 2020, "Fast is better than free"). Presets: ``pgd-at-fc100``, ``fgsm-rs-fc100``,
``pgd-at-conv``, ``fgsm-rs-conv``.

Under DDP every rank generates and keeps its own share of the pool (``pool_size /
world_size``); logged figures are reduced across ranks with torchmetrics; checkpoints hold
every rank's pool and random state (tensors and primitives only).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import IterableDataset
from torchmetrics import MeanMetric, Metric, SumMetric
from typing_extensions import override

from intriguing.analysis.transfer import check_attack_spec
from intriguing.attacks import (
    INPUT,
    Attack,
    AttackResult,
    build_attack,
    evaluating,
    layer_path,
    layer_range,
    perturb_layer,
)
from intriguing.attacks.peers import as_attack, is_torchattacks_attack
from intriguing.callbacks.batches import BatchKey, batch_entry, check_batch_key, describe_batch
from intriguing.callbacks.pool import AdversarialPool
from intriguing.callbacks.rng import untouched_rng
from intriguing.configs.schema import MixPolicy
from intriguing.errors import first_line
from intriguing.trainers import ErrorRate

AttackFactory = Callable[[nn.Module, str], Attack]
#: How the callback's errors and warnings name it (before the parameter and its value).
_OWNER = "AdversarialBackfeed"
Stat = float | Sequence[float]

#: Name of the attribute that a mixed batch carries: how many of its leading rows are the
#: clean batch (the pooled rows follow). Plain tuple, list and dict batches carry it.
CLEAN_SIZE = "clean_size"

_HOOK = "on_after_batch_transfer"
_PER_LAYER = (
    "success_rate",  # of the attacks this epoch
    "distortion",  # of the successful ones
    "generation_seconds",  # per process and epoch
    "generated",  # examples added this epoch
    "pool_size",
    "pool_error",  # current model on the pool
    "age_steps",
    "clean_error",  # of the attacked rows of the training batches (attack_current_batch)
)
_POOL_ONLY = ("pool_size", "pool_error", "age_steps")
_SUMMED = ("generated", "pool_size")
_VAL = ("val/adv_error", "val/adv_distortion")


def attack_factory(
    spec: Mapping[str, Any] | AttackFactory,
    *,
    mean: Stat | None = None,
    std: Stat | None = None,
    argument: str = "generator",
) -> AttackFactory:
    """A function ``(model, layer) -> Attack`` from an attack config mapping, or ``spec``
    itself when it is one. ``mean``/``std`` (data normalised outside the model) are passed to
    the attack, which then takes inputs in pixel units.

    Raises:
        ValueError: for a mapping :func:`attacks.build_attack` would refuse, now rather than
            at the first attack, naming ``argument`` and the key
            (:func:`analysis.transfer.check_attack_spec`).
        TypeError: naming ``argument``, for a ``spec`` that is neither a mapping nor callable.
    """
    if callable(spec):  # an attack factory, or a torchattacks attack itself
        if is_torchattacks_attack(spec):
            return functools.partial(_peer_of, spec, mean=mean, std=std)
        return functools.partial(_made_by, spec, mean=mean, std=std)
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{argument}={spec!r}: expected an attack config mapping ({{'name': 'fgsm', "
            "'epsilon': 0.1}), a function (model, layer) -> Attack, or a torchattacks attack"
        )
    settings = dict(spec)
    if mean is not None:
        settings.update(mean=mean, std=std)
    check_attack_spec(settings, argument)

    def make(model: nn.Module, layer: str) -> Attack:
        return build_attack(model, {**settings, "layer": None if layer == INPUT else layer})

    return make


def _peer_of(peer: Any, model: nn.Module, layer: str, **stats: Stat | None) -> Attack:
    """A torchattacks attack given as the generator, run on ``model`` through PeerAttack."""
    return as_attack(peer, model, layer=layer, **stats)


def _made_by(factory: Any, model: nn.Module, layer: str, **stats: Stat | None) -> Attack:
    """What a user's factory makes; a peer's attack (torchattacks) through PeerAttack, whose
    result our code reads (its bare tensor had no ``success``)."""
    return as_attack(factory(model, layer), model, layer=layer, **stats)


class _MixedTuple(tuple):  # type: ignore[type-arg]
    clean_size: int


class _MixedList(list):  # type: ignore[type-arg]
    clean_size: int


class _MixedDict(dict):  # type: ignore[type-arg]
    clean_size: int


class _Rows(NamedTuple):
    """Adversarial rows for a training batch, from one layer's pool or attack."""

    layer: str
    inputs: Tensor  # (k, *input shape): the rows' inputs
    labels: Tensor  # (k,)
    perturbations: Tensor | None  # (k, *layer output shape) of a hidden layer, else None
    sources: slice | None  # the batch rows they were made from (attack_current_batch)


def _add_perturbation(
    output: Any, rows: slice, delta: Tensor, bounds: tuple[float, float], total: int, layer: str
) -> Any:
    """``output`` with ``clamp(output[rows].detach() + delta, bounds)`` in ``rows``, when its
    batch dimension is ``total`` (other calls of the layer are left alone)."""
    if not isinstance(output, Tensor) or output.ndim == 0 or output.shape[0] != total:
        return output
    target = output[rows]
    if target.shape != delta.shape:
        raise ValueError(
            f"backfeed: layer {layer!r} returned rows of shape {tuple(target.shape[1:])}; its "
            f"pool holds perturbations of shape {tuple(delta.shape[1:])}"
        )
    patched = (target.detach() + delta.to(output.dtype)).clamp(*bounds)
    return torch.cat([output[: rows.start], patched, output[rows.stop :]])


class AdversarialBackfeed(Callback):
    """Keep pools of adversarial examples, refresh them continually, mix them into training.

    Works with any LightningModule whose ``forward`` maps a batch of inputs to logits
    ``(batch, classes)`` and whose training batches are tuples, lists or dicts holding an input
    tensor and integer class labels ``(batch,)``: the pooled examples are appended to the batch
    (see the module docstring), so the module's own ``training_step`` trains on them. Rows
    ``[0, n)`` of a mixed batch are the clean batch of ``n`` examples; a plain tuple, list or
    dict batch carries ``n`` as its attribute ``clean_size`` (``getattr(batch, "clean_size",
    len(y))`` gives the clean rows' count, with or without the callback).

    With ``attack_current_batch`` there is no pool: at every training batch (every optimizer
    step, every batch of an accumulated one) ``round(mix_ratio * n)`` of its rows, the last
    ones (a shuffled loader makes them a random subset), are attacked against the current
    weights, and every result joins (``mix="append"``) or replaces (``"replace"``) them,
    adversarial or not, as in Madry et al.'s PGD adversarial training (2018) and Wong et al.'s
    FGSM with random start (2020); several layers share those rows in turn (replace) or each
    attack all of them (append). The attacks run in eval mode (:func:`attacks.attack_mode`:
    batch-norm running statistics, no dropout, no update of the statistics), as torchattacks
    does by default (``set_model_training_mode(model_training=False)``) and advertorch-based
    trainers (TRADES, MART) do; Madry's and Wong's reference code attacked in train mode,
    which differs only for models with batch norm or dropout (the MNIST presets have
    neither). ``pool_size``, ``refresh_fraction`` and ``refresh_every_n_steps`` are then
    unused. ``backfeed/LAYER/clean_error`` logs the error of the current weights on the
    attacked clean rows (measured by the attack before the step): the clean training error
    when ``mix="replace"`` and ``mix_ratio=1`` leave no clean row in the batch.

    Args:
        pool_size: examples per pool, over all ranks together.
        mix_ratio: adversarial rows per clean example of each training batch, in [0, 1]:
            with ``mix="append"`` each pool in turn adds ``round(mix_ratio * n)`` rows to a
            batch of ``n`` (0.5: 128 clean examples grow to 192, 64 from the pool); with
            ``"replace"`` that many clean rows (the last ones) give way to adversarial rows,
            shared among the pools in turn, and the batch keeps its size (fewer while a pool
            holds fewer examples).
        mix: :class:`~configs.schema.MixPolicy` (or its value): ``"append"`` or
            ``"replace"``, as above. Rows ``[0, clean_size)`` of a mixed batch are clean in
            both.
        attack_current_batch: attack the batch itself at every step instead of keeping
            pools (see above).
        refresh_fraction: fraction of each pool replaced at every refresh, in (0, 1]; the new
            examples are made from clean training examples drawn from the batches since the
            last refresh (at most all of them).
        refresh_every_n_steps: a refresh happens every this many optimizer steps
            (``trainer.global_step``, whatever the gradient accumulation; and at the first
            step); fewer, larger refreshes let batched attacks work efficiently.
        generator: the attack that makes new examples: an attack config mapping for
            :func:`attacks.build_attack` (``{"name": "lbfgs"}`` is the paper's;
            ``{"name": "torchattacks.PGD", "eps": 0.1, ...}`` a peer's) or a function
            ``(model, layer) -> Attack`` (``model`` is the LightningModule, ``layer`` a name
            of ``layers``); a torchattacks attack, given or returned by the function, runs
            through :class:`attacks.PeerAttack` (input pools only).
        layers: layers that get a pool: ``"input"`` and/or names of submodules whose output
            is perturbed (a dotted path or its unique suffix, see
            :func:`attacks.layers.get_layer`); a hidden layer's pool trains only the layers
            above it.
        alternate: when several layers are pooled, refresh and mix one pool per step in turn
            instead of all of them in every step.
        val_attack: fixed attack for the adversarial validation error, measured on the first
            ``val_subset`` validation examples of each process so that epochs are comparable
            (``None``: not measured). Works in ``fit`` and ``validate`` runs.
        val_subset: validation examples attacked at every validation.
        seed: seed of the callback's own random generator (offset by the process rank).
        input_key: where the batch holds the inputs: an index of a tuple or list batch, a key
            of a dict batch.
        target_key: where the batch holds the integer class labels, likewise.
        fill: values that the pooled rows get in the batch's other per-example entries
            (tensors or lists whose length is the batch size, as sample weights), by key:
            ``{"weight": 1.0}``. A batch with a per-example entry not named here is refused:
            the callback cannot invent, say, the ids of pooled examples. Other entries (not
            per-example) pass through unchanged.
        mean: per-channel mean (or one value) of a normalisation ``(x - mean) / std`` that
            the data pipeline applied to the inputs: attacks then work in pixel units (the
            batch is denormalised before the attack, the adversarial inputs renormalised
            before they are pooled). ``None``: the batch is in the model's input units.
        std: the normalisation's per-channel standard deviation; given with ``mean``.

    Errors name the parameter and its value, after the class's name
    (``"AdversarialBackfeed: mix_ratio=1.5: must be in [0, 1]"``); the config layer names the
    config key instead (:func:`intriguing.configs.config_error`).

    Raises:
        ValueError: for settings out of range (at construction), layers the module lacks or
            whose pool could not train anything (the output layer), a pool larger than the
            training set (when its size is known: this project's data module, or the sized
            data sets of the training loaders), and batches the pooled examples could not
            reach the loss through (missing keys, other per-example entries, a batch that did
            not pass through ``on_after_batch_transfer``): before the first optimizer step;
            a ``mix`` other than append or replace, and ``attack_current_batch`` with
            ``mix_ratio=0`` (nothing would be attacked), at construction; layers are also
            checked, before any training, by :meth:`check_module`.
        TypeError: for a value of the wrong type (``input_key``, ``mean``, an attack config
            that is not a mapping), at construction.
    """

    def __init__(
        self,
        *,
        pool_size: int = 10_000,
        mix_ratio: float = 0.5,
        mix: MixPolicy | str = MixPolicy.append,
        attack_current_batch: bool = False,
        refresh_fraction: float = 0.01,
        refresh_every_n_steps: int = 1,
        generator: Mapping[str, Any] | AttackFactory | None = None,
        layers: Sequence[str] = (INPUT,),
        alternate: bool = False,
        val_attack: Mapping[str, Any] | AttackFactory | None = None,
        val_subset: int = 500,
        seed: int = 0,
        input_key: BatchKey = 0,
        target_key: BatchKey = 1,
        fill: Mapping[BatchKey, float | int] | None = None,
        mean: Stat | None = None,
        std: Stat | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= mix_ratio <= 1.0:
            raise ValueError(f"{_OWNER}: mix_ratio={mix_ratio}: must be in [0, 1]")
        try:
            self.mix = MixPolicy(mix)
        except ValueError:
            policies = ", ".join(policy.value for policy in MixPolicy)
            raise ValueError(f"{_OWNER}: mix={mix!r}: expected one of {policies}") from None
        if attack_current_batch and mix_ratio == 0:
            raise ValueError(
                f"{_OWNER}: attack_current_batch=True with mix_ratio={mix_ratio}: no row of a "
                "batch would be attacked; give mix_ratio in (0, 1] (1.0 with mix=replace is "
                "Madry et al.'s adversarial training)"
            )
        self.attack_current_batch = bool(attack_current_batch)
        if not 0.0 < refresh_fraction <= 1.0:
            raise ValueError(f"{_OWNER}: refresh_fraction={refresh_fraction}: must be in (0, 1]")
        if refresh_every_n_steps < 1:
            raise ValueError(
                f"{_OWNER}: refresh_every_n_steps={refresh_every_n_steps}: must be at least 1"
            )
        if pool_size < 1:
            raise ValueError(f"{_OWNER}: pool_size={pool_size}: must be at least 1")
        if isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers):
            raise TypeError(
                f"{_OWNER}: layers={layers!r}: expected a list of layer names, e.g. ['input']"
            )
        if not layers:
            raise ValueError(
                f"{_OWNER}: layers={list(layers)!r}: name at least one layer ('input' or hidden)"
            )
        if val_subset < 0:
            raise ValueError(f"{_OWNER}: val_subset={val_subset}: must be non-negative")
        for name, key in (("input_key", input_key), ("target_key", target_key)):
            check_batch_key(key, f"{_OWNER}: {name}")
        if input_key == target_key:
            raise ValueError(f"{_OWNER}: input_key={input_key!r}: target_key is the same entry")
        if (mean is None) != (std is None):
            raise ValueError(f"{_OWNER}: mean={mean!r}, std={std!r}: give both or neither")
        self.pool_size = int(pool_size)
        self.mix_ratio = float(mix_ratio)
        self.refresh_fraction = float(refresh_fraction)
        self.refresh_every_n_steps = int(refresh_every_n_steps)
        try:
            self.make_attack = attack_factory(generator or {"name": "lbfgs"}, mean=mean, std=std)
            self.make_val_attack = (
                attack_factory(val_attack, mean=mean, std=std, argument="val_attack")
                if val_attack is not None
                else None
            )
        except (ValueError, TypeError) as error:
            kind = ValueError if isinstance(error, ValueError) else TypeError
            raise kind(f"{_OWNER}: {first_line(error)}") from None
        self.layers = list(dict.fromkeys(layers))
        self.alternate = bool(alternate)
        self.val_subset = int(val_subset)
        self.seed = int(seed)
        self.input_key = input_key
        self.target_key = target_key
        self.fill = dict(fill or {})
        self.mean = self._stat("mean", mean)
        self.std = self._stat("std", std)
        if self.std is not None and not bool((self.std > 0).all()):
            raise ValueError(f"{_OWNER}: std={std!r}: must be positive")

        self.pools: dict[str, AdversarialPool] = {}
        #: Pool examples mixed into the current training batch, by layer.
        self.mixed: dict[str, int] = {}
        #: The input pool's latest additions: (slots written, the clean inputs they were made
        #: from, in the batch's units), for callbacks that show them (callbacks.pool_examples).
        self.last_added: dict[str, tuple[Tensor, Tensor]] = {}
        self.rng = torch.Generator()
        self.refreshes = 0
        self._pending_state: dict[str, Any] | None = None
        self._val_inputs: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._metrics: dict[str, Metric] = {}
        self._seconds: dict[str, float] = {}
        self._step_seconds: dict[str, float] = {}
        self._staged: list[tuple[Tensor, Tensor]] = []
        self._trainer: pl.Trainer | None = None
        self._wrapped: list[tuple[Any, bool, Any]] = []
        self._last_mixed: Any = None
        self._batch_ready = False
        self._refreshed_at = -1
        self._probed = False
        self._size_checked = False
        self._range_warned: set[str] = set()
        self._patches: list[tuple[str, slice, Tensor]] = []
        self._mixed_size = 0
        self._hooks = ExitStack()

    @staticmethod
    def _stat(name: str, value: Stat | None) -> Tensor | None:
        if value is None:
            return None
        try:
            return torch.as_tensor(value, dtype=torch.float32).flatten()
        except (TypeError, ValueError):
            raise TypeError(f"{_OWNER}: {name}={value!r}: must be a number or a list") from None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layers=self.layers, pool_size=self.pool_size)

    # ----------------------------------------------------------------------------- set-up

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage != "fit":
            return
        self.check_module(pl_module)
        for layer in self.layers:
            if layer != INPUT:
                path = layer_path(pl_module, layer)
                self._warn_unknown_range(layer, pl_module.get_submodule(path))
        world, rank = trainer.world_size, trainer.global_rank
        if self.attack_current_batch:  # no pool: its size is not checked
            self.pools, self._size_checked = {}, True
        else:
            train_size = _datamodule_size(trainer)
            self._check_pool_size(train_size)
            self._size_checked = train_size is not None
            share = self.pool_size // world + (1 if rank < self.pool_size % world else 0)
            self.pools = {layer: AdversarialPool(max(1, share)) for layer in self.layers}
        self.rng.manual_seed(self.seed + rank)
        for name in self._layer_metric_names():
            self._metric(name, pl_module.device)
        self._probed = False
        self._refreshed_at = -1
        self._restore_pending(rank, world)
        self._wrap_batch_hooks(trainer, pl_module)

    def check_module(self, pl_module: nn.Module, example: Tensor | None = None) -> None:
        """Check the pooled layers against ``pl_module``, before any training.

        Every hidden layer of ``layers`` must name one submodule (a dotted path or its unique
        suffix, :func:`attacks.layers.layer_path`). With ``example`` (a few inputs, shape
        ``(n, *input_shape)``, float, in the module's input units) also what the first
        training batch checks: ``pl_module(example)`` is logits of shape ``(n, classes)`` and
        each pooled hidden layer runs once, returns a tensor with a batch dimension and is
        not the output layer (whose pool would train nothing). :meth:`setup` calls it without
        ``example``; a config validator calls it on the model a run would train
        (:func:`intriguing.pipelines.validate.validate_run_config`).

        Raises:
            ValueError: naming ``layers``, the layer and, for an unknown one, the module's
                layers.
        """
        for layer in self.layers:
            if layer != INPUT:
                try:
                    layer_path(pl_module, layer)
                except ValueError as error:
                    raise ValueError(f"{_OWNER}: layers: {layer!r}: {error}") from None
        if example is not None:
            self._probe_layers(pl_module, example)

    def _warn_unknown_range(self, layer: str, module: nn.Module) -> None:
        """Warn once (rank zero) about a hidden pool at a module of the user's own whose
        output range is not known: perturbed activations are then clamped to nothing and may
        leave the values the layer can produce (negative after a final ``F.relu``)."""
        if layer in self._range_warned or layer_range(module) != (-math.inf, math.inf):
            return
        if not _range_unknown(module):
            return
        self._range_warned.add(layer)
        name = type(module).__name__
        rank_zero_warn(
            f"{_OWNER}: layers: the output range of {layer!r} ({name}) is not known, so its "
            "pool's perturbed activations are not clamped and may leave the values the layer "
            "can produce (e.g. negative after a final F.relu). Declare it on the module, "
            f"`module.output_range = (0.0, float('inf'))`, or for the class, "
            f"`intriguing.attacks.register_layer_range({name}, (0.0, float('inf')))`",
            category=UserWarning,
        )

    def _check_pool_size(self, train_size: int | None) -> None:
        """A pool larger than the training set (over all processes, as ``pool_size``) could
        never be filled with distinct examples: refused, when the size is known."""
        if train_size is not None and self.pool_size > train_size:
            raise ValueError(
                f"{_OWNER}: pool_size={self.pool_size} is larger than the training set "
                f"({train_size} examples)"
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Without this project's data module, the pool size is checked against the data
        sets of the training loaders, which Lightning sets up only after ``setup``."""
        if not self._size_checked:
            self._check_pool_size(_loaders_size(trainer.train_dataloader))
            self._size_checked = True

    def _figures(self) -> tuple[str, ...]:
        """The per-layer figures of this callback's mode: pool statistics for pools, the
        clean error of the attacked rows for attacks of the current batch."""
        if self.attack_current_batch:
            return tuple(figure for figure in _PER_LAYER if figure not in _POOL_ONLY)
        return tuple(figure for figure in _PER_LAYER if figure != "clean_error")

    def _layer_metric_names(self) -> list[str]:
        figures = self._figures()
        return [f"backfeed/{layer}/{figure}" for layer in self.layers for figure in figures]

    def _metric(self, name: str, device: torch.device) -> Metric:
        """The metric logged as ``name``, made on first use (in any stage)."""
        metric = self._metrics.get(name)
        if metric is None:
            figure = name.rsplit("/", 1)[-1]
            if figure.endswith("error"):
                metric = ErrorRate()
            elif figure in _SUMMED:
                metric = SumMetric()
            else:
                metric = MeanMetric()
            self._metrics[name] = metric.to(device)
        return metric

    def _wrap_batch_hooks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Mix pooled examples into every training batch that leaves ``on_after_batch_transfer``
        of the module or the datamodule (whichever Lightning calls)."""
        self._unwrap_batch_hooks()
        owners: list[Any] = [pl_module]
        if trainer.datamodule is not None:
            owners.append(trainer.datamodule)
        for owner in owners:
            original = getattr(owner, _HOOK)

            # wraps: Lightning's is_overridden looks through __wrapped__, so which object's
            # hook Lightning calls does not change.
            @functools.wraps(original)
            def mixing(batch: Any, dataloader_idx: int, _original: Any = original) -> Any:
                return self._mix(_original(batch, dataloader_idx))

            self._wrapped.append((owner, _HOOK in vars(owner), original))
            setattr(owner, _HOOK, mixing)

    def _unwrap_batch_hooks(self) -> None:
        for owner, had_own, original in reversed(self._wrapped):
            if had_own:
                setattr(owner, _HOOK, original)
            elif _HOOK in vars(owner):
                delattr(owner, _HOOK)
        self._wrapped = []

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for pool in self.pools.values():
            pool.to(pl_module.device)
        for metric in self._metrics.values():
            metric.to(pl_module.device)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._hooks.close()
        self._unwrap_batch_hooks()
        self._staged, self._last_mixed, self._patches = [], None, []

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning does not call teardown after an exception: leave the module as it was.
        self.teardown(trainer, pl_module, "fit")

    # ------------------------------------------------------------------------ the batch

    def _entry(self, batch: Any, key: BatchKey, name: str, stage: str) -> Any:
        """``batch[key]`` (:func:`~callbacks.batches.batch_entry`); a batch without it is a
        ValueError or TypeError, since pooled examples could not reach the loss."""
        try:
            return batch_entry(batch, key, argument=f"{_OWNER}: {name}", what=f"{stage} batch")
        except (TypeError, ValueError) as error:
            kind = ValueError if isinstance(error, ValueError) else TypeError
            raise kind(f"{error} (pooled examples could not reach the loss)") from None

    def _inputs_and_targets(self, batch: Any, stage: str) -> tuple[Tensor, Tensor]:
        """The batch's inputs and labels, checked: floating inputs, integer labels ``(n,)``."""
        x = self._entry(batch, self.input_key, "input_key", stage)
        y = self._entry(batch, self.target_key, "target_key", stage)
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.ndim < 1:
            raise ValueError(
                f"{_OWNER}: input_key={self.input_key!r}: the {stage} batch holds "
                f"{describe_batch(x)} there, not a floating-point tensor of inputs; the batch "
                f"is {describe_batch(batch)}"
            )
        integer = isinstance(y, Tensor) and not (y.dtype.is_floating_point or y.dtype.is_complex)
        if not integer or y.shape != (len(x),):
            raise ValueError(
                f"{_OWNER}: target_key={self.target_key!r}: the {stage} batch holds "
                f"{describe_batch(y)} there, not integer class labels of shape ({len(x)},); "
                f"the batch is {describe_batch(batch)}"
            )
        return x, y

    def _extended(
        self, key: BatchKey, value: Any, size: int, kept: int, added: int, sources: Tensor | None
    ) -> Any:
        """Another entry of the batch of ``size`` rows: if it has one value per example, its
        first ``kept`` values, then for the ``added`` adversarial rows the values of the rows
        they were made from (``sources``, indices into the batch) or, for pooled rows, the
        entry's ``fill`` value."""
        per_example = (isinstance(value, Tensor) and value.ndim >= 1 and len(value) == size) or (
            isinstance(value, list | tuple) and len(value) == size
        )
        if not per_example:
            return value
        if sources is not None:  # adversarial versions of the batch's own rows
            if isinstance(value, Tensor):
                return torch.cat([value[:kept], value[sources.to(value.device)]])
            return type(value)([*value[:kept], *(value[i] for i in sources.tolist())])
        if key not in self.fill:
            raise ValueError(
                f"{_OWNER}: the training batch's entry {key!r} has one value per example "
                f"({describe_batch(value)}); pooled rows need one too: give it with "
                f"fill={{{key!r}: value}}"
            )
        if added == 0 and kept == size:
            return value
        if isinstance(value, Tensor):
            rows = value.new_full((added, *value.shape[1:]), self.fill[key])
            return torch.cat([value[:kept], rows])
        return type(value)([*value[:kept], *([self.fill[key]] * added)])

    def _rebuilt(
        self, batch: Any, x: Tensor, y: Tensor, size: int, clean: int, sources: Tensor | None
    ) -> Any:
        """The batch of ``size`` rows with inputs ``x`` and labels ``y`` (its first ``clean``
        rows, then adversarial rows), its other per-example entries likewise (see
        :meth:`_extended`), marked with :data:`CLEAN_SIZE` where it can be."""
        added = len(y) - clean
        if isinstance(batch, Mapping):
            replaced = {self.input_key: x, self.target_key: y}
            keys: list[Any] = list(batch.keys())
        else:
            # Indices of a sequence may be negative: by position.
            replaced = {self.input_key % len(batch): x, self.target_key % len(batch): y}  # type: ignore[operator]
            keys = list(range(len(batch)))
        values = {
            key: replaced[key]
            if key in replaced
            else self._extended(key, batch[key], size, clean, added, sources)
            for key in keys
        }
        mixed: Any
        if type(batch) is dict:
            mixed = _MixedDict(values)
        elif type(batch) is tuple:
            mixed = _MixedTuple(values[i] for i in range(len(batch)))
        elif type(batch) is list:
            mixed = _MixedList(values[i] for i in range(len(batch)))
        elif isinstance(batch, tuple) and hasattr(batch, "_make"):  # a namedtuple
            return batch._make(values[i] for i in range(len(batch)))
        elif isinstance(batch, Mapping):
            return type(batch)(values)
        else:
            return type(batch)(values[i] for i in range(len(batch)))
        setattr(mixed, CLEAN_SIZE, clean)
        return mixed

    # ---------------------------------------------------------------------------- training

    def _in_turn(self, turn: int) -> list[str]:
        """All pooled layers, or with ``alternate`` the one whose turn it is."""
        if self.alternate and len(self.layers) > 1:
            return [self.layers[turn % len(self.layers)]]
        return self.layers

    def _mix(self, batch: Any) -> Any:
        """Make or draw adversarial rows and mix them into a training batch (``mix``)."""
        trainer = self._trainer
        if trainer is None or not trainer.training or batch is self._last_mixed:
            return batch
        pl_module = trainer.lightning_module
        x, y = self._inputs_and_targets(batch, "training")
        if not self._probed:
            self._probe_layers(pl_module, x)
            self._probed = True
        step = trainer.global_step
        count = round(self.mix_ratio * len(y))
        if self.attack_current_batch:
            parts = self._attacked(pl_module, x, y, count)
        else:
            self._refresh_if_due(pl_module, x, y, step, trainer.accumulate_grad_batches)
            parts = self._pooled(x, y, count, step)
        added = sum(len(part.labels) for part in parts)
        kept = len(y) - added if self.mix is MixPolicy.replace else len(y)
        inputs, labels, self._patches, self.mixed = [x[:kept]], [y[:kept]], [], {}
        rows = kept
        for part in parts:
            size = len(part.labels)
            inputs.append(part.inputs.to(x.dtype))
            labels.append(part.labels.to(y.dtype))
            if part.perturbations is not None:
                self._patches.append((part.layer, slice(rows, rows + size), part.perturbations))
            self.mixed[part.layer] = self.mixed.get(part.layer, 0) + size
            rows += size
        self._mixed_size = rows
        sources = None
        if self.attack_current_batch:
            spans = [
                torch.arange(p.sources.start, p.sources.stop)
                for p in parts
                if p.sources is not None
            ]
            sources = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)
        mixed = self._rebuilt(batch, torch.cat(inputs), torch.cat(labels), len(y), kept, sources)
        self._last_mixed = mixed
        self._batch_ready = True
        return mixed

    def _shares(self, count: int, layers: int) -> list[int]:
        """Adversarial rows per layer in turn: ``count`` each when appended, ``count`` shared
        out (as evenly as may be) when they replace clean rows, whose number is fixed."""
        if self.mix is MixPolicy.append:
            return [count] * layers
        return [count // layers + (1 if index < count % layers else 0) for index in range(layers)]

    def _refresh_if_due(
        self, pl_module: pl.LightningModule, x: Tensor, y: Tensor, step: int, accumulation: int
    ) -> None:
        """Stage sources from this batch; refresh the pools in turn when a refresh is due."""
        self._stage(x, y, accumulation)
        due = step == 0 or (step + 1) % self.refresh_every_n_steps == 0
        if due and step != self._refreshed_at:
            sources = self._take_staged()
            # Refreshes take turns by their own count: by step, a period sharing a factor
            # with the number of layers would skip some layers for ever.
            for layer in self._in_turn(self.refreshes):
                self._refresh(pl_module, layer, *sources, step)
            self.refreshes += 1
            self._refreshed_at = step

    def _pooled(self, x: Tensor, y: Tensor, count: int, step: int) -> list[_Rows]:
        """Rows drawn from the pools whose turn it is (fewer while a pool holds fewer)."""
        parts: list[_Rows] = []
        layers = self._in_turn(step) if count else []
        for layer, share in zip(layers, self._shares(count, len(layers)), strict=True):
            pool = self.pools[layer]
            if not share or not pool.size or pool.examples is None:
                continue
            slots = pool.sample_slots(share, generator=self.rng)
            perturbations = None
            if layer != INPUT:
                assert pool.perturbations is not None
                perturbations = pool.perturbations[slots]
            examples, labels = pool.examples[slots], pool.labels[slots]
            parts.append(_Rows(layer, examples, labels, perturbations, None))
        return parts

    def _attacked(
        self, pl_module: pl.LightningModule, x: Tensor, y: Tensor, count: int
    ) -> list[_Rows]:
        """The batch's last ``count`` rows attacked now, against the current weights, by the
        layers whose turn it is; every result kept, adversarial or not (Madry et al. 2018).
        Replaced rows are shared among the layers; appended ones are all attacked by each."""
        parts: list[_Rows] = []
        layers = self._in_turn(self.refreshes) if count else []
        start = len(y) - count
        for layer, share in zip(layers, self._shares(count, len(layers)), strict=True):
            if not share:
                continue
            rows = slice(start, start + share)
            if self.mix is MixPolicy.replace:
                start += share
            sources, labels = x[rows].detach(), y[rows].detach()
            result = self._generate(pl_module, layer, sources, labels)
            self._metric(f"backfeed/{layer}/generated", pl_module.device).update(float(share))
            if result.clean_logits.numel():
                error = self._metric(f"backfeed/{layer}/clean_error", pl_module.device)
                error.update(result.clean_logits, labels)
            if layer == INPUT:
                adversarial = self._from_pixels(result.adv).to(x.dtype)
                parts.append(_Rows(layer, adversarial, labels, None, rows))
            else:
                delta = (result.adv - result.origin).to(x.dtype)
                parts.append(_Rows(layer, sources, labels, delta, rows))
        if layers:
            self.refreshes += 1
        return parts

    def _probe_layers(self, pl_module: nn.Module, x: Tensor) -> None:
        """Before the first step: the module maps inputs to logits, and every pooled hidden
        layer runs once, returns a batch tensor and is not the output (whose pool would train
        nothing)."""
        hidden = [layer for layer in self.layers if layer != INPUT]
        seen: dict[str, list[Any]] = {layer: [] for layer in hidden}
        with evaluating(pl_module), ExitStack() as stack:
            for layer in hidden:

                def capture(output: Any, _store: list[Any] = seen[layer]) -> Any:
                    _store.append(output)
                    return output

                stack.enter_context(perturb_layer(pl_module, layer, capture))
            sample = x[:2]
            logits = pl_module(sample)
        if not isinstance(logits, Tensor) or logits.ndim != 2 or len(logits) != len(sample):
            raise ValueError(
                f"{_OWNER}: {type(pl_module).__name__}(x) must return logits of shape (batch, "
                f"classes) for the attacks; for x of shape {tuple(sample.shape)} it returned "
                f"{describe_batch(logits)}"
            )
        for layer, outputs in seen.items():
            if len(outputs) != 1:
                raise ValueError(
                    f"{_OWNER}: layers: {layer!r} ran {len(outputs)} times in one forward pass; "
                    "a pool needs a layer that runs once"
                )
            (output,) = outputs
            if not isinstance(output, Tensor) or output.ndim == 0 or len(output) != len(sample):
                raise ValueError(
                    f"{_OWNER}: layers: {layer!r} returned {describe_batch(output)}, not a tensor "
                    "with a batch dimension"
                )
            if output is logits:
                raise ValueError(
                    f"{_OWNER}: layers: {layer!r} is the model's output layer (its output is the "
                    "logits); a pool there trains nothing above it: choose a layer below"
                )

    def _refresh_count(self, layer: str) -> int:
        return math.ceil(self.refresh_fraction * self.pools[layer].capacity)

    def _stage(self, x: Tensor, y: Tensor, accumulation: int) -> None:
        """Keep a random part of this batch as sources for the next refresh: a refresh every
        n optimizer steps then attacks examples drawn from all batches since the last one."""
        wanted = max(self._refresh_count(layer) for layer in self.layers)
        batches = self.refresh_every_n_steps * max(1, accumulation)
        per_batch = min(len(y), math.ceil(wanted / batches))
        chosen = torch.randperm(len(y), generator=self.rng)[:per_batch].to(y.device)
        self._staged.append((x[chosen].detach(), y[chosen].detach()))

    def _take_staged(self) -> tuple[Tensor, Tensor]:
        staged, self._staged = self._staged, []
        return torch.cat([x for x, _ in staged]), torch.cat([y for _, y in staged])

    def _view(self, stat: Tensor, x: Tensor) -> Tensor:
        """``stat`` shaped to broadcast over ``x``'s channels (dimension 1), in fp32."""
        shape = (1, -1, *([1] * (x.ndim - 2))) if len(stat) > 1 else (1,) * x.ndim
        return stat.to(x.device).view(shape)

    def _to_pixels(self, x: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            return x
        return x.float() * self._view(self.std, x) + self._view(self.mean, x)

    def _from_pixels(self, x: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            return x
        return (x.float() - self._view(self.mean, x)) / self._view(self.std, x)

    def _generate(
        self, pl_module: pl.LightningModule, layer: str, sources: Tensor, labels: Tensor
    ) -> AttackResult:
        """The generator's attack on ``sources`` (in the batch's units) at ``layer``, timed;
        its success rate and the distortion of its successes go into this epoch's figures."""
        started = time.perf_counter()
        attack = self.make_attack(pl_module, layer)
        result = attack(self._to_pixels(sources), labels)
        seconds = time.perf_counter() - started
        self._seconds[layer] = self._seconds.get(layer, 0.0) + seconds
        self._step_seconds[layer] = self._step_seconds.get(layer, 0.0) + seconds
        success = result.success
        prefix = f"backfeed/{layer}"
        device = pl_module.device
        self._metric(f"{prefix}/success_rate", device).update(success.float())
        if success.any():
            self._metric(f"{prefix}/distortion", device).update(result.distortion[success])
        return result

    def _refresh(
        self, pl_module: pl.LightningModule, layer: str, x: Tensor, y: Tensor, step: int
    ) -> None:
        """Replace ``refresh_fraction`` of the pool with examples made from the staged ones:
        adversarial inputs, or for a hidden layer the clean inputs with the layer
        perturbations ``adv - origin`` the attack found (successful attacks only)."""
        pool = self.pools[layer]
        count = min(len(y), self._refresh_count(layer))
        chosen = torch.randperm(len(y), generator=self.rng)[:count].to(y.device)
        sources, labels = x[chosen], y[chosen]
        result = self._generate(pl_module, layer, sources, labels)
        success = result.success
        if success.any():
            if layer == INPUT:
                adversarial = self._from_pixels(result.adv[success]).to(x.dtype)
                slots = pool.add(adversarial, labels[success], step=step, generator=self.rng)
                self.last_added[layer] = (slots, sources[success][-len(slots) :])
            else:
                delta = (result.adv - result.origin)[success].to(x.dtype)
                pool.add(
                    sources[success],
                    labels[success],
                    step=step,
                    generator=self.rng,
                    perturbations=delta,
                )
        self._metric(f"backfeed/{layer}/generated", pl_module.device).update(success.sum().float())

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Refuse a batch that was not mixed; perturb the hidden pools' rows for this step."""
        self._hooks.close()
        if not self._batch_ready:
            raise ValueError(
                f"{_OWNER}: this training batch did not pass through on_after_batch_transfer "
                "(e.g. a training_step that takes dataloader_iter), so pooled examples could "
                "not reach the loss"
            )
        self._batch_ready = False
        for layer, seconds in self._step_seconds.items():
            pl_module.log(
                f"backfeed/{layer}/step_generation_seconds", seconds, on_step=True, on_epoch=False
            )
        self._step_seconds = {}
        for layer, rows, delta in self._patches:
            bounds = layer_range(pl_module.get_submodule(layer_path(pl_module, layer)))
            add = functools.partial(
                _add_perturbation,
                rows=rows,
                delta=delta,
                bounds=bounds,
                total=self._mixed_size,
                layer=layer,
            )
            self._hooks.enter_context(perturb_layer(pl_module, layer, add))

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._hooks.close()
        self._patches, self._last_mixed = [], None

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """This epoch's figures, reduced over all processes: generation, and the pools' size,
        age and error of the current model (on a hidden pool: its inputs with their layer
        perturbations), or the clean error of the attacked rows (``attack_current_batch``)."""
        self._hooks.close()
        step = trainer.global_step
        device = pl_module.device
        with evaluating(pl_module):
            for layer, pool in self.pools.items():
                prefix = f"backfeed/{layer}"
                _, labels = pool.stored()
                for start in range(0, pool.size, 1000):
                    rows = slice(start, min(start + 1000, pool.size))
                    logits = self._pool_logits(pl_module, layer, pool, rows)
                    self._metric(f"{prefix}/pool_error", device).update(logits, labels[rows])
                self._metric(f"{prefix}/pool_size", device).update(float(pool.size))
                if pool.size:
                    self._metric(f"{prefix}/age_steps", device).update(pool.ages(step))
        for layer in self.layers:
            seconds = self._seconds.pop(layer, 0.0)
            self._metric(f"backfeed/{layer}/generation_seconds", device).update(seconds)
        pooled = not self.attack_current_batch
        for layer in self.layers:
            prefix = f"backfeed/{layer}"
            # Every rank computes every figure (collective calls); figures measured on no
            # example anywhere (an empty pool) are not logged.
            held = pooled and self._log_metric(pl_module, f"{prefix}/pool_size")
            for figure in self._figures():
                if figure != "pool_size":
                    log = held or figure not in _POOL_ONLY
                    self._log_metric(pl_module, f"{prefix}/{figure}", log=log)

    def _pool_logits(
        self, pl_module: pl.LightningModule, layer: str, pool: AdversarialPool, rows: slice
    ) -> Tensor:
        assert pool.examples is not None
        examples = pool.examples[rows]
        if layer == INPUT:
            return pl_module(examples)
        assert pool.perturbations is not None
        bounds = layer_range(pl_module.get_submodule(layer_path(pl_module, layer)))
        add = functools.partial(
            _add_perturbation,
            rows=slice(0, len(examples)),
            delta=pool.perturbations[rows],
            bounds=bounds,
            total=len(examples),
            layer=layer,
        )
        with perturb_layer(pl_module, layer, add):
            return pl_module(examples)

    def _log_metric(self, pl_module: pl.LightningModule, name: str, *, log: bool = True) -> bool:
        """Compute (a collective call on every rank), log the reduced value unless ``log`` is
        false or it is not a finite positive-count figure, reset. Returns whether the value is
        finite and nonzero."""
        metric = self._metric(name, pl_module.device)
        with warnings.catch_warnings():
            # A figure nothing fed this epoch (a layer not refreshed) is NaN; say nothing.
            warnings.filterwarnings("ignore", message=r".*called before the ``update``")
            value = metric.compute()
        metric.reset()
        finite = bool(torch.isfinite(value))
        if finite and log:
            pl_module.log(name, value.float(), on_step=False, on_epoch=True, sync_dist=False)
        return finite and bool(value != 0)

    # -------------------------------------------------------------------------- validation

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep this process's first ``val_subset / world_size`` validation examples, once."""
        if self.make_val_attack is None or trainer.sanity_checking or dataloader_idx != 0:
            return
        wanted = math.ceil(self.val_subset / trainer.world_size)
        have = sum(len(t) for t in self._val_labels)
        if have < wanted:
            x, y = self._inputs_and_targets(batch, "validation")
            self._val_inputs.append(x[: wanted - have].detach().clone())
            self._val_labels.append(y[: wanted - have].detach().clone())

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Adversarial validation error with the fixed attack on the fixed subset."""
        if self.make_val_attack is None or trainer.sanity_checking or self.val_subset == 0:
            return
        device = pl_module.device
        if self._val_labels:
            x, y = torch.cat(self._val_inputs), torch.cat(self._val_labels)
            attack = self.make_val_attack(pl_module, INPUT)
            # A measurement: a random attack (PGD's start) must not move the global
            # generator, which later epochs shuffle with.
            with torch.inference_mode(False), torch.enable_grad(), untouched_rng(device):
                result = attack(self._to_pixels(x.clone()), y.clone())
                adversarial = self._from_pixels(result.adv).to(x.dtype)
            with evaluating(pl_module):
                logits = pl_module(adversarial)
            self._metric("val/adv_error", device).update(logits, y)
            self._metric("val/adv_distortion", device).update(result.distortion)
        for name in _VAL:
            self._log_metric(pl_module, name)

    # ---------------------------------------------------------------------------- state

    @override
    def state_dict(self) -> dict[str, Any]:
        """Every process's pools and random state: tensors and primitives only.

        Under DDP this gathers from all processes: Lightning calls it on every rank when it
        saves a checkpoint (as ModelCheckpoint does), so every rank makes the same calls.
        """
        local = {
            "pools": {layer: pool.state_dict() for layer, pool in self.pools.items()},
            "rng": self.rng.get_state(),
            "refreshes": self.refreshes,
        }
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1 or not torch.distributed.is_initialized():
            return {"world_size": 1, "ranks": [local]}
        gathered: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, local)
        return {"world_size": trainer.world_size, "ranks": gathered}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore now if set up (Lightning restores callbacks after setup), else in setup."""
        self._pending_state = state_dict
        if self.pools and self._trainer is not None:
            self._restore_pending(self._trainer.global_rank, self._trainer.world_size)

    def _usable(self, layer: str, saved: Mapping[str, Any]) -> bool:
        """Whether a saved pool has this version's layout: a hidden layer's pool saved before
        pools held perturbations held activations, which cannot be mixed now."""
        if layer == INPUT or "perturbations" in saved or "examples" not in saved:
            return True
        warnings.warn(
            f"backfeed: the saved pool of layer {layer!r} holds activations (an older layout); "
            "it starts empty",
            stacklevel=2,
        )
        return False

    def _restore_pending(self, rank: int, world: int) -> None:
        """Give this rank its saved share: its own pool when the world size is unchanged,
        else an even slice of all saved examples."""
        state, self._pending_state = self._pending_state, None
        if state is None or not self.pools:
            return
        ranks = state["ranks"]
        self.refreshes = int(ranks[0].get("refreshes", 0))
        if len(ranks) == world:
            mine = ranks[rank]
            self.rng.set_state(mine["rng"])
            for layer, pool in self.pools.items():
                saved = mine["pools"].get(layer)
                if saved is not None and self._usable(layer, saved):
                    pool.load_state_dict(saved)
            return
        for layer, pool in self.pools.items():
            parts = [
                r["pools"][layer]
                for r in ranks
                if layer in r["pools"] and "examples" in r["pools"][layer]
            ]
            if not parts or not all(self._usable(layer, part) for part in parts):
                continue
            keys = ["examples", "labels", "made_at_step"]
            keys += ["perturbations"] if "perturbations" in parts[0] else []
            merged = {key: torch.cat([p[key] for p in parts]) for key in keys}
            total = len(merged["labels"])
            mine_slice = slice(rank * total // world, (rank + 1) * total // world)
            pool.load_state_dict(
                {
                    "size": mine_slice.stop - mine_slice.start,
                    **{key: value[mine_slice] for key, value in merged.items()},
                }
            )


def _datamodule_size(trainer: pl.Trainer) -> int | None:
    """Examples in this project's data module's ``train`` split (``None``: another one)."""
    datamodule = trainer.datamodule
    if datamodule is not None and hasattr(datamodule, "tensors"):
        return len(datamodule.tensors("train")[1])
    return None


def _loaders_size(loaders: Any) -> int | None:
    """Examples in the data sets of the training loaders (one, or a sequence or mapping of
    them, as ``trainer.train_dataloader`` gives them), summed: the whole data sets, which every
    process's sampler shares out. ``None`` when one is not sized (an iterable data set) or
    there are none."""
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if not isinstance(loaders, list | tuple):
        loaders = [loaders]
    total = 0
    for loader in loaders:
        dataset = getattr(loader, "dataset", None)
        if dataset is None or isinstance(dataset, IterableDataset):
            return None
        try:
            total += len(dataset)
        except TypeError:  # a map-style data set without __len__
            return None
    return total if loaders else None


def _range_unknown(module: nn.Module) -> bool:
    """Whether an unbounded :func:`attacks.layer_range` of ``module`` means "not known": the
    module (for an ``nn.Sequential``, its last child) is of a class of the user's own with no
    declared ``output_range``. PyTorch's own layers (linear, convolution, normalisation) are
    unbounded indeed."""
    if getattr(module, "output_range", None) is not None:
        return False
    if isinstance(module, nn.Sequential):
        children = list(module)
        return bool(children) and _range_unknown(children[-1])
    return not type(module).__module__.startswith("torch.")
