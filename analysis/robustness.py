"""How robust a trained classifier is: clean error, error under a fixed-budget attack, and
the paper's average minimum distortion (Szegedy et al. 2013, Table 1's last column)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from intriguing.attacks import build_attack, minimum_distortion


@dataclass
class Robustness:
    """Robustness figures of one model on one set of examples.

    Attributes:
        clean_error: error on the clean examples.
        adversarial_error: error under the fixed-budget attack (e.g. FGSM, L-inf 0.1).
        min_distortion: mean minimum distortion ``sqrt(sum r^2 / n)`` that the minimum-
            distortion attack (L-BFGS by default) needs to misclassify each example, over the
            examples it succeeded on; already misclassified examples count with 0.
        min_distortion_success: fraction of examples the minimum-distortion attack fooled.
        examples: how many examples were evaluated.
        seconds: wall time of both attacks.
    """

    clean_error: float
    adversarial_error: float
    min_distortion: float
    min_distortion_success: float
    examples: int
    seconds: float

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {f"{prefix}{key}": float(value) for key, value in asdict(self).items()}


def evaluate_robustness(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    attack: Mapping[str, Any],
    distortion_attack: Mapping[str, Any],
    batch_size: int = 500,
    progress: bool = False,
) -> Robustness:
    """Clean error, error under ``attack`` and mean minimum distortion under
    ``distortion_attack`` (attack config mappings for :func:`attacks.build_attack`)."""
    started = time.perf_counter()
    budget_attack = build_attack(model, attack)
    wrong_clean = wrong_adversarial = 0
    batches = [
        (images[i : i + batch_size], labels[i : i + batch_size])
        for i in range(0, len(labels), batch_size)
    ]
    for x, y in batches:
        result = budget_attack(x, y)
        wrong_clean += int((result.clean_logits.argmax(dim=1) != y).sum())
        wrong_adversarial += int((result.logits.argmax(dim=1) != y).sum())
    summary = minimum_distortion(
        model,
        batches,
        attack=build_attack(model, distortion_attack),
        progress=progress,
        description="minimum distortion",
    )
    count = max(1, len(labels))
    return Robustness(
        clean_error=wrong_clean / count,
        adversarial_error=wrong_adversarial / count,
        min_distortion=summary.mean_distortion,
        min_distortion_success=summary.success_rate,
        examples=len(labels),
        seconds=time.perf_counter() - started,
    )
