"""The paper's box-constrained L-BFGS attack, batched, one independent problem per example.

Szegedy et al. (2013), Section 4.1: an adversarial example for ``x`` and a label ``l`` solves
approximately

    minimise  c * |r| + loss_f(x + r, l)   subject to  x + r in the box,

with a line search over ``c`` for the smallest perturbation that the model still classifies
as ``l``. We solve the equivalent family with the constant on the loss term and the squared
norm (as Carlini & Wagner and advertorch do), which is smooth at ``r = 0``:

    minimise  |r|_2^2 + c * loss(x + r)   subject to  lower <= x + r <= upper,

``loss`` being the target's cross-entropy (targeted) or ``-log(1 - p_y)`` (untargeted, see
:func:`attacks.base.attack_loss`). A larger ``c`` here is a smaller penalty on ``|r|`` in the
paper's form; the minimisers trace the same trade-off curve.

Every example is its own problem, solved side by side in one batch:

- its own curvature pairs ``(s, y)`` (a ring of ``history`` pairs, applied through the
  order-free compact representation of Byrd, Nocedal & Schnabel 1994, so that rings of
  different ages live in one tensor),
- its own projected backtracking (Armijo) line search along the projection arc
  ``P(z + alpha d)`` with a step size of its own,
- its own free-variable set (variables at a bound whose gradient points outwards are held
  fixed, Bertsekas' two-metric projection), its own convergence test (projected gradient,
  relative decrease, iteration limit),
- its own search over ``c``: multiply by ``c_factor`` until the minimiser is adversarial (or
  divide until it is not), then bisect geometrically; after each solve an example starts its
  next one at once (at the previous minimiser, or at ``x`` with ``warm_start=False``),
  without waiting for the others.

The best (smallest) adversarial point that any evaluation of an example produced is kept:
every minimiser, and every point its line searches visited. An evaluated point counts as
adversarial when it is past the decision boundary by more than ``margin`` in logits, so that a
fresh forward pass (in another batch composition) agrees with it. Examples that finish stop
being evaluated, and the state is compacted as they accumulate.

Rivals (``rivals=k``, untargeted only, off by default). The untargeted loss pulls towards a
mixture of the other classes weighted by their probabilities, so the search can settle on a
class whose decision boundary is not the nearest one. The smallest untargeted adversarial is
the smallest over the other classes ``j`` of ``min |r| subject to z_j(x + r) >= z_y(x + r)``
(past that boundary ``y`` is no longer the prediction), so ``rivals=k`` also solves, side by
side in the same batch, that two-class problem with the loss ``softplus(z_y - z_j)`` (the
cross-entropy of ``j`` against ``y`` alone) for the ``k`` classes nearest by DeepFool's
linearisation at ``x``, ``|z_y - z_j| / |grad(z_y - z_j)|`` (Moosavi-Dezfooli et al. 2016;
the step rule of FAB, Croce & Hein 2020), among the nine with the largest logits; every
example keeps the smallest adversarial of its problems. It costs about ``k + 1`` times the
work (``benchmarks/min_norm.py`` measures it against FAB's best of ten runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from intriguing.attacks.base import (
    Attack,
    Forward,
    Problem,
    Statistic,
    adversarial_margin,
    attack_loss,
    loss_and_gradient,
)

_ARMIJO = 1e-4  # sufficient decrease constant of the line search
_CURVATURE = 1e-8  # pairs with s.y <= _CURVATURE * y.y are not stored
_ACTIVE_BAND = 1e-3  # Bertsekas' epsilon-active set: at most this close to a bound
_RIVAL_POOL = 9  # rivals are ranked among this many classes with the largest logits


@dataclass
class _State:
    """Per-example optimiser state, one row per example still being attacked."""

    index: Tensor  # row of the example in the batch
    origin: Tensor  # (B, n) clean point x
    labels: Tensor
    target: Tensor | None
    loss0: Tensor  # loss and its gradient at x (every solve starts there)
    grad0: Tensor
    c: Tensor  # current loss weight
    lower_c: Tensor  # largest c whose minimiser was not adversarial (0: none yet)
    upper_c: Tensor  # smallest c whose minimiser was adversarial (inf: none yet)
    steps: Tensor  # solves finished
    z: Tensor  # current iterate, its objective and gradient
    f: Tensor
    g: Tensor
    z_adversarial: Tensor
    direction: Tensor
    alpha: Tensor
    trial: Tensor  # the point the next evaluation is at: P(z + alpha * direction)
    iterations: Tensor  # accepted steps in the current solve
    backtracks: Tensor  # rejected trials in the current line search
    pairs: Tensor  # (B, n, 2m): columns s_1..s_m then y_1..y_m, zero when unused
    sy: Tensor  # (B, m, m) float64: s_i . y_j
    yy: Tensor  # (B, m, m) float64: y_i . y_j
    stamp: Tensor  # (B, m) age of each slot's pair (-1: unused)
    count: Tensor  # pairs stored so far in this solve (next stamp)
    gamma: Tensor  # initial inverse Hessian scale s.y / y.y of the newest pair
    done: Tensor

    @property
    def size(self) -> int:
        return len(self.index)

    def select(self, keep: Tensor) -> _State:
        values = {}
        for item in fields(self):
            value = getattr(self, item.name)
            values[item.name] = None if value is None else value[keep]
        return _State(**values)


class LBFGSAttack(Attack):
    """Box-constrained L-BFGS attack with a per-example search over ``c``.

    ``attack(x, y, target=None)``: untargeted when ``target`` is None. Besides the common
    fields, the result holds ``c`` (the loss weight that produced each example's
    adversarial, ``nan`` where none was found, ``0`` where ``x`` itself was adversarial) and
    ``gradient_evaluations`` per example (one per evaluation of the objective and its
    gradient at that example; their sum is the total). Where no adversarial point was found,
    ``adv`` is ``x`` unchanged and ``success`` is False.

    Args:
        model, bounds, layer: see :class:`attacks.base.Attack`.
        search_steps: solves per example in the search over ``c``.
        max_iterations: accepted L-BFGS steps per solve at most.
        initial_c: the first loss weight tried.
        c_factor: the factor by which ``c`` grows (or shrinks) until the outcome of a solve
            changes; afterwards ``c`` is bisected geometrically.
        history: curvature pairs kept per example.
        gradient_tolerance: a solve ends when the projected gradient's largest entry is
            at most this.
        loss_tolerance: ... or when a step lowers the objective by at most this, relative to
            ``max(|f|, 1)``.
        line_search_steps: rejected trials after which a line search gives up (the solve
            then ends at its last point).
        margin: logit margin past the decision boundary for a point to count as adversarial.
        compact_fraction: drop finished examples from the state once this fraction is done.
        warm_start: start each solve after the first at the previous solve's minimiser
            (default) instead of at ``x``; the objective and the search over ``c`` are the
            same, the solves take fewer steps.
        rivals: untargeted attacks only (ignored for targeted ones): also solve the
            two-class problem against each of the ``rivals`` classes nearest to ``x`` by
            linearisation, and keep each example's smallest adversarial (see the module's
            docstring). ``0`` (default): the plain untargeted problem only, as the paper.
            Costs about ``rivals + 1`` times the work, plus one gradient evaluation per
            ranked class at ``x`` (at most 9, counted in ``gradient_evaluations``); ``c`` is
            that of the problem whose adversarial was kept.

    The defaults are the setting that ``benchmarks/attack_speed.py`` reports: 9 solves of
    at most 100 iterations each, as advertorch's defaults, with 5 curvature pairs.
    """

    name = "lbfgs"
    reports_c = True

    def __init__(
        self,
        model: nn.Module,
        *,
        bounds: tuple[float, float] | None = None,
        layer: str | None = None,
        mean: Statistic | None = None,
        std: Statistic | None = None,
        search_steps: int = 9,
        max_iterations: int = 100,
        initial_c: float = 1.0,
        c_factor: float = 10.0,
        history: int = 5,
        gradient_tolerance: float = 1e-5,
        loss_tolerance: float = 1e-4,
        line_search_steps: int = 20,
        margin: float = 1e-3,
        compact_fraction: float = 0.25,
        warm_start: bool = True,
        rivals: int = 0,
    ) -> None:
        super().__init__(model, bounds=bounds, layer=layer, mean=mean, std=std)
        finite = math.isfinite
        checks = {  # parameter: (value, valid, what it must be)
            "search_steps": (search_steps, search_steps >= 1, "at least 1"),
            "max_iterations": (max_iterations, max_iterations >= 1, "at least 1"),
            "initial_c": (initial_c, initial_c > 0 and finite(initial_c), "positive, finite"),
            "c_factor": (c_factor, c_factor > 1 and finite(c_factor), "above 1, finite"),
            "history": (history, history >= 1, "at least 1"),
            "gradient_tolerance": (gradient_tolerance, gradient_tolerance >= 0, "at least 0"),
            "loss_tolerance": (loss_tolerance, loss_tolerance >= 0, "at least 0"),
            "line_search_steps": (line_search_steps, line_search_steps >= 1, "at least 1"),
            "margin": (margin, margin >= 0, "at least 0"),
            "compact_fraction": (compact_fraction, 0 <= compact_fraction <= 1, "in [0, 1]"),
            "rivals": (rivals, rivals >= 0, "at least 0"),
        }
        for name, (value, valid, wanted) in checks.items():
            if not valid:
                raise ValueError(f"LBFGSAttack: {name}={value!r}: must be {wanted}")
        self.search_steps = int(search_steps)
        self.max_iterations = int(max_iterations)
        self.initial_c = float(initial_c)
        self.c_factor = float(c_factor)
        self.history = int(history)
        self.gradient_tolerance = float(gradient_tolerance)
        self.loss_tolerance = float(loss_tolerance)
        self.line_search_steps = int(line_search_steps)
        self.margin = float(margin)
        self.compact_fraction = float(compact_fraction)
        self.warm_start = bool(warm_start)
        self.rivals = int(rivals)

    # -- the attack -------------------------------------------------------------------------

    def _perturb(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self.rivals and not problem.targeted and problem.num_classes > 2:
            return self._perturb_with_rivals(problem)
        return self._solve(problem, None)

    def _perturb_with_rivals(self, problem: Problem) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The untargeted problem and the two-class ones against each example's nearest
        rivals, as one batch of ``(1 + k) * B`` rows; per example the smallest adversarial."""
        batch = len(problem.origin)
        rival, ranked = self._nearest_rivals(problem)
        count = rival.shape[1]
        rows = torch.arange(batch, device=rival.device).repeat(count + 1)
        plain = torch.full((batch,), -1, dtype=torch.long, device=rival.device)
        rival_of = torch.cat((plain, rival.T.flatten()))  # -1: the plain untargeted problem
        adv, evaluations, extra = self._solve(problem.subset(rows), rival_of)
        size = (adv - problem.origin[rows]).flatten(1).pow(2).sum(dim=1)
        # c is nan where a problem found no adversarial (its adv is x): infinitely far.
        size = torch.where(extra["c"].isnan(), math.inf, size).view(count + 1, batch)
        chosen = size.argmin(dim=0) * batch + torch.arange(batch, device=rival.device)
        total = evaluations.view(count + 1, batch).sum(dim=0) + ranked
        return adv[chosen], total, {"c": extra["c"][chosen]}

    def _nearest_rivals(self, problem: Problem) -> tuple[Tensor, Tensor]:
        """Per example, the ``rivals`` classes nearest to ``x`` by DeepFool's linearisation
        (among the ``_RIVAL_POOL`` other classes with the largest logits), shape ``(B, k)``,
        and the gradient evaluations that the ranking cost per example, shape ``(B,)``."""
        origin = problem.origin.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = problem.logits(origin)
        labels = problem.labels
        others = logits.detach().scatter(1, labels[:, None], -math.inf)
        pool = min(_RIVAL_POOL, problem.num_classes - 1)
        candidates = others.topk(pool, dim=1).indices  # (B, pool)
        own = logits.gather(1, labels[:, None])[:, 0]
        distance = torch.empty(candidates.shape, dtype=logits.dtype, device=logits.device)
        for column in range(pool):
            gap = own - logits.gather(1, candidates[:, column, None])[:, 0]
            (grad,) = torch.autograd.grad(gap.sum(), origin, retain_graph=column < pool - 1)
            norm = grad.flatten(1).norm(dim=1).clamp(min=torch.finfo(grad.dtype).tiny)
            distance[:, column] = gap.detach().abs() / norm
        order = distance.argsort(dim=1)[:, : min(self.rivals, pool)]
        return candidates.gather(1, order), torch.full_like(labels, pool)

    def _solve(
        self, problem: Problem, rival: Tensor | None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Every example's search over ``c``; ``rival`` (untargeted problems only): per row
        the class of its two-class problem, ``-1`` for the plain untargeted one."""
        shape = problem.origin.shape[1:]
        batch = len(problem.origin)
        origin = problem.origin.reshape(batch, -1)
        device = origin.device
        self._box = (problem.lower, problem.upper)

        def evaluate(
            z: Tensor, rows: Tensor | None, labels: Tensor, target: Tensor | None
        ) -> tuple[Tensor, Tensor, Tensor]:
            forward = problem.forward_at(rows)
            if rival is None:
                loss, grad, logits = loss_and_gradient(forward, z.view(-1, *shape), labels, target)
            else:
                against = rival if rows is None else rival[rows]
                loss, grad, logits = _rival_loss_and_gradient(
                    forward, z.view(-1, *shape), labels, against
                )
            margin = adversarial_margin(logits, labels, target)
            return loss, grad.reshape(len(z), -1), margin > self.margin

        best = origin.clone()
        best_sq = origin.new_full((batch,), math.inf)
        best_c = origin.new_full((batch,), math.nan)
        evaluations = torch.ones(batch, dtype=torch.long, device=device)
        loss0, grad0, adversarial0 = evaluate(origin, None, problem.labels, problem.target)
        best_sq[adversarial0] = 0.0
        best_c[adversarial0] = 0.0
        rows = (~adversarial0).nonzero().flatten()
        if len(rows):
            state = self._initial_state(problem, origin, rows, loss0[rows], grad0[rows])
            while state.size:
                state = self._round(state, evaluate, best, best_sq, best_c, evaluations)
        return best.view(batch, *shape), evaluations, {"c": best_c}

    def _initial_state(
        self, problem: Problem, origin: Tensor, rows: Tensor, loss0: Tensor, grad0: Tensor
    ) -> _State:
        size, n = len(rows), origin.shape[1]
        m = self.history
        device = origin.device
        zeros = origin.new_zeros(size)
        c = origin.new_full((size,), self.initial_c)
        state = _State(
            index=rows,
            origin=origin[rows],
            labels=problem.labels[rows],
            target=None if problem.target is None else problem.target[rows],
            loss0=loss0,
            grad0=grad0,
            c=c,
            lower_c=zeros.clone(),
            upper_c=torch.full_like(zeros, math.inf),
            steps=torch.zeros(size, dtype=torch.long, device=device),
            z=origin[rows].clone(),
            f=c * loss0,
            g=c[:, None] * grad0,
            z_adversarial=torch.zeros(size, dtype=torch.bool, device=device),
            direction=torch.zeros_like(grad0),
            alpha=zeros.clone(),
            trial=origin[rows].clone(),
            iterations=torch.zeros(size, dtype=torch.long, device=device),
            backtracks=torch.zeros(size, dtype=torch.long, device=device),
            pairs=origin.new_zeros(size, n, 2 * m),
            sy=torch.zeros(size, m, m, dtype=torch.float64, device=device),
            yy=torch.zeros(size, m, m, dtype=torch.float64, device=device),
            stamp=torch.full((size, m), -1, dtype=torch.long, device=device),
            count=torch.zeros(size, dtype=torch.long, device=device),
            gamma=torch.ones_like(zeros),
            done=torch.zeros(size, dtype=torch.bool, device=device),
        )
        self._new_directions(state, torch.ones(size, dtype=torch.bool, device=device))
        return state

    def _round(
        self,
        state: _State,
        evaluate: Callable[
            [Tensor, Tensor | None, Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor]
        ],
        best: Tensor,
        best_sq: Tensor,
        best_c: Tensor,
        evaluations: Tensor,
    ) -> _State:
        """One batched evaluation at every live example's trial point, then its bookkeeping."""
        live = ~state.done
        trial = state.trial
        if bool(live.all()):
            loss, grad, adversarial = evaluate(trial, state.index, state.labels, state.target)
        else:
            rows = live.nonzero().flatten()
            target = None if state.target is None else state.target[rows]
            part = evaluate(trial[rows], state.index[rows], state.labels[rows], target)
            loss = trial.new_zeros(state.size).index_copy(0, rows, part[0])
            grad = torch.zeros_like(trial).index_copy(0, rows, part[1])
            adversarial = torch.zeros_like(live).index_copy(0, rows, part[2])
        evaluations.index_add_(0, state.index, live.long())

        step = trial - state.origin
        trial_sq = step.pow(2).sum(dim=1)
        f_trial = trial_sq + state.c * loss
        g_trial = 2.0 * step + state.c[:, None] * grad

        # The smallest adversarial point seen so far, whichever evaluation produced it.
        better = live & adversarial & (trial_sq < best_sq[state.index])
        if better.any():
            where = state.index[better]
            best[where] = trial[better]
            best_sq[where] = trial_sq[better]
            best_c[where] = state.c[better]

        # Projected Armijo test along the arc P(z + alpha d).
        moved = trial - state.z
        slope = (state.g * moved).sum(dim=1)
        accept = live & torch.isfinite(f_trial) & (f_trial <= state.f + _ARMIJO * slope)
        reject = live & ~accept

        self._store_pairs(state, accept, moved, g_trial - state.g)
        decrease = state.f - f_trial
        scale = torch.maximum(state.f.abs(), f_trial.abs()).clamp(min=1.0)
        small_decrease = decrease <= self.loss_tolerance * scale
        state.z = torch.where(accept[:, None], trial, state.z)
        state.f = torch.where(accept, f_trial, state.f)
        state.g = torch.where(accept[:, None], g_trial, state.g)
        state.z_adversarial = torch.where(accept, adversarial, state.z_adversarial)
        state.iterations = state.iterations + accept.long()
        projected = state.z - (state.z - state.g).clamp(min=self._lower, max=self._upper)
        flat = projected.abs().amax(dim=1) <= self.gradient_tolerance
        converged = accept & (small_decrease | flat | (state.iterations >= self.max_iterations))

        # Backtracking: the minimiser of the quadratic through f(0), f'(0) and f(alpha),
        # kept inside [0.1, 0.5] * alpha.
        state.backtracks = torch.where(reject, state.backtracks + 1, 0)
        stalled = reject & (state.backtracks >= self.line_search_steps)
        alpha = state.alpha
        derivative = slope / alpha.clamp(min=torch.finfo(alpha.dtype).tiny)
        curvature = f_trial - state.f - derivative * alpha
        quadratic = -derivative * alpha.pow(2) / (2.0 * curvature).clamp(min=1e-30)
        quadratic = torch.nan_to_num(quadratic, nan=0.0, posinf=0.0, neginf=0.0)
        backtracked = torch.minimum(torch.maximum(quadratic, 0.1 * alpha), 0.5 * alpha)

        # Finished solves feed the search over c; then the next solve starts at once.
        finished = converged | stalled
        previous_c = state.c
        if finished.any():
            self._next_c(state, finished)
        restart = finished & ~state.done
        if restart.any():
            self._restart(state, restart, previous_c)
        need_direction = (accept & ~finished) | restart
        if need_direction.any():
            self._new_directions(state, need_direction)
        retry = reject & ~stalled
        state.alpha = torch.where(retry, backtracked, state.alpha)
        retry_trial = self._project(state.z + state.alpha[:, None] * state.direction)
        state.trial = torch.where(retry[:, None], retry_trial, state.trial)

        finished_count = int(state.done.sum())
        if finished_count and finished_count >= self.compact_fraction * state.size:
            state = state.select(~state.done)
        return state

    # -- pieces of a round ----------------------------------------------------------------

    @property
    def _lower(self) -> float:
        return self._box[0]

    @property
    def _upper(self) -> float:
        return self._box[1]

    def _project(self, z: Tensor) -> Tensor:
        return z.clamp(min=self._lower, max=self._upper)

    def _next_c(self, state: _State, finished: Tensor) -> None:
        """Expand ``c`` by ``c_factor`` until the outcome flips, then bisect geometrically."""
        success = finished & state.z_adversarial
        failure = finished & ~state.z_adversarial
        state.upper_c = torch.where(success, torch.minimum(state.upper_c, state.c), state.upper_c)
        state.lower_c = torch.where(failure, torch.maximum(state.lower_c, state.c), state.lower_c)
        bracketed = torch.isfinite(state.upper_c) & (state.lower_c > 0)
        expanded = torch.where(
            torch.isfinite(state.upper_c), state.c / self.c_factor, state.c * self.c_factor
        )
        bisected = (state.lower_c * state.upper_c).sqrt()
        state.c = torch.where(finished, torch.where(bracketed, bisected, expanded), state.c)
        state.steps = state.steps + finished.long()
        state.done = state.done | (finished & (state.steps >= self.search_steps))

    def _restart(self, state: _State, rows: Tensor, previous_c: Tensor) -> None:
        """Start a new solve for ``rows`` with a clean history.

        Cold: at ``x``, with the loss and gradient cached there. Warm: at the previous solve's
        minimiser, whose loss and loss gradient are recovered from its objective and gradient
        (no extra evaluation).
        """
        mask = rows[:, None]
        if self.warm_start:
            step = state.z - state.origin
            loss = (state.f - step.pow(2).sum(dim=1)) / previous_c
            grad = (state.g - 2.0 * step) / previous_c[:, None]
            state.f = torch.where(rows, step.pow(2).sum(dim=1) + state.c * loss, state.f)
            state.g = torch.where(mask, 2.0 * step + state.c[:, None] * grad, state.g)
            return self._clear_restart(state, rows)
        state.z = torch.where(mask, state.origin, state.z)
        state.f = torch.where(rows, state.c * state.loss0, state.f)
        state.g = torch.where(mask, state.c[:, None] * state.grad0, state.g)
        state.z_adversarial = state.z_adversarial & ~rows
        self._clear_restart(state, rows)

    def _clear_restart(self, state: _State, rows: Tensor) -> None:
        state.iterations = torch.where(rows, 0, state.iterations)
        state.backtracks = torch.where(rows, 0, state.backtracks)
        self._clear_history(state, rows)

    def _clear_history(self, state: _State, rows: Tensor) -> None:
        index = rows.nonzero().flatten()
        state.pairs[index] = 0.0
        state.sy[index] = 0.0
        state.yy[index] = 0.0
        state.stamp[index] = -1
        state.count[index] = 0
        state.gamma[index] = 1.0

    def _store_pairs(self, state: _State, accept: Tensor, s: Tensor, y: Tensor) -> None:
        """Put ``(s, y)`` in each accepting example's ring when it has positive curvature."""
        sy = (s * y).sum(dim=1)
        yy = (y * y).sum(dim=1)
        store = accept & (sy > _CURVATURE * yy) & (yy > 0)
        if not store.any():
            return
        m = self.history
        index = store.nonzero().flatten()
        slot = state.count[index] % m
        state.pairs[index, :, slot] = s[index]
        state.pairs[index, :, m + slot] = y[index]
        # s_new . [S, Y] and y_new . [S, Y], a row-vector product per example (the fast
        # layout of batched products on CPU); rows that store nothing are dropped after.
        s_products = torch.bmm(s[:, None, :], state.pairs)[index, 0].double()
        y_products = torch.bmm(y[:, None, :], state.pairs)[index, 0].double()
        products = torch.stack((s_products, y_products), dim=2)  # (k, 2m, 2)
        sy_matrix = state.sy[index]
        yy_matrix = state.yy[index]
        rows = torch.arange(len(index), device=index.device)
        sy_matrix[rows, :, slot] = products[:, :m, 1]  # s_i . y_new
        sy_matrix[rows, slot, :] = products[:, m:, 0]  # s_new . y_j
        yy_matrix[rows, :, slot] = products[:, m:, 1]
        yy_matrix[rows, slot, :] = products[:, m:, 1]
        state.sy[index] = sy_matrix
        state.yy[index] = yy_matrix
        state.stamp[index, slot] = state.count[index]
        state.count[index] = state.count[index] + 1
        state.gamma[index] = (sy[index] / yy[index]).to(state.gamma.dtype)

    def _inverse_hessian_times(self, state: _State, q: Tensor) -> Tensor:
        """``H q`` for the L-BFGS inverse Hessian of every example (a row of ``q`` each).

        Compact form (Byrd, Nocedal & Schnabel 1994): ``H = gamma I + [S, gamma Y] M
        [S, gamma Y]^T`` with ``M`` built from ``R`` (``s_i . y_j`` for pairs ``i`` no newer
        than ``j``), ``D = diag(s_i . y_i)`` and ``Y^T Y``. Slots are ordered by their stamps,
        so every example's ring may be at a different position. Two passes over the
        histories; the small ``m x m`` algebra runs in float64.
        """
        m = self.history
        gamma = state.gamma.double()
        valid = state.stamp >= 0
        projections = torch.bmm(q[:, None, :], state.pairs)[:, 0].double()
        s_q, y_q = projections[:, :m], projections[:, m:]
        both = valid[:, :, None] & valid[:, None, :]
        order = state.stamp[:, :, None] <= state.stamp[:, None, :]
        eye = torch.eye(m, dtype=torch.float64, device=q.device)
        r = torch.where(both & order, state.sy, 0.0) + eye * (~valid).double()[:, None, :]
        diagonal = torch.where(valid, state.sy.diagonal(dim1=1, dim2=2), 0.0)
        u = torch.linalg.solve_ex(r, s_q[:, :, None])[0]
        inner = diagonal[:, :, None] * u + gamma[:, None, None] * torch.bmm(state.yy, u)
        top = torch.linalg.solve_ex(
            r.transpose(1, 2), inner - gamma[:, None, None] * y_q[:, :, None]
        )[0]
        coefficients = torch.cat((top, -gamma[:, None, None] * u), dim=1).to(q.dtype)
        correction = torch.bmm(coefficients.transpose(1, 2), state.pairs.transpose(1, 2))[:, 0]
        return state.gamma[:, None] * q + correction

    def _new_directions(self, state: _State, need: Tensor) -> None:
        """Projected quasi-Newton direction and first trial point for the examples ``need``.

        Variables at a bound (within Bertsekas' epsilon) whose gradient points out of the box
        are held fixed; the free ones move along ``-H g`` restricted to them, which is a
        descent direction because ``H`` is positive definite. Computed for every row at once
        (cheaper than gathering the histories of some) and kept where ``need``.
        """
        z, g = state.z, state.g
        projected = z - self._project(z - g)
        band = projected.norm(dim=1).clamp(max=_ACTIVE_BAND)[:, None]
        held = ((z <= self._lower + band) & (g > 0)) | ((z >= self._upper - band) & (g < 0))
        free = (~held).to(g.dtype)
        q = g * free * need[:, None]
        direction = -free * self._inverse_hessian_times(state, q)
        slope = (g * direction).sum(dim=1)
        bad = need & (~torch.isfinite(slope) | (slope >= 0))
        if bad.any():
            direction = torch.where(bad[:, None], -q, direction)
            self._clear_history(state, bad)
        fresh = state.count == 0
        norm = direction.norm(dim=1)
        alpha = torch.where(fresh, (1.0 / norm.clamp(min=1e-12)).clamp(max=1.0), 1.0)
        column = need[:, None]
        state.direction = torch.where(column, direction, state.direction)
        state.alpha = torch.where(need, alpha, state.alpha)
        state.trial = torch.where(
            column, self._project(z + alpha[:, None] * direction), state.trial
        )
        state.backtracks = torch.where(need, 0, state.backtracks)


def _rival_loss_and_gradient(
    forward: Forward, h: Tensor, labels: Tensor, rival: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`attacks.base.loss_and_gradient` for untargeted rows with a rival class each:
    ``softplus(z_y - z_rival)`` (the cross-entropy of the rival against the label alone)
    where ``rival >= 0``, the untargeted :func:`attacks.base.attack_loss` where ``-1``."""
    h = h.detach().requires_grad_(True)
    logits = forward(h)
    logits = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    own = logits.gather(1, labels[:, None])[:, 0]
    theirs = logits.gather(1, rival.clamp(min=0)[:, None])[:, 0]
    loss = torch.where(rival >= 0, F.softplus(own - theirs), attack_loss(logits, labels, None))
    (grad,) = torch.autograd.grad(loss.sum(), h)
    return loss.detach(), grad.detach(), logits.detach()
