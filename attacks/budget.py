"""Attacks with a fixed budget: FGSM and PGD (the norm ball's radius ``epsilon``).

A budget attack perturbs each example within its budget and reports whether that sufficed.
:meth:`BudgetAttack.minimal` turns one into a minimum-distortion attack by bisecting the
budget per example, which is how the baselines enter the paper's Table 1 column
(:func:`attacks.minimum_distortion`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from intriguing.attacks.base import (
    Attack,
    AttackResult,
    Problem,
    Statistic,
    distortion,
    is_adversarial,
    loss_and_gradient,
)

NORMS = ("linf", "l2")
#: The iterates :class:`PGD` can return (its ``keep`` argument).
PGD_KEEP = ("adversarial", "last")


class BudgetAttack(Attack):
    """An attack whose strength is one number per example (``budget``).

    Subclasses implement :meth:`_perturb_with` for a per-example budget tensor; calling the
    attack uses the configured budget for every example.

    Args:
        budget: the strength, finite and at least 0 (the subclass's unit: a radius for FGSM
            and PGD, a standard deviation for noise).
        budget_name: the subclass's public name for ``budget`` (``"epsilon"``), used in the
            error message.

    Raises:
        ValueError: a ``budget`` that is negative, infinite or NaN
            (``"FGSM: epsilon=-0.1: must be finite and at least 0"``).
    """

    budget: float

    def __init__(
        self,
        model: nn.Module,
        *,
        budget: float,
        budget_name: str = "budget",
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, bounds=bounds, layer=layer, mean=mean, std=std)
        if not budget >= 0 or not math.isfinite(budget):
            raise ValueError(
                f"{type(self).__name__}: {budget_name}={budget!r}: must be finite and at least 0"
            )
        self.budget = float(budget)
        self.generator = generator
        #: Whether the attack draws random numbers (through :meth:`_randn`, :meth:`_rand`).
        self.uses_randomness = False
        self._random: torch.Generator | None = None

    @abstractmethod
    def _perturb_with(
        self, problem: Problem, budget: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Like :meth:`Attack._perturb`, with each example's own budget."""

    def _perturb(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        budget = problem.origin.new_full((len(problem.origin),), self.budget)
        with self._random_source(problem.origin.device):
            return self._perturb_with(problem, budget)

    def _largest_budget(self, problem: Problem) -> float:
        """The budget past which growing it cannot help (``inf`` when there is none)."""
        return math.inf

    def minimal(
        self, x: Tensor, y: Tensor, target: Tensor | None = None, *, steps: int = 12
    ) -> AttackResult:
        """The smallest budget per example that succeeds, found by bisection.

        Starting at the configured budget, each example's budget doubles until the attack
        succeeds (or the budget cannot usefully grow), then is bisected; ``steps`` attacks
        in all. Of the successful tries, the one with the smallest distortion is returned.
        Random attacks (PGD's random start, noise) draw the same randomness at every step,
        so that only the budget changes.
        """
        if steps < 1:
            raise ValueError(f"minimal: steps={steps!r}: must be at least 1")
        return self._run(x, y, target, lambda problem: self._search(problem, steps))

    def _search(self, problem: Problem, steps: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        batch = len(problem.origin)
        origin = problem.origin
        device = origin.device
        best = origin.clone()
        with torch.no_grad():
            clean = is_adversarial(problem.logits(origin).float(), problem.labels, problem.target)
        best_distortion = torch.where(clean, 0.0, math.inf).to(origin)
        evaluations = torch.zeros(batch, dtype=torch.long, device=device)
        ceiling = self._largest_budget(problem)
        first = self.budget if self.budget > 0 else 0.1 * min(ceiling, 1.0)
        budget = origin.new_full((batch,), first)
        lower = torch.zeros_like(budget)
        upper = torch.full_like(budget, math.inf)
        with self._random_source(device) as random:
            start = None if random is None else random.get_state()
            for _ in range(steps):
                if random is not None and start is not None:
                    random.set_state(start)
                adv, used, _ = self._perturb_with(problem, budget)
                adv = problem.clamp(adv.detach())
                evaluations += used.to(evaluations)
                with torch.no_grad():
                    logits = problem.logits(adv).float()
                success = is_adversarial(logits, problem.labels, problem.target)
                size = distortion(adv, origin)
                better = success & (size < best_distortion)
                best[better] = adv[better]
                best_distortion = torch.where(better, size, best_distortion)
                upper = torch.where(success, torch.minimum(upper, budget), upper)
                lower = torch.where(success, lower, torch.maximum(lower, budget))
                grown = (budget * 2).clamp(max=ceiling)
                budget = torch.where(torch.isinf(upper), grown, (lower + upper) / 2)
        return best, evaluations, {}

    @contextmanager
    def _random_source(self, device: torch.device) -> Iterator[torch.Generator | None]:
        """The generator of one call: the user's, or a fresh one seeded from torch's RNG."""
        if not self.uses_randomness:
            yield None
            return
        generator = self.generator
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)))
            generator = torch.Generator(device=device).manual_seed(seed)
        self._random = generator
        try:
            yield generator
        finally:
            self._random = None

    def _randn(self, like: Tensor) -> Tensor:
        generator = self._random
        if generator is None:
            return torch.randn_like(like)
        noise = torch.randn(like.shape, generator=generator, device=generator.device)
        return noise.to(like)

    def _rand(self, like: Tensor) -> Tensor:
        generator = self._random
        if generator is None:
            return torch.rand_like(like)
        values = torch.rand(like.shape, generator=generator, device=generator.device)
        return values.to(like)


