"""Carlini-Wagner L2 (Carlini & Wagner 2017, "Towards evaluating the robustness of neural
networks", Section V.A), registered as the attack ``"cw"``.

Minimises ``|delta|_2^2 + c * f(x + delta)`` with Adam, where
``f = max(Z_y - max_{i != y} Z_i, -kappa)`` (untargeted; targeted:
``max(max_{i != t} Z_i - Z_t, -kappa)``) on the logits ``Z``, in the change of variables
``x + delta = lower + (upper - lower) * (tanh(w) + 1) / 2`` that keeps every iterate in the
box; ``c`` is found per example by binary search (``search_steps`` searches, starting at
``initial_c``, multiplied by 10 until the attack succeeds, then bisected). Of every iterate
that is adversarial with margin ``kappa`` (``confidence``), the smallest in L2 is returned;
examples never made adversarial are returned unchanged. Batched: each example has its own
``c`` and search; the losses are summed, so Adam's elementwise steps are each example's own.
Computed in the attack's dtype (float32, or float64 for a float64 model), as every attack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from intriguing.attacks.base import Attack, Problem, Statistic, adversarial_margin
from intriguing.attacks.registry import AttackSettings, register_attack

#: ``tanh(w)`` stays this far inside ``(-1, 1)`` at the start, so that ``atanh`` is finite.
_EDGE = 1e-6


@dataclass
class CWConfig(AttackSettings):
    """Settings of :class:`CarliniWagnerL2` (``None``: its defaults)."""

    confidence: float | None = None
    initial_c: float | None = None
    search_steps: int | None = None
    steps: int | None = None
    learning_rate: float | None = None


@register_attack("cw", CWConfig, label="C&W L2")
class CarliniWagnerL2(Attack):
    """Carlini-Wagner L2 attack (see the module's docstring).

    Args:
        model: the classifier (any ``nn.Module`` returning logits).
        confidence: ``kappa``, the logit margin an adversarial example must have (``>= 0``).
        initial_c: the first loss weight ``c`` of every example (``> 0``; the paper's 1e-3).
        search_steps: binary-search steps over ``c`` (``>= 1``; the paper's 9).
        steps: Adam steps per value of ``c`` (``>= 1``; the paper's 10,000, 1,000 here).
        learning_rate: Adam's step size in ``w`` (``> 0``; the paper's 1e-2).
        bounds, layer, mean, std: see :class:`attacks.Attack`; the box must be finite.

    Results carry ``c``, each example's weight of its returned adversarial (``nan`` where
    the attack failed), and ``gradient_evaluations = search_steps * steps`` per example.

    Raises:
        ValueError: for a setting out of range (naming it), and when called on a box with an
            infinite side (a ReLU layer without ``bounds``).
    """

    reports_c = True

    def __init__(
        self,
        model: nn.Module,
        *,
        confidence: float = 0.0,
        initial_c: float = 1e-3,
        search_steps: int = 9,
        steps: int = 1000,
        learning_rate: float = 1e-2,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
    ) -> None:
        super().__init__(model, bounds=bounds, layer=layer, mean=mean, std=std)
        checks = {
            "confidence": confidence >= 0 and math.isfinite(confidence),
            "initial_c": initial_c > 0 and math.isfinite(initial_c),
            "search_steps": search_steps >= 1,
            "steps": steps >= 1,
            "learning_rate": learning_rate > 0 and math.isfinite(learning_rate),
        }
        values = {
            "confidence": confidence,
            "initial_c": initial_c,
            "search_steps": search_steps,
            "steps": steps,
            "learning_rate": learning_rate,
        }
        for key, good in checks.items():
            if not good:
                raise ValueError(f"CarliniWagnerL2: {key}={values[key]!r} is out of range")
        self.confidence = float(confidence)
        self.initial_c = float(initial_c)
        self.search_steps = int(search_steps)
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)

    def _perturb(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        lower, upper = problem.lower, problem.upper
        if not (math.isfinite(lower) and math.isfinite(upper)):
            raise ValueError(
                f"CarliniWagnerL2: the box [{lower}, {upper}] must be finite (give bounds)"
            )
        origin = problem.origin
        batch = len(origin)
        width = upper - lower
        unit = ((origin - lower) / width * 2 - 1).clamp(-1 + _EDGE, 1 - _EDGE)
        start = torch.atanh(unit)
        c = origin.new_full((batch,), self.initial_c)
        low = torch.zeros_like(c)
        high = torch.full_like(c, math.inf)
        best = origin.clone()
        best_size = torch.full_like(c, math.inf)
        best_c = torch.full_like(c, math.nan)
        forward = problem.forward_at()
        for _ in range(self.search_steps):
            w = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.learning_rate)
            found = torch.zeros(batch, dtype=torch.bool, device=origin.device)
            for _ in range(self.steps):
                adv = lower + width * (torch.tanh(w) + 1) / 2
                logits = forward(adv)
                margin = adversarial_margin(logits, problem.labels, problem.target)
                size = (adv - origin).flatten(1).pow(2).sum(dim=1)
                loss = size + c * (-margin).clamp(min=-self.confidence)
                # The gradient of w only: the model's parameters' .grad stay untouched.
                (w.grad,) = torch.autograd.grad(loss.sum(), w)
                optimizer.step()
                with torch.no_grad():
                    hit = (margin > 0) & (margin >= self.confidence)
                    better = hit & (size < best_size)
                    best[better] = adv.detach()[better]
                    best_size = torch.where(better, size.detach(), best_size)
                    best_c = torch.where(better, c, best_c)
                    found |= hit
            high = torch.where(found, torch.minimum(high, c), high)
            low = torch.where(found, low, torch.maximum(low, c))
            c = torch.where(torch.isinf(high), c * 10, (low + high) / 2)
        evaluations = torch.full(
            (batch,), self.search_steps * self.steps, dtype=torch.long, device=origin.device
        )
        return best, evaluations, {"c": best_c}
