"""A run's ``evaluation`` section: checked before training (:func:`check_evaluation`) and
measured after it on the first test images (:func:`evaluate`, through
:mod:`analysis.robustness`)."""

from __future__ import annotations

import lightning.pytorch as pl
from omegaconf import DictConfig

from intriguing.analysis.evaluation import AttackSettings
from intriguing.analysis.robustness import (
    OWN_ATTACKS,
    check_budgets,
    check_robust_attacks,
    evaluate_robustness,
)
from intriguing.configs import ConfigError, to_container
from intriguing.trainers import (
    ImageClassifier,
)


def check_evaluation(config: DictConfig) -> None:
    """Refuse, before anything is trained, an ``evaluation`` section that would only fail
    after training: a robust attack not known, a bad budget or strength, or torchattacks
    missing for APGD or AutoAttack (the message names ``intriguing[eval]``).

    Raises:
        ConfigError: naming the ``evaluation`` key and its value.
    """
    section = config.evaluation
    if not section.subset:
        return
    robust = section.robust_subset
    if robust is not None and robust < 0:
        raise ConfigError(f"evaluation.robust_subset={robust}: must be 0 (none), more, or null")
    attacks = list(section.robust_attacks)
    if robust == 0 or not attacks:
        return
    for key in ("robust_steps", "pgd_steps", "pgd_restarts"):
        if section[key] < 1:
            raise ConfigError(f"evaluation.{key}={section[key]}: must be at least 1")
    for norm, epsilons in robust_epsilons(config).items():
        try:
            check_budgets(norm, epsilons)
        except ValueError as error:
            raise ConfigError(f"evaluation.{norm}_epsilons={epsilons}: {error}") from None
    named = f"evaluation.robust_attacks=[{', '.join(attacks)}]"
    try:
        check_robust_attacks(attacks)
    except ValueError as error:
        raise ConfigError(f"{named}: {error}") from None
    except ImportError as error:
        ours = ",".join(a for a in attacks if a in OWN_ATTACKS) or "pgd,fgsm"
        raise ConfigError(
            f"{named}: {error} (or only our attacks: evaluation.robust_attacks=[{ours}])"
        ) from None


def robust_epsilons(config: DictConfig) -> dict[str, list[float]]:
    """The ``evaluation`` section's robust-error budgets per norm (``linf``, ``l2``)."""
    section = config.evaluation
    return {
        "linf": [float(e) for e in section.linf_epsilons],
        "l2": [float(e) for e in section.l2_epsilons],
    }


def evaluate(
    config: DictConfig, module: ImageClassifier, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    """The ``evaluation`` section's robustness figures on the first test images: clean error,
    robust error at each budget (on the first ``robust_subset`` of them), the fixed-budget
    attack's error and the mean minimum distortion (:mod:`analysis.robustness`)."""
    datamodule.setup("test")
    images, labels = datamodule.tensors("test")
    count = min(config.evaluation.subset, len(labels))
    section = to_container(config)["evaluation"]
    robustness = evaluate_robustness(
        module.network,
        images[:count],
        labels[:count],
        attack=section["attack"],
        distortion_attack=section["distortion_attack"],
        batch_size=section["batch_size"],
        progress=config.trainer.enable_progress_bar,
        robust_attacks=section["robust_attacks"],
        epsilons=robust_epsilons(config),
        robust_examples=section["robust_subset"],
        settings=AttackSettings(
            steps=section["robust_steps"],
            pgd_steps=section["pgd_steps"],
            pgd_restarts=section["pgd_restarts"],
        ),
    )
    return robustness.as_metrics("eval/")
