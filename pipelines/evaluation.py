"""A run's ``evaluation`` section: checked before training (:func:`check_evaluation`) and
measured after it on the first test images (:func:`evaluate`), both through
:func:`analysis.robustness.measure_robustness`, whose keyword parameters are the section's
keys (:data:`EVALUATION`)."""

from __future__ import annotations

import lightning.pytorch as pl
from omegaconf import DictConfig

from intriguing.analysis.robustness import (
    OWN_ATTACKS,
    check_robust_settings,
    measure_robustness,
)
from intriguing.configs import ConfigError, building, to_container
from intriguing.registry import Binding, keyword_parameters
from intriguing.trainers import (
    ImageClassifier,
)

#: How the ``evaluation`` section becomes its figures (intriguing.registry.Binding): every key
#: is the keyword parameter of the same name of measure_robustness, save those excluded here.
EVALUATION = Binding(
    "evaluation",
    measure_robustness,
    exclude={"subset": "how many test images evaluate passes (0: no evaluation)"},
)


def check_evaluation(config: DictConfig) -> None:
    """Refuse, before anything is trained, an ``evaluation`` section that would only fail
    after training: a robust attack not known, a bad budget, strength or batch size, or
    torchattacks missing for APGD or AutoAttack (the message names ``intriguing[eval]``).
    The checks are :func:`analysis.robustness.check_robust_settings`, those
    :func:`evaluate` runs first.

    Raises:
        ConfigError: naming the ``evaluation`` key and its value
            (``"evaluation.pgd_restarts=0: must be at least 1"``).
    """
    section = to_container(config)["evaluation"]
    if not section["subset"]:
        return
    checked = keyword_parameters(check_robust_settings) or {}  # keys of the section
    with building("evaluation"):
        try:
            check_robust_settings(**{k: v for k, v in section.items() if k in checked})
        except ImportError as error:
            ours = ",".join(a for a in section["robust_attacks"] if a in OWN_ATTACKS)
            raise ConfigError(
                f"evaluation.{error} (or only our attacks: "
                f"evaluation.robust_attacks=[{ours or 'pgd,fgsm'}])"
            ) from None


def evaluate(
    config: DictConfig, module: ImageClassifier, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    """The ``evaluation`` section's robustness figures on the first ``subset`` test images:
    clean error, robust error at each budget (on the first ``robust_subset`` of them), the
    fixed-budget attack's error and the mean minimum distortion
    (:func:`analysis.robustness.measure_robustness`), as the run's ``eval/`` metrics.

    Raises:
        ValueError, TypeError, ImportError: what ``measure_robustness`` raises for a bad
            argument (:func:`check_evaluation` refuses those before training).
    """
    datamodule.setup("test")
    images, labels = datamodule.tensors("test")
    count = min(config.evaluation.subset, len(labels))
    robustness = EVALUATION(
        to_container(config)["evaluation"],
        model=module.network,
        images=images[:count],
        labels=labels[:count],
        progress=config.trainer.enable_progress_bar,
    )
    return robustness.as_metrics("eval/")
