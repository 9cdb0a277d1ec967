"""Adversarial backfeeding: the paper's training proposal as a Lightning callback.

Szegedy et al. (2013), Section 4.2, trained a 100-100-10 network below 1.2% test error "by
keeping a pool of adversarial examples a random subset of which is continuously replaced by
newly generated adversarial examples and which is mixed into the original training set all
the time", with examples generated "for each layer's outputs" used "to train all the layers
above". :class:`AdversarialBackfeed` does exactly that for any model of the project: one
:class:`~callbacks.pool.AdversarialPool` per configured layer, refreshed on a schedule with
examples made against the current weights, and mixed into every training batch through
:meth:`trainers.ImageClassifier.mix_in`.

Under DDP every rank generates and keeps its own share of the pool (``pool_size /
world_size``); logged figures are reduced across ranks with torchmetrics; checkpoints hold
every rank's pool and random state (tensors and primitives only).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from typing_extensions import override

from intriguing.attacks import Attack, build_attack
from intriguing.callbacks.pool import AdversarialPool
from intriguing.configs import ConfigError
from intriguing.trainers import INPUT, ErrorRate

AttackFactory = Callable[[nn.Module, str], Attack]


def attack_factory(spec: Mapping[str, Any] | AttackFactory) -> AttackFactory:
    """A function ``(network, layer) -> Attack`` from an attack config mapping or itself."""
    if callable(spec):
        return spec
    settings = dict(spec)

    def make(network: nn.Module, layer: str) -> Attack:
        return build_attack(network, {**settings, "layer": None if layer == INPUT else layer})

    return make


class AdversarialBackfeed(Callback):
    """Keep pools of adversarial examples, refresh them continually, mix them into training.

    Args:
        pool_size: examples per pool, over all ranks together.
        mix_ratio: pool examples added to each training batch per clean example, in [0, 1]
            (0.5: a batch of 128 clean examples gets 64 from the pool).
        refresh_fraction: fraction of each pool replaced at every refresh, in (0, 1]; the new
            examples are made from clean training examples drawn from the batches since the
            last refresh (at most all of them).
        refresh_every_n_steps: a refresh happens every this many training steps (and at the
            first step); fewer, larger refreshes let batched attacks work efficiently.
        generator: the attack that makes new examples: an attack config mapping for
            :func:`attacks.build_attack` (``{"name": "lbfgs"}`` is the paper's) or a function
            ``(network, layer) -> Attack``.
        layers: layers that get a pool: ``"input"`` and/or hidden layer names of the model's
            staged network; a hidden layer's pool trains only the layers above it.
        alternate: when several layers are pooled, refresh and mix one pool per step in turn
            instead of all of them in every step.
        val_attack: fixed attack for the adversarial validation error, measured on the first
            ``val_subset`` validation examples of each process so that epochs are comparable
            (``None``: not measured).
        val_subset: validation examples attacked at every validation.
        seed: seed of the callback's own random generator (offset by the process rank).
    """

    def __init__(
        self,
        *,
        pool_size: int = 10_000,
        mix_ratio: float = 0.5,
        refresh_fraction: float = 0.01,
        refresh_every_n_steps: int = 1,
        generator: Mapping[str, Any] | AttackFactory | None = None,
        layers: Sequence[str] = (INPUT,),
        alternate: bool = False,
        val_attack: Mapping[str, Any] | AttackFactory | None = None,
        val_subset: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= mix_ratio <= 1.0:
            raise ConfigError(f"backfeed.mix_ratio={mix_ratio}: must be in [0, 1]")
        if not 0.0 < refresh_fraction <= 1.0:
            raise ConfigError(f"backfeed.refresh_fraction={refresh_fraction}: must be in (0, 1]")
        if refresh_every_n_steps < 1:
            raise ConfigError(
                f"backfeed.refresh_every_n_steps={refresh_every_n_steps}: must be at least 1"
            )
        if pool_size < 1:
            raise ConfigError(f"backfeed.pool_size={pool_size}: must be at least 1")
        if not layers:
            raise ConfigError("backfeed.layers: name at least one layer ('input' or hidden)")
        if val_subset < 0:
            raise ConfigError(f"backfeed.val_subset={val_subset}: must be non-negative")
        self.pool_size = int(pool_size)
        self.mix_ratio = float(mix_ratio)
        self.refresh_fraction = float(refresh_fraction)
        self.refresh_every_n_steps = int(refresh_every_n_steps)
        self.make_attack = attack_factory(generator or {"name": "lbfgs"})
        self.layers = list(dict.fromkeys(layers))
        self.alternate = bool(alternate)
        self.make_val_attack = attack_factory(val_attack) if val_attack is not None else None
        self.val_subset = int(val_subset)
        self.seed = int(seed)

        self.pools: dict[str, AdversarialPool] = {}
        self.rng = torch.Generator()
        self._pending_state: dict[str, Any] | None = None
        self._val_inputs: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._metrics: dict[str, MeanMetric | SumMetric | ErrorRate] = {}
        self._seconds: dict[str, float] = {}
        self._staged: list[tuple[Tensor, Tensor]] = []
        self.refreshes = 0
        self._trainer: pl.Trainer | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layers=self.layers, pool_size=self.pool_size)

    # ----------------------------------------------------------------------------- set-up

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._trainer = trainer
        network = getattr(pl_module, "network", None)
        if network is None or not hasattr(pl_module, "mix_in"):
            raise ConfigError(
                "backfeed: the model must be an ImageClassifier (a staged network with mix_in)"
            )
        for layer in self.layers:
            if layer not in network.layer_names or layer == network.layer_names[-1]:
                raise ConfigError(
                    f"backfeed.layers: {layer!r} is not a layer below the logits of this model; "
                    f"choose from {list(network.layer_names[:-1])}"
                )
        train_size = self._training_set_size(trainer)
        if train_size is not None and self.pool_size > train_size:
            raise ConfigError(
                f"backfeed.pool_size={self.pool_size} is larger than the training set "
                f"({train_size} examples)"
            )
        world, rank = trainer.world_size, trainer.global_rank
        share = self.pool_size // world + (1 if rank < self.pool_size % world else 0)
        dtype = next(pl_module.parameters()).dtype
        self.pools = {
            layer: AdversarialPool(max(1, share), network.layer_shape(layer), dtype=dtype)
            for layer in self.layers
        }
        self.rng.manual_seed(self.seed + rank)
        self._metrics = self._make_metrics()
        self._restore_pending(rank, world)

    def _make_metrics(self) -> dict[str, MeanMetric | SumMetric | ErrorRate]:
        """Logged names and their reductions over processes (see the class docstring)."""
        metrics: dict[str, MeanMetric | SumMetric | ErrorRate] = {}
        for layer in self.layers:
            prefix = f"backfeed/{layer}"
            metrics[f"{prefix}/success_rate"] = MeanMetric()  # of the attacks this epoch
            metrics[f"{prefix}/distortion"] = MeanMetric()  # of the successful ones
            metrics[f"{prefix}/generation_seconds"] = MeanMetric()  # per process and epoch
            metrics[f"{prefix}/generated"] = SumMetric()  # examples added this epoch
            metrics[f"{prefix}/pool_error"] = ErrorRate()  # current model on the pool
            metrics[f"{prefix}/pool_size"] = SumMetric()
            metrics[f"{prefix}/age_steps"] = MeanMetric()
        metrics["val/adv_error"] = ErrorRate()
        metrics["val/adv_distortion"] = MeanMetric()
        return metrics

    @staticmethod
    def _training_set_size(trainer: pl.Trainer) -> int | None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "tensors"):
            return len(datamodule.tensors("train")[1])
        return None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for pool in self.pools.values():
            pool.to(pl_module.device)
        for metric in self._metrics.values():
            metric.to(pl_module.device)

    # ---------------------------------------------------------------------------- training

    def _in_turn(self, turn: int) -> list[str]:
        """All pooled layers, or with ``alternate`` the one whose turn it is."""
        if self.alternate and len(self.layers) > 1:
            return [self.layers[turn % len(self.layers)]]
        return self.layers

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        x, y = batch[0], batch[1]
        step = trainer.global_step
        self._stage(x, y)
        if (step + 1) % self.refresh_every_n_steps == 0 or step == 0:
            sources = self._take_staged()
            # Refreshes take turns by their own count: by step, a period sharing a factor
            # with the number of layers would skip some layers for ever.
            for layer in self._in_turn(self.refreshes):
                self._refresh(pl_module, layer, *sources, step)
            self.refreshes += 1
        count = round(self.mix_ratio * len(y))
        if count == 0:
            return
        for layer in self._in_turn(step):
            pool = self.pools[layer]
            if pool.size:
                examples, labels = pool.sample(count, generator=self.rng)
                pl_module.mix_in(layer, examples, labels)

    def _refresh_count(self, layer: str) -> int:
        return math.ceil(self.refresh_fraction * self.pools[layer].capacity)

    def _stage(self, x: Tensor, y: Tensor) -> None:
        """Keep a random part of this batch as sources for the next refresh: a refresh every
        n steps then attacks examples drawn from all n batches since the last one."""
        wanted = max(self._refresh_count(layer) for layer in self.layers)
        per_step = min(len(y), math.ceil(wanted / self.refresh_every_n_steps))
        chosen = torch.randperm(len(y), generator=self.rng)[:per_step].to(y.device)
        self._staged.append((x[chosen].detach(), y[chosen].detach()))

    def _take_staged(self) -> tuple[Tensor, Tensor]:
        staged, self._staged = self._staged, []
        return torch.cat([x for x, _ in staged]), torch.cat([y for _, y in staged])

    def _refresh(
        self, pl_module: pl.LightningModule, layer: str, x: Tensor, y: Tensor, step: int
    ) -> None:
        """Replace ``refresh_fraction`` of the pool with examples made from the staged ones."""
        pool = self.pools[layer]
        count = min(len(y), self._refresh_count(layer))
        chosen = torch.randperm(len(y), generator=self.rng)[:count].to(y.device)
        started = time.perf_counter()
        attack = self.make_attack(pl_module.network, layer)
        result = attack(x[chosen], y[chosen])
        seconds = time.perf_counter() - started
        self._seconds[layer] = self._seconds.get(layer, 0.0) + seconds
        success = result.success
        prefix = f"backfeed/{layer}"
        self._metrics[f"{prefix}/success_rate"].update(success.float())
        if success.any():
            pool.add(result.adv[success], y[chosen][success], step=step, generator=self.rng)
            self._metrics[f"{prefix}/distortion"].update(result.distortion[success])
        self._metrics[f"{prefix}/generated"].update(success.sum().float())
        pl_module.log(f"{prefix}/step_generation_seconds", seconds, on_step=True, on_epoch=False)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Pool statistics, reduced over all processes: size, age, error of the current model."""
        step = trainer.global_step
        network = pl_module.network
        was_training = network.training
        network.eval()
        with torch.no_grad():
            for layer, pool in self.pools.items():
                prefix = f"backfeed/{layer}"
                examples, labels = pool.stored()
                for start in range(0, pool.size, 1000):
                    logits = network.forward_from(layer, examples[start : start + 1000])
                    self._metrics[f"{prefix}/pool_error"].update(
                        logits, labels[start : start + 1000]
                    )
                self._metrics[f"{prefix}/pool_size"].update(float(pool.size))
                self._metrics[f"{prefix}/generation_seconds"].update(self._seconds.pop(layer, 0.0))
                if pool.size:
                    self._metrics[f"{prefix}/age_steps"].update(pool.ages(step))
        network.train(was_training)
        for name in [n for n in self._metrics if n.startswith("backfeed/")]:
            self._log_metric(pl_module, name)

    def _log_metric(self, pl_module: pl.LightningModule, name: str) -> None:
        """Compute (a collective call on every rank), log the reduced value, reset."""
        metric = self._metrics[name]
        with warnings.catch_warnings():
            # A figure nothing fed this epoch (a layer not refreshed) is NaN; say nothing.
            warnings.filterwarnings("ignore", message=r".*called before the ``update``")
            value = metric.compute()
        metric.reset()
        if torch.isfinite(value):
            pl_module.log(name, value.float(), on_step=False, on_epoch=True, sync_dist=False)

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
            self._val_inputs.append(batch[0][: wanted - have].detach().clone())
            self._val_labels.append(batch[1][: wanted - have].detach().clone())

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Adversarial validation error with the fixed attack on the fixed subset."""
        if self.make_val_attack is None or trainer.sanity_checking or self.val_subset == 0:
            return
        if self._val_labels:
            x, y = torch.cat(self._val_inputs), torch.cat(self._val_labels)
            attack = self.make_val_attack(pl_module.network, INPUT)
            with torch.inference_mode(False), torch.enable_grad():
                result = attack(x.clone(), y.clone())
            with torch.no_grad():
                self._metrics["val/adv_error"].update(pl_module.network(result.adv), y)
            self._metrics["val/adv_distortion"].update(result.distortion)
        for name in ("val/adv_error", "val/adv_distortion"):
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
                if layer in mine["pools"]:
                    pool.load_state_dict(mine["pools"][layer])
            return
        for layer, pool in self.pools.items():
            parts = [r["pools"][layer] for r in ranks if layer in r["pools"]]
            if not parts:
                continue
            merged = {
                key: torch.cat([p[key] for p in parts])
                for key in ("examples", "labels", "made_at_step")
            }
            total = len(merged["labels"])
            mine_slice = slice(rank * total // world, (rank + 1) * total // world)
            pool.load_state_dict(
                {
                    "size": mine_slice.stop - mine_slice.start,
                    **{key: value[mine_slice] for key, value in merged.items()},
                }
            )
