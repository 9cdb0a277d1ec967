"""SpectralMonitor: the per-layer Lipschitz bounds of a model while it trains.

Szegedy et al. (2013, Section 4.3) bound a network's instability by its layers' operator
norms. Logged every few epochs, these bounds show how weight decay and adversarial
backfeeding change each layer's worst-case amplification, next to the empirical minimum
distortion. The numbers come from :func:`analysis.spectral.spectral_bounds`: stage by stage
for the project's :class:`~trainers.stages.StagedNetwork`, composed over the traced graph of
any other ``nn.Module`` (residual connections included).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from typing_extensions import override

from intriguing.analysis.spectral import ModelBounds, SpectralBounds, spectral_bounds
from intriguing.callbacks.batches import BatchKey, batch_entry, check_batch_key, describe_batch
from intriguing.trainers.stages import StagedNetwork


def batch_input_shape(batch: Any, input_key: BatchKey = 0) -> tuple[int, ...]:
    """Shape of one example of a batch's input (batch dimension dropped).

    ``batch`` is a tensor (the input itself), or a tuple, list or mapping whose entry
    ``input_key`` is the input (:func:`~callbacks.batches.batch_entry`, as the other
    callbacks' ``input_key``).

    Raises:
        ValueError: naming ``input_key``, when the batch has no such entry or it is not a
            tensor of shape ``(B, ...)``.
        TypeError: a batch that is not a tensor, tuple, list or mapping.
    """
    value = batch if isinstance(batch, Tensor) else batch_entry(batch, input_key)
    if not isinstance(value, Tensor) or value.dim() < 2:
        raise ValueError(
            f"input_key={input_key!r}: the batch's input must be a tensor of shape (B, ...), "
            f"got {describe_batch(value)}; the batch is {describe_batch(batch)}"
        )
    return tuple(int(d) for d in value.shape[1:])


#: Iterations per operator norm when the monitor checks a model before training.
CHECK_ITERATIONS = 3


class SpectralMonitor(Callback):
    """Logs every layer's Lipschitz bound and the model's, every ``every_n_epochs`` epochs.

    Which module is bounded: ``module`` names a submodule of the LightningModule by its
    dotted name (``"network"``, ``"model.backbone"``); by default it is ``pl_module.network``
    when that is a :class:`~trainers.stages.StagedNetwork`, else the LightningModule itself
    (its ``forward``). A StagedNetwork logs ``{prefix}<stage>`` and ``{prefix}product`` (the
    paper's Table 5); any other module ``{prefix}<layer>`` for every bounded layer (its name
    in the model; ``#2`` on a module's later calls) and ``{prefix}network``, the bound
    composed over its ``torch.fx`` graph (residual sums add, see
    :func:`~analysis.spectral.module_bounds`). A layer without a known bound is refused with
    an error that names it and shows how to register one, before the first training step.

    The bounds are those of the module in eval mode, computed after the epoch's training
    steps, at ``input_shape`` (one example's shape; by default the StagedNetwork's own, or
    that of the first training batch's input: the batch itself, or ``batch[input_key]``).
    Operator norms use Lanczos iteration warm-started from the previous epoch's top singular
    vectors (``dense_limit=0`` by default). Every rank computes
    the same numbers from the same weights and seed, with no collective calls; scalars go
    through ``pl_module.log``, and rank zero also logs a ``wandb.Table`` of every layer when a
    :class:`~lightning.pytorch.loggers.WandbLogger` is attached.

    Args:
        every_n_epochs: compute after every n-th training epoch.
        module: dotted name of the submodule to bound (``None``: see above).
        input_shape: shape of one example at that module's input (``None``: see above).
        input_key: where the input is in a batch: an index of a tuple or list batch, or a
            mapping's key (as in the other callbacks).
        dense_limit, tol, max_iter: passed to :func:`~analysis.spectral.spectral_bounds`.
        seed: seed of the first starting vectors.
        log_table: log the per-layer table to W&B (rank zero).
        prefix: prefix of the logged names.

    Raises:
        ValueError: an argument out of range (the message names it); at setup or the first
            batch, a ``module`` the LightningModule lacks, a batch without its input at
            ``input_key``, or a model without a bound (``LipschitzBoundError``).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        *,
        module: str | None = None,
        input_shape: Sequence[int] | None = None,
        input_key: BatchKey = 0,
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
        if module is not None and (not isinstance(module, str) or not module):
            raise ValueError(f"module={module!r}: must be a submodule's dotted name or None")
        if input_shape is not None:
            shape = tuple(input_shape)
            if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(
                    f"input_shape={input_shape!r}: must be positive sizes of one example"
                )
        check_batch_key(input_key, "input_key")
        if dense_limit < 0:
            raise ValueError(f"dense_limit={dense_limit}: must be at least 0")
        if not tol > 0:
            raise ValueError(f"tol={tol}: must be positive")
        if max_iter < 1:
            raise ValueError(f"max_iter={max_iter}: must be at least 1")
        self.every_n_epochs = every_n_epochs
        self.module = module
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.input_key = input_key
        self.dense_limit, self.tol, self.max_iter, self.seed = dense_limit, tol, max_iter, seed
        self.log_table = log_table
        self.prefix = prefix
        self.vectors: dict[str, Tensor] = {}
        self.history: list[dict[str, float]] = []
        self.last: SpectralBounds | ModelBounds | None = None
        self._batch_shape: tuple[int, ...] | None = None
        self._checked = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(every_n_epochs=self.every_n_epochs, prefix=self.prefix)

    def target(self, pl_module: pl.LightningModule) -> nn.Module:
        """The module whose bounds are logged (see the class docstring)."""
        if self.module is None:
            network = getattr(pl_module, "network", None)
            if isinstance(network, StagedNetwork):
                return network
            if type(pl_module).forward is pl.LightningModule.forward:
                raise ValueError(
                    f"module=None: {type(pl_module).__name__} defines no forward() to bound; "
                    "pass module= the dotted name of the submodule that computes its output"
                )
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError as error:
            raise ValueError(
                f"module={self.module!r}: {type(pl_module).__name__} has no such submodule "
                f"({error})"
            ) from error

    def check_module(self, pl_module: nn.Module, example: Tensor | None = None) -> None:
        """Check, before any training, that :meth:`target` finds the module to bound in
        ``pl_module`` (``example`` is not needed; a config validator passes one to every
        callback that checks the model: :func:`intriguing.pipelines.validate.validate_run_config`).

        Raises:
            ValueError: naming ``module``, as :meth:`target`.
        """
        del example
        self.target(pl_module)  # type: ignore[arg-type]

    def _shape(self, target: nn.Module) -> tuple[int, ...] | None:
        if self.input_shape is not None:
            return self.input_shape
        if isinstance(target, StagedNetwork):
            return target.input_shape
        return self._batch_shape

    def compute(
        self,
        module: nn.Module,
        input_shape: Sequence[int] | None = None,
        *,
        max_iter: int | None = None,
    ) -> SpectralBounds | ModelBounds:
        """The bounds of ``module`` now, warm-started from (and updating) ``self.vectors``;
        ``max_iter`` (default the monitor's) caps the iterations of each operator norm."""
        return spectral_bounds(
            module,
            input_shape,
            warm_start=self.vectors,
            dense_limit=self.dense_limit,
            tol=self.tol,
            max_iter=self.max_iter if max_iter is None else max_iter,
            seed=self.seed,
        )

    def _check(self, pl_module: pl.LightningModule) -> None:
        # Refuse an unsupported model before training starts: the whole graph is traced and
        # every layer bounded, but with a few iterations per operator norm (the first full
        # computation, at the end of the epoch, starts from the vectors they leave).
        target = self.target(pl_module)
        shape = self._shape(target)
        if shape is not None:
            with warnings.catch_warnings():  # a few iterations are not meant to converge
                warnings.filterwarnings("ignore", message="Lanczos iteration did not reach")
                self.compute(
                    target,
                    None if isinstance(target, StagedNetwork) else shape,
                    max_iter=min(self.max_iter, CHECK_ITERATIONS),
                )
            self._checked = True

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._checked = False
            self._check(pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._checked:
            return
        self._batch_shape = batch_input_shape(batch, self.input_key)
        self._check(pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        target = self.target(pl_module)
        shape = self._shape(target)
        if shape is None:  # no training batch has been seen
            return
        bounds = self.compute(target, None if isinstance(target, StagedNetwork) else shape)
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
            "batch_shape": None if self._batch_shape is None else list(self._batch_shape),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.vectors = dict(state_dict.get("vectors", {}))
        self.history = [dict(entry) for entry in state_dict.get("history", [])]
        shape = state_dict.get("batch_shape")
        self._batch_shape = None if shape is None else tuple(int(d) for d in shape)