def _check_norm(norm: str) -> str:
    norm = str(norm).lower()
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}: expected one of {', '.join(NORMS)}")
    return norm


def _per_example(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (one per example) shaped to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def _ascent(grad: Tensor, norm: str) -> Tensor:
    """Unit step that lowers the attack loss fastest in ``norm``: ``-sign(g)`` or ``-g/|g|``."""
    if norm == "linf":
        return -grad.sign()
    length = grad.flatten(1).norm(dim=1).clamp(min=1e-12)
    return -grad / _per_example(length, grad)


def _into_ball(delta: Tensor, epsilon: Tensor, norm: str) -> Tensor:
    """Projection of ``delta`` onto the ``norm`` ball of radius ``epsilon`` per example."""
    if norm == "linf":
        radius = _per_example(epsilon, delta)
        return torch.maximum(torch.minimum(delta, radius), -radius)
    length = delta.flatten(1).norm(dim=1)
    factor = (epsilon / length.clamp(min=1e-12)).clamp(max=1.0)
    return delta * _per_example(factor, delta)


class FGSM(BudgetAttack):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``epsilon``.

    ``norm="linf"``: ``x + epsilon * sign(grad)``; ``"l2"``: ``x + epsilon * grad / |grad|``;
    the gradient is that of the label's loss (untargeted, ascended) or of the target's
    (targeted, descended); the result is projected onto the box.

    Raises:
        ValueError: an ``epsilon`` that is negative or not finite, or a ``norm`` other than
            ``"linf"``/``"l2"``.
    """

    name = "fgsm"

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 0.1,
        norm: str = "linf",
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
    ) -> None:
        super().__init__(
            model,
            budget=epsilon,
            budget_name="epsilon",
            bounds=bounds,
            layer=layer,
            mean=mean,
            std=std,
        )
        self.norm = _check_norm(norm)

    @property
    def epsilon(self) -> float:
        return self.budget

    def _largest_budget(self, problem: Problem) -> float:
        width = problem.upper - problem.lower
        if self.norm == "l2":
            width *= math.sqrt(problem.origin[0].numel())
        return width

    def _perturb_with(
        self, problem: Problem, budget: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        origin = problem.origin
        _, grad, _ = loss_and_gradient(problem.forward_at(), origin, problem.labels, problem.target)
        step = _per_example(budget, origin) * _ascent(grad, self.norm)
        evaluations = torch.ones(len(origin), dtype=torch.long, device=origin.device)
        return problem.clamp(origin + step), evaluations, {}


class PGD(BudgetAttack):
    """Projected gradient descent (Madry et al. 2018) in the L-inf or L2 ball.

    ``steps`` steps of size ``step_size`` (default ``2.5 * epsilon / steps``) along the
    normalised gradient, each followed by the projection onto the ``epsilon`` ball around the
    clean point and onto the box; with ``random_start``, from a uniform point of the ball.
    With per-example budgets (see :meth:`BudgetAttack.minimal`) the step size scales with the
    budget.

    Which iterate is returned, by ``keep``: ``"adversarial"`` (the default, for measuring
    robustness) the last one, or when it is not adversarial and an earlier one was, the
    earliest adversarial one; ``"last"`` always the last one, the point of (approximately)
    maximal loss that Madry et al.'s adversarial training trains on, adversarial or not (and
    one forward pass cheaper). FGSM with random start (Wong, Rice & Kolter 2020, "Fast is
    better than free") is ``PGD(steps=1, step_size=1.25 * epsilon, random_start=True,
    keep="last")``.

    Raises:
        ValueError: for an ``epsilon`` that is negative or not finite, ``steps`` below 1, a
            non-positive ``step_size``, a ``norm`` other
            than ``"linf"``/``"l2"`` or a ``keep`` other than those of :data:`PGD_KEEP`.
    """

    name = "pgd"

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 0.1,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
        generator: torch.Generator | None = None,
        keep: str = "adversarial",
    ) -> None:
        super().__init__(
            model,
            budget=epsilon,
            budget_name="epsilon",
            bounds=bounds,
            layer=layer,
            generator=generator,
            mean=mean,
            std=std,
        )
        if steps < 1:
            raise ValueError(f"PGD: steps={steps!r}: must be at least 1")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"PGD: step_size={step_size!r}: must be positive")
        self.norm = _check_norm(norm)
        self.steps = int(steps)
        self.step_size = step_size
        if keep not in PGD_KEEP:
            raise ValueError(f"PGD: keep={keep!r}: expected one of {', '.join(PGD_KEEP)}")
        self.random_start = bool(random_start)
        self.uses_randomness = self.random_start
        self.keep = str(keep)

    @property
    def epsilon(self) -> float:
        return self.budget

    _largest_budget = FGSM._largest_budget

    def _start(self, origin: Tensor, epsilon: Tensor) -> Tensor:
        if not self.random_start:
            return torch.zeros_like(origin)
        if self.norm == "linf":
            return (2 * self._rand(origin) - 1) * _per_example(epsilon, origin)
        direction = self._randn(origin)
        direction = direction / _per_example(direction.flatten(1).norm(dim=1), origin)
        n = origin[0].numel()
        radius = epsilon * self._rand(epsilon).pow(1.0 / n)
        return direction * _per_example(radius, origin)

    def _perturb_with(
        self, problem: Problem, budget: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        origin = problem.origin
        if self.step_size is None:
            step = 2.5 * budget / self.steps
        else:
            step = self.step_size * budget / max(self.epsilon, 1e-12)
        h = problem.clamp(origin + self._start(origin, budget))
        found = origin.clone()
        seen = torch.zeros(len(origin), dtype=torch.bool, device=origin.device)
        for _ in range(self.steps):
            _, grad, logits = loss_and_gradient(
                problem.forward_at(), h, problem.labels, problem.target
            )
            hit = is_adversarial(logits, problem.labels, problem.target) & ~seen
            found[hit] = h[hit]
            seen |= hit
            moved = h + _per_example(step, h) * _ascent(grad, self.norm)
            h = problem.clamp(origin + _into_ball(moved - origin, budget, self.norm))
        evaluations = torch.full((len(origin),), self.steps, device=origin.device)
        if self.keep == "last":
            return h, evaluations, {}
        with torch.no_grad():
            last = is_adversarial(problem.logits(h).float(), problem.labels, problem.target)
        keep_earlier = seen & ~last
        adv = torch.where(_per_example(keep_earlier, h), found, h)
        return adv, evaluations, {}
