"""Gaussian noise: the paper's control rows (Szegedy et al. 2013, Tables 1, 2 and 4).

The paper compares adversarial examples with Gaussian noise of stddev 0.1 and 0.3 (and 0.06,
the adversarial examples' distortion). :class:`GaussianNoise` adds noise of a given stddev,
or scales each example's noise so that its distortion matches a given value (for example the
distortion of that example's adversarial), and reports how often that misclassifies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from intriguing.attacks.base import AttackResult, Problem, Statistic, scale_to_distortion
from intriguing.attacks.budget import BudgetAttack, _per_example

_MATCHING_STEPS = 40  # bisection steps when scaling noise to a distortion


class GaussianNoise(BudgetAttack):
    """Add Gaussian noise, projected onto the box.

    Give ``stddev`` (noise ``N(0, stddev^2)`` per element) or ``distortion`` (each example's
    noise scaled so that the paper's distortion of the result, after the projection onto the
    box, is this value; where the box makes it unreachable, the largest reachable), which
    takes precedence. A per-example tensor of distortions can be passed to the call
    instead (required when both are None)::

        GaussianNoise(model, stddev=0.1)(x, y)
        GaussianNoise(model, distortion=0.058)(x, y)
        GaussianNoise(model, stddev=None)(x, y, distortion=lbfgs_result.distortion)

    ``success`` is misclassification (or the target's class); no gradients are evaluated.
    """

    name = "noise"

    def __init__(
        self,
        model: nn.Module,
        *,
        stddev: float | None = 0.1,
        distortion: float | None = None,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if distortion is not None:
            stddev = None
        matched = stddev is None
        budget = float(stddev if stddev is not None else (distortion or 0.0))
        super().__init__(
            model,
            budget=budget,
            bounds=bounds,
            layer=layer,
            generator=generator,
            mean=mean,
            std=std,
        )
        self.matched = matched
        self.uses_randomness = True
        #: With neither stddev nor distortion, every call must give ``distortion``.
        self.needs_distortion = stddev is None and distortion is None

    @property
    def stddev(self) -> float | None:
        return None if self.matched else self.budget

    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        target: Tensor | None = None,
        *,
        distortion: Tensor | float | None = None,
    ) -> AttackResult:
        """Noise of the configured size, or matched to ``distortion`` (one per example)."""
        if distortion is None:
            if self.needs_distortion:
                raise ValueError(
                    "GaussianNoise: give stddev or distortion (here, or to the constructor)"
                )
            return super().__call__(x, y, target)
        wanted = torch.as_tensor(distortion, dtype=torch.float32, device=x.device)
        wanted = wanted.expand(x.shape[:1]) if wanted.ndim == 0 else wanted
        if wanted.shape != x.shape[:1]:
            raise ValueError(
                f"distortion has shape {tuple(wanted.shape)}; expected ({x.shape[0]},) or a number"
            )
        bad = ~torch.isfinite(wanted) | (wanted < 0)
        if bad.any():
            rows = bad.nonzero().flatten().tolist()[:8]
            raise ValueError(f"distortion must be finite and >= 0 (examples {rows})")

        def perturb(problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
            with self._random_source(problem.origin.device):
                return self._matched(problem, wanted.to(problem.origin))

        return self._run(x, y, target, perturb)

    def _largest_budget(self, problem: Problem) -> float:
        return problem.upper - problem.lower

    def _perturb_with(
        self, problem: Problem, budget: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self.matched:
            return self._matched(problem, budget)
        origin = problem.origin
        adv = problem.clamp(origin + _per_example(budget, origin) * self._randn(origin))
        return adv, torch.zeros(len(origin), dtype=torch.long, device=origin.device), {}

    def _matched(
        self, problem: Problem, wanted: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Noise scaled per example (by bisection) to the distortion ``wanted``."""
        origin = problem.origin
        adv = scale_to_distortion(
            origin,
            self._randn(origin),
            wanted,
            bounds=(problem.lower, problem.upper),
            steps=_MATCHING_STEPS,
        )
        return adv, torch.zeros(len(origin), dtype=torch.long, device=origin.device), {}
