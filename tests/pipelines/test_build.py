"""Typed configs reach the objects (issue 13, item 2): every key of a config section is the
keyword parameter of the same name of its object, or is excluded where the section is bound
(intriguing.registry.Binding), with one default; runs get the same arguments as before."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from intriguing.analysis.evaluation import AttackSettings
from intriguing.callbacks import (
    AdversarialBackfeed,
    PoolExamplesLogger,
    SpectralMonitor,
    TransferRobustness,
)
from intriguing.callbacks.registry import callback_entry, callback_names
from intriguing.callbacks.transfer import TRANSFER
from intriguing.configs import compose
from intriguing.configs.schema import BackfeedConfig, EvaluationConfig, ExperimentConfig
from intriguing.pipelines.build import (
    AUTOENCODER,
    BACKFEED,
    CHECKPOINT,
    SPECTRAL,
    TRAINER,
    build_trainer,
    checkpoint_callbacks,
    training_callbacks,
)
from intriguing.pipelines.evaluation import EVALUATION
from intriguing.registry import Binding, arguments, drifted_defaults, instantiate, load_target

#: Every registered callback's section (callbacks.registry), those under `callbacks` too.
CALLBACK_BINDINGS = tuple(callback_entry(name).binding for name in callback_names())
BINDINGS = (TRAINER, CHECKPOINT, AUTOENCODER, EVALUATION, *CALLBACK_BINDINGS)
#: Sections of ExperimentConfig that no Binding makes an object, and what takes them whole.
NOT_BOUND = {
    "model": "ImageClassifier(model=...) and the family registry (trainers.families)",
    "optim": "ImageClassifier(optim=...)",
    "data": "datamodules.build_datamodule",
    "logger": "pipelines.tracking.make_logger",
}
#: Defaults of our constructors that are not the config's, by design: (section, key) -> why.
#: The config's value is the one runs use.
DIFFERENT_DEFAULTS = {
    ("backfeed", "generator"): "None stands for {'name': 'lbfgs'}, the same attack",
    ("backfeed", "val_attack"): "None: no adversarial validation (documented); runs use FGSM",
    ("transfer", "attack"): "None stands for {'name': 'lbfgs'}, the same attack",
}


def test_the_callback_bindings_are_the_registered_ones() -> None:
    assert {BACKFEED.section, SPECTRAL.section, TRANSFER.section} <= {
        b.section for b in CALLBACK_BINDINGS
    }


def _schema(section: str) -> type:
    if section.startswith("callbacks."):
        return callback_entry(section.removeprefix("callbacks.")).config
    value: Any = ExperimentConfig()
    for part in section.split("."):
        value = getattr(value, part)
    return type(value)


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: b.section)
def test_every_key_of_a_section_is_a_parameter_or_excluded(binding: Binding) -> None:
    schema = _schema(binding.section)
    assert binding.unbound(f.name for f in fields(schema)) == []


def test_every_section_of_the_schema_is_bound_or_declared_whole() -> None:
    sections = {f.name for f in fields(ExperimentConfig) if is_dataclass(f.default_factory)}
    bound = {b.section.split(".")[0] for b in BINDINGS}
    assert sections - bound - set(NOT_BOUND) == set()


#: The bindings whose target is ours (Lightning's Trainer and ModelCheckpoint keep their own
#: defaults; the config's are the run's).
OURS = tuple(b for b in BINDINGS if load_target(b.target).__module__.startswith("intriguing."))


@pytest.mark.parametrize("binding", OURS, ids=lambda b: b.section)
def test_our_constructors_default_to_the_config_defaults(binding: Binding) -> None:
    drift = binding.drifted_defaults(_schema(binding.section))
    declared = {key for section, key in DIFFERENT_DEFAULTS if section == binding.section}
    assert set(drift) == declared, drift


def test_defaults_of_single_keys_taken_by_other_targets_agree() -> None:
    rename = {"log_examples_every_n_epochs": "every_n_epochs"}
    keys = list(rename)
    assert drifted_defaults(BackfeedConfig, PoolExamplesLogger, keys=keys, rename=rename) == {}
    rename = {"robust_steps": "steps"}
    keys = ["robust_steps", "pgd_steps", "pgd_restarts", "batch_size"]
    assert drifted_defaults(EvaluationConfig, AttackSettings, keys=keys, rename=rename) == {}


class Target:
    def __init__(self, size: int, *, rate: float = 0.5, seed: int = 0) -> None:
        self.size, self.rate, self.seed = size, rate, seed


def test_instantiate_passes_each_key_as_its_keyword() -> None:
    made = instantiate(
        Target, {"size": 3, "on": True, "lr": 0.1}, exclude=["on"], rename={"lr": "rate"}, seed=7
    )
    assert (made.size, made.rate, made.seed) == (3, 0.1, 7)
    assert instantiate(f"{__name__}:Target", {"size": 2}).size == 2


@pytest.mark.parametrize(
    ("values", "extra", "message"),
    [
        ({"size": 1, "width": 2}, {}, r"^sec\.width: not a parameter of .*:Target"),
        ({"size": 1, "seed": 2}, {"seed": 3}, r"^sec\.seed: given twice to .*:Target"),
        ({"size": 1, "lr": 2, "rate": 3}, {}, r"^sec\.rate: given twice"),
        ({"size": 1}, {"depth": 3}, r"^depth: not a parameter of .*:Target"),
    ],
)
def test_instantiate_refuses_unknown_and_doubled_keys(
    values: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        arguments(Target, values, section="sec", rename={"lr": "rate"}, **extra)


def test_an_excluded_key_lets_extra_give_that_parameter() -> None:
    assert instantiate(Target, {"size": 1, "seed": 9}, exclude=["seed"], seed=2).seed == 2


def test_a_binding_names_stale_declarations() -> None:
    binding = Binding("sec", Target, exclude={"gone": "why"}, rename={"lr": "rate"})
    assert binding.unbound(["size", "width"]) == [
        "sec.width: not a parameter of tests.pipelines.test_build:Target, nor excluded",
        "sec.gone: declared, but no key of the section",
        "sec.lr: declared, but no key of the section",
    ]


def test_the_autoencoder_section_gives_the_autoencoder_its_settings() -> None:
    section = {"hidden": 7, "sparsity_target": 0.1, "sparsity_weight": 0.2, "weight_decay": 0.0}
    section |= {"pretrain_epochs": 3, "pretrain_lr": 0.01}
    section |= {"encoder_checkpoint": None, "finetune_encoder": True}
    assert AUTOENCODER.arguments(section, input_shape=[1, 4, 4]) == {
        "hidden": 7,
        "sparsity_target": 0.1,
        "sparsity_weight": 0.2,
        "weight_decay": 0.0,
        "lr": 0.01,
        "input_shape": [1, 4, 4],
    }


def test_the_demo_preset_builds_the_same_trainer_and_callbacks(tmp_path: Path) -> None:
    config = compose(["experiment=demo", "logger=none"])
    final, best = checkpoint_callbacks(config, tmp_path, has_validation=True)
    assert best is not None
    callbacks = [final, best, *training_callbacks(config)]
    trainer = build_trainer(config, run_dir=tmp_path, callbacks=callbacks, logger=None)

    assert (trainer.max_epochs, trainer.max_steps, trainer.num_nodes) == (20, -1, 1)
    assert (trainer.precision, trainer.log_every_n_steps, trainer.fast_dev_run) == (
        "32-true",
        50,
        False,
    )
    assert trainer.check_val_every_n_epoch == 1
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (1.0, 1.0)
    assert trainer.limit_test_batches == 1.0
    assert trainer.gradient_clip_val is None
    assert trainer.test_loop.inference_mode is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert trainer.default_root_dir == str(tmp_path)
    assert trainer.logger is None and trainer.checkpoint_callback is final

    kinds = [type(c) for c in trainer.callbacks]
    assert kinds[:7] == [
        AdversarialBackfeed,
        PoolExamplesLogger,
        SpectralMonitor,
        TransferRobustness,
        TQDMProgressBar,
        ModelCheckpoint,
        ModelCheckpoint,
    ]
    backfeed, pool_logger, spectral, transfer, bar = trainer.callbacks[:5]
    assert isinstance(backfeed, AdversarialBackfeed)
    assert (backfeed.pool_size, backfeed.mix_ratio, backfeed.mix) == (5000, 0.5, "append")
    assert (backfeed.refresh_every_n_steps, backfeed.refresh_fraction) == (20, 0.02)
    assert (backfeed.layers, backfeed.alternate, backfeed.attack_current_batch) == (
        ["input"],
        False,
        False,
    )
    assert (backfeed.val_subset, backfeed.seed) == (500, 0)
    assert backfeed.make_val_attack is not None
    assert isinstance(pool_logger, PoolExamplesLogger) and pool_logger.every_n_epochs == 5
    assert isinstance(spectral, SpectralMonitor)
    assert (spectral.every_n_epochs, spectral.seed) == (5, 0)
    assert isinstance(transfer, TransferRobustness)
    assert transfer.attack == {"name": "lbfgs", "max_iterations": 100, "search_steps": 9}
    assert (transfer.every_n_epochs, transfer.subset, transfer.split) == (5, 200, "auto")
    assert (transfer.grid_examples, transfer.batch_size, transfer.seed) == (8, 500, 0)
    assert transfer.cache is None and transfer.zoo == {}
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == 50
    assert (final.filename, final.monitor, final.save_top_k, final.save_last) == (
        "last",
        None,
        1,
        False,
    )
    assert (best.filename, best.monitor, best.mode, best.save_top_k, best.save_last) == (
        "best-epoch{epoch:03d}",
        "val/error",
        "min",
        1,
        False,
    )
    assert best.dirpath == final.dirpath == str(tmp_path / "checkpoints")


def test_without_validation_or_val_subset_the_same_arguments_as_before(tmp_path: Path) -> None:
    words = ["experiment=demo", "logger=none", "data.val_size=0", "backfeed.val_subset=0"]
    words += ["trainer.limit_train_batches=3", "trainer.gradient_clip_val=1.0"]
    config = compose(words)
    final, best = checkpoint_callbacks(config, tmp_path, has_validation=False)
    assert best is None
    callbacks = [final, *training_callbacks(config)]
    trainer = build_trainer(
        config, run_dir=tmp_path, callbacks=callbacks, logger=None, max_epochs=2
    )
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.limit_val_batches) == (2, 3, 0)
    assert (trainer.num_sanity_val_steps, trainer.gradient_clip_val) == (0, 1.0)
    backfeed = trainer.callbacks[0]
    assert isinstance(backfeed, AdversarialBackfeed) and backfeed.make_val_attack is None
