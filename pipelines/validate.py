"""Validate a run's whole configuration before anything trains (issue 13, items 2 and 6).

:func:`validate_run_config` builds, cheaply, what the run would build and checks what the
run would otherwise refuse only later: the data module's settings (its sizes against the data
set's, without loading any data), the model and the optimizer settings, every callback the
configuration enables (backfeed, pool examples, spectral monitor, transfer) with the pooled
layers checked against the built model (``experiment=demo backfeed.layers=[fc9]`` fails here,
naming ``backfeed.layers`` and the model's layers, instead of after a baseline trained), and
the ``evaluation`` section (including whether the ``eval`` extra is installed for the robust
attacks it names). Nothing is read from or written to disk, no data is loaded, no Trainer or
logger is made.

Every refusal is a :class:`~intriguing.configs.ConfigError` of one line naming the config
key: a library :class:`ValueError`/:class:`TypeError` raised while a section becomes an object
is mapped by :func:`intriguing.configs.config_error`.

Callers: ``intriguing train`` (also under ``--print-config``) calls it before anything else;
the training pipeline calls it at the start of a run and before a baseline trains (for the
pipelines package: call it first thing in ``train`` / ``train_with_baseline``).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from intriguing.configs import ConfigError, building, to_container
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.build import section_callbacks
from intriguing.pipelines.evaluation import check_evaluation
from intriguing.trainers import ImageClassifier
from intriguing.trainers.classifier import check_optim

__all__ = ["check_monitors", "validate_run_config"]

#: How many example inputs (zeros of the data set's shape) probe the built model.
PROBE_EXAMPLES = 2


def check_monitors(config: DictConfig) -> None:
    """Refuse a callback under ``callbacks`` that monitors a validation metric (``monitor:
    val/...``, as ``early_stopping`` does by default) in a run without a validation split
    (``data.val_size=0``, as the paper's presets): Lightning would stop the run after its
    first epoch.

    Raises:
        ConfigError: naming the callback's ``monitor`` key.
    """
    if config.data.val_size:
        return
    for name, section in (config.callbacks or {}).items():
        monitor = section.get("monitor") if section is not None else None
        if isinstance(monitor, str) and monitor.startswith("val/"):
            raise ConfigError(
                f"callbacks.{name}.monitor={monitor}: this run has no validation split "
                "(data.val_size=0); hold out images (data.val_size=5000) or monitor a "
                "train/ metric"
            )


def validate_run_config(config: DictConfig) -> None:
    """Refuse, in about a second and before anything trains, a composed run configuration
    that the run would refuse later.

    Builds the data module (settings only: :class:`~intriguing.datamodules.ImageDataModule`
    loads nothing at construction), the model (:class:`~intriguing.trainers.ImageClassifier`,
    on the CPU), checks the ``optim`` section (:func:`~intriguing.trainers.classifier.check_optim`),
    builds the callbacks the run would (``pipelines.build.section_callbacks``) and lets each
    that has a ``check_module(module, example)`` method check the built model with
    :data:`PROBE_EXAMPLES` zero inputs (:meth:`AdversarialBackfeed.check_module`: each pooled
    layer exists, runs once, and is not the output; :meth:`SpectralMonitor.check_module`: its
    target module exists; a user's callback may define one too), refuses a ``val/`` monitor
    without a validation split (:func:`check_monitors`), and checks the ``evaluation``
    section (``check_evaluation``, which names ``intriguing[eval]`` when the robust attacks
    need torchattacks and it is missing).

    Args:
        config: a composed configuration (:func:`intriguing.configs.compose`).

    Raises:
        ConfigError: the first problem, in one line naming the config key
            (``"backfeed.layers: 'fc9': unknown layer 'fc9' in ImageClassifier: its layers
            are ..."``).
    """
    container = to_container(config)
    with building("data"):
        datamodule = build_datamodule(container["data"])
    with building("optim"):
        check_optim(container["optim"])
    with building("model"):
        model = ImageClassifier(
            model=container["model"],
            optim=container["optim"],
            input_shape=list(datamodule.input_shape),
            num_classes=datamodule.num_classes,
        )
    sections = section_callbacks(config)  # ConfigError naming the key, at construction
    check_monitors(config)
    example = torch.zeros(PROBE_EXAMPLES, *datamodule.input_shape)
    for section, callbacks in sections:
        for callback in callbacks:
            check = getattr(callback, "check_module", None)
            if callable(check):  # a callback that can check the model it will run on
                with building(section), torch.no_grad():
                    check(model, example)
    check_evaluation(config)
