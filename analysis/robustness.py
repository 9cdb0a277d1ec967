"""How robust a trained classifier is: clean error, robust error at stated budgets, error under
a fixed-budget attack, and the paper's average minimum distortion (Szegedy et al. 2013,
Table 1's last column).

Robust error is what the field reports (Croce & Hein 2020; Carlini et al. 2019): the fraction
of images misclassified clean or fooled by *any* of several strong attacks within an L-inf or
L2 budget, the per-image worst case. :func:`measure_robustness` measures it with
:func:`analysis.evaluation.evaluate_robustness` (the engine of ``intriguing evaluate``, with
its gradient-masking checks) and names the figures for a run's metrics:

- ``eval/robust_error/linf_0.1``: the union's robust error at L-inf 0.1 (one per budget);
- ``eval/robust_error/linf_0.1/apgd-t``: one attack's;
- ``eval/robust_clean_error``, ``eval/robust_examples``, ``eval/robust_seconds``: clean error
  on the same images, how many, and the wall time of all robust attacks;
- ``eval/masking/linf/pgd_at_least_as_strong_as_fgsm``: 1 where a gradient-masking check is
  violated, 0 where it passed (checks that could not run are left out);
  ``eval/masking_violations`` counts the violations;
- ``eval/adversarial_error``: error under the fixed-budget ``attack`` (FGSM, L-inf 0.1, by
  default), and ``eval/min_distortion`` the paper's measure.

:func:`headline_figures` lists, in the order a table shows them, the figures a run's metrics
hold, labelled ("robust error (L-inf 0.1)", "FGSM error (L-inf 0.1)"): the demo's comparison
and the reproduction report use it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from torch import Tensor, nn

from intriguing.analysis.evaluation import (
    ATTACKS,
    NORMS,
    UNION,
    AttackEntry,
    AttackSettings,
    RobustnessEvaluation,
    _attack_entries,
    _check_budgets,
)
from intriguing.analysis.evaluation import evaluate_robustness as evaluate_budgets
from intriguing.attacks import build_attack, minimum_distortion
from intriguing.attacks.peers import import_torchattacks, is_peer_spec
from intriguing.attacks.registry import fgsm, lbfgs

#: Attacks of :data:`analysis.evaluation.ATTACKS` that are ours; the others run in torchattacks
#: (the ``intriguing[eval]`` extra).
OWN_ATTACKS = ("pgd", "fgsm", "lbfgs")
#: Metric key prefix of the robust errors: ``eval/robust_error/linf_0.1[/ATTACK]``.
ROBUST_ERROR = "robust_error"
#: Norm names as tables write them.
NORM_LABELS = {"linf": "L-inf", "l2": "L2"}
#: Attack names of :data:`analysis.evaluation.ATTACKS` as text writes them.
ATTACK_LABELS = {
    "autoattack": "AutoAttack",
    "autoattack-fast": "AutoAttack (fast: APGD-CE, APGD-T on 3 targets)",
    "apgd-ce": "APGD-CE",
    "apgd-t": "APGD-T",
    "fab": "FAB",
    "square": "Square",
    "pgd": "PGD",
    "fgsm": "FGSM",
    "lbfgs": "L-BFGS",
}


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
        robust: the robust errors, one evaluation per norm (empty: not measured), on the
            first ``robust[i].budgets[j].examples`` of the examples.
    """

    clean_error: float
    adversarial_error: float
    min_distortion: float
    min_distortion_success: float
    examples: int
    seconds: float
    robust: list[RobustnessEvaluation] = field(default_factory=list)

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat metrics (see the module docstring for the names), all floats."""
        metrics = {
            f"{prefix}{key}": float(getattr(self, key))
            for key in (
                "clean_error",
                "adversarial_error",
                "min_distortion",
                "min_distortion_success",
                "examples",
                "seconds",
            )
        }
        metrics.update(robust_metrics(self.robust, prefix))
        return metrics


def budget_key(norm: str, epsilon: float) -> str:
    """The budget's part of a metric key: ``linf_0.1``, ``l2_1.5`` (six significant digits)."""
    return f"{norm}_{epsilon:g}"


def budget_label(norm: str, epsilon: float) -> str:
    """The budget as tables write it: ``L-inf 0.1``, ``L2 1.5``, ``L-inf 8/255``."""
    in_levels = epsilon * 255
    if abs(in_levels - round(in_levels)) < 1e-6 and epsilon * 10 != round(epsilon * 10):
        value = f"{round(in_levels)}/255"
    else:
        value = f"{epsilon:g}"
    return f"{NORM_LABELS.get(norm, norm)} {value}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def robust_metrics(
    evaluations: Sequence[RobustnessEvaluation], prefix: str = "eval/"
) -> dict[str, float]:
    """The metrics of robust-error evaluations (one per norm, on the same images): per
    budget the union's and each attack's robust error, the clean error, examples and seconds
    once, and each gradient-masking check that ran (1.0: violated)."""
    metrics: dict[str, float] = {}
    seconds = 0.0
    violations = 0
    for evaluation in evaluations:
        for budget in evaluation.budgets:
            key = f"{prefix}{ROBUST_ERROR}/{budget_key(evaluation.norm, budget.epsilon)}"
            metrics[key] = float(budget.robust_error[UNION])
            for attack in evaluation.attacks:
                metrics[f"{key}/{attack}"] = float(budget.robust_error[attack])
            metrics[f"{prefix}robust_clean_error"] = float(budget.clean_error)
            metrics[f"{prefix}robust_examples"] = float(budget.examples)
            seconds += budget.seconds
        for check in evaluation.masking:
            if check.status in ("passed", "violated"):
                metrics[f"{prefix}masking/{evaluation.norm}/{_slug(check.name)}"] = float(
                    check.violated
                )
                violations += check.violated
    if evaluations:
        metrics[f"{prefix}robust_seconds"] = seconds
        metrics[f"{prefix}masking_violations"] = float(violations)
    return metrics


def check_robust_attacks(attacks: Sequence[AttackEntry]) -> None:
    """Check, before anything is trained, that :func:`measure_robustness` can run ``attacks``.

    Raises:
        ValueError: for an attack name not in :data:`analysis.evaluation.ATTACKS` (naming
            them) or a bad specification.
        ImportError: naming ``intriguing[eval]`` when an attack needs torchattacks (APGD,
            AutoAttack, FAB, Square, a ``torchattacks.*`` specification) and it is missing.
    """
    entries = _attack_entries(attacks)
    peers = [
        label
        for label, spec in entries.items()
        if (isinstance(spec, str) and spec not in OWN_ATTACKS)
        or (not isinstance(spec, str) and is_peer_spec(spec))
    ]
    if peers:
        try:
            import_torchattacks()
        except ImportError as error:
            raise ImportError(f"{', '.join(peers)}: {error}") from None


def _shown(values: Sequence[Any]) -> str:
    """A list argument as messages write it: ``[pgd, apgd-ce]``, ``[0.1, 0.0]``."""
    if isinstance(values, str | Mapping):
        return repr(values)
    return f"[{', '.join(str(value) for value in values)}]"


def check_robust_settings(
    *,
    batch_size: int,
    robust_subset: int | None,
    robust_attacks: Sequence[AttackEntry],
    linf_epsilons: Sequence[float],
    l2_epsilons: Sequence[float],
    robust_steps: int,
    pgd_steps: int,
    pgd_restarts: int,
) -> None:
    """Check the arguments of :func:`measure_robustness` that could only fail after its first
    attack: the batch size and what the robust error needs (the attacks, the budgets, their
    strength), the latter only when a robust error is measured (``robust_attacks`` not empty
    and ``robust_subset`` not 0). :func:`measure_robustness` runs it first, and
    ``pipelines.evaluation.check_evaluation`` before anything is trained; the parameters are
    :func:`measure_robustness`'s.

    Raises:
        ValueError: starting with the parameter and its value (``"robust_subset=-2: ..."``,
            ``"linf_epsilons=[0.1, 0.0]: epsilon 0.0: must be a positive number"``,
            ``"robust_attacks=[pgd, apgd]: attack 'apgd': expected one of ..."``) for a
            batch size, iteration or restart count below 1, a negative ``robust_subset``, a
            non-positive epsilon, or an unknown robust attack or bad specification.
        TypeError: ``"robust_attacks=[...]: ..."`` for an entry that is neither a name nor
            a specification mapping.
        ImportError: ``"robust_attacks=[...]: apgd-ce, apgd-t: ..."``, naming
            ``intriguing[eval]``, when a robust attack needs torchattacks and it is missing.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be at least 1")
    if robust_subset is not None and robust_subset < 0:
        raise ValueError(
            f"robust_subset={robust_subset}: must be 0 (no robust error), more, or None/null "
            "(all the images)"
        )
    if not robust_attacks or robust_subset == 0:
        return
    for name, value in (
        ("robust_steps", robust_steps),
        ("pgd_steps", pgd_steps),
        ("pgd_restarts", pgd_restarts),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be at least 1")
    for norm, epsilons in (("linf", linf_epsilons), ("l2", l2_epsilons)):
        if epsilons:
            try:
                _check_budgets(norm, epsilons)
            except ValueError as error:
                raise ValueError(f"{norm}_epsilons={_shown(epsilons)}: {error}") from None
    named = f"robust_attacks={_shown(robust_attacks)}"
    try:
        check_robust_attacks(robust_attacks)
    except (ValueError, TypeError, ImportError) as error:
        raise type(error)(f"{named}: {error}") from None


#: :func:`measure_robustness`'s defaults that are mappings or lists, read-only (the
#: ``evaluation`` section's: configs.schema.EvaluationConfig). The fixed-budget attack: FGSM
#: at L-inf 0.1.
FIXED_ATTACK: Mapping[str, Any] = MappingProxyType(fgsm())
#: The minimum-distortion attack: the paper's box-constrained L-BFGS with its own defaults.
DISTORTION_ATTACK: Mapping[str, Any] = MappingProxyType(lbfgs())
#: The robust attacks whose per-image union is the robust error.
ROBUST_ATTACKS: tuple[str, ...] = ("pgd", "apgd-ce", "apgd-t", "fgsm")


def measure_robustness(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    attack: Mapping[str, Any] = FIXED_ATTACK,
    distortion_attack: Mapping[str, Any] = DISTORTION_ATTACK,
    batch_size: int = 500,
    robust_subset: int | None = None,
    robust_attacks: Sequence[AttackEntry] = ROBUST_ATTACKS,
    linf_epsilons: Sequence[float] = (0.1, 0.3),
    l2_epsilons: Sequence[float] = (1.5,),
    robust_steps: int = 100,
    pgd_steps: int = 40,
    pgd_restarts: int = 5,
    progress: bool = False,
) -> Robustness:
    """A run's robustness figures: clean error, robust error at each budget, error under
    ``attack`` and mean minimum distortion.

    The keyword parameters are the keys of a run config's ``evaluation`` section
    (``configs.schema.EvaluationConfig``), with its defaults, save ``progress``; the section
    reaches them through ``pipelines.evaluation.EVALUATION`` (``intriguing.registry.Binding``).

    Args:
        model: a classifier mapping ``(batch, C, H, W)`` pixels in ``[0, 1]`` to logits
            ``(batch, classes)``.
        images, labels: ``(N, C, H, W)`` floats in ``[0, 1]`` and ``(N,)`` class indices.
        attack, distortion_attack: attack config mappings for :func:`attacks.build_attack`:
            the fixed-budget attack (``adversarial_error``; FGSM at L-inf 0.1 by default) and
            the minimum-distortion one (L-BFGS).
        batch_size: examples per attack call (every attack's).
        robust_subset: robust error on the first ``robust_subset`` images only (``None``: all
            of them; 0: no robust error); each norm's evaluation runs on the same images.
        robust_attacks: the attacks whose per-image union is the robust error (names of
            :data:`analysis.evaluation.ATTACKS` or specifications); empty: no robust error.
        linf_epsilons, l2_epsilons: the budgets of each norm (pixel units of ``[0, 1]``
            images); empty: that norm is not evaluated.
        robust_steps, pgd_steps, pgd_restarts: the robust attacks' strength
            (:class:`analysis.evaluation.AttackSettings`'s ``steps``, ``pgd_steps`` and
            ``pgd_restarts``): APGD-CE's, APGD-T's and FAB's iterations, our PGD's
            iterations and its random restarts.
        progress: show progress bars.

    Returns:
        The figures (:meth:`Robustness.as_metrics` names them for a run's metrics).

    Raises:
        ValueError, TypeError, ImportError: before any attack, for a bad argument
            (:func:`check_robust_settings`: the message starts with the parameter and its
            value; ``intriguing[eval]`` named for a torchattacks attack without it).
    """
    check_robust_settings(
        batch_size=batch_size,
        robust_subset=robust_subset,
        robust_attacks=robust_attacks,
        linf_epsilons=linf_epsilons,
        l2_epsilons=l2_epsilons,
        robust_steps=robust_steps,
        pgd_steps=pgd_steps,
        pgd_restarts=pgd_restarts,
    )
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
    seconds = time.perf_counter() - started
    robust: list[RobustnessEvaluation] = []
    budgets = {
        norm: [float(epsilon) for epsilon in epsilons]
        for norm, epsilons in (("linf", linf_epsilons), ("l2", l2_epsilons))
        if epsilons
    }
    chosen = len(labels) if robust_subset is None else min(robust_subset, len(labels))
    if robust_attacks and budgets and chosen:
        settings = AttackSettings(
            steps=robust_steps,
            pgd_steps=pgd_steps,
            pgd_restarts=pgd_restarts,
            batch_size=batch_size,
        )
        for norm in (n for n in NORMS if n in budgets):
            robust.append(
                evaluate_budgets(
                    model,
                    images[:chosen],
                    labels[:chosen],
                    attacks=robust_attacks,
                    epsilons=budgets[norm],
                    norm=norm,
                    settings=settings,
                    progress=progress,
                    description=f"robust error {NORM_LABELS[norm]}",
                )
            )
    return Robustness(
        clean_error=wrong_clean / count,
        adversarial_error=wrong_adversarial / count,
        min_distortion=summary.mean_distortion,
        min_distortion_success=summary.success_rate,
        examples=len(labels),
        seconds=seconds,
        robust=robust,
    )


class Figure(NamedTuple):
    """A figure of a run's metrics as a table shows it: its key, its label, and whether it is
    an error rate (shown in percent) or a distortion."""

    key: str
    label: str
    percent: bool


_ROBUST_KEY = re.compile(
    rf"^{ROBUST_ERROR}/(?P<norm>[a-z0-9]+)_(?P<epsilon>[^/]+)(/(?P<attack>.+))?$"
)


def headline_figures(keys: Iterable[str], prefix: str = "eval/") -> list[Figure]:
    """The headline figures among a run's metric ``keys``, in the order tables show them.

    Clean error on the robust-error images; robust error (the union) at each budget, L-inf
    before L2, small budgets first; FGSM error at the smallest L-inf budget (an extra column,
    named as such), or, without it, the error under the fixed-budget attack
    (``adversarial test error``); the mean minimum distortion. Figures not among ``keys`` are
    left out.
    """
    present = set(keys)
    budgets: list[tuple[int, float, str, str]] = []
    for key in present:
        if not key.startswith(prefix):
            continue
        found = _ROBUST_KEY.match(key[len(prefix) :])
        if found is None or found["attack"] is not None:
            continue
        try:
            epsilon = float(found["epsilon"])
        except ValueError:
            continue
        norm = found["norm"]
        order = NORMS.index(norm) if norm in NORMS else len(NORMS)
        budgets.append((order, epsilon, norm, key))
    budgets.sort()
    figures: list[Figure] = []
    if budgets and f"{prefix}robust_clean_error" in present:
        figures.append(Figure(f"{prefix}robust_clean_error", "clean error (same images)", True))
    figures += [
        Figure(key, f"robust error ({budget_label(norm, epsilon)})", True)
        for _, epsilon, norm, key in budgets
    ]
    linf = [(epsilon, key) for _, epsilon, norm, key in budgets if norm == "linf"]
    fgsm = f"{linf[0][1]}/fgsm" if linf else None
    if fgsm is not None and fgsm in present:
        figures.append(Figure(fgsm, f"FGSM error ({budget_label('linf', linf[0][0])})", True))
    elif f"{prefix}adversarial_error" in present:
        figures.append(Figure(f"{prefix}adversarial_error", "adversarial test error", True))
    if f"{prefix}min_distortion" in present:
        figures.append(Figure(f"{prefix}min_distortion", "mean minimum distortion", False))
    return figures


def robust_attacks_text(keys: Iterable[str], prefix: str = "eval/") -> str:
    """The attacks whose union a run's robust errors are, from its metric keys
    (``pgd, apgd-ce, apgd-t, fgsm``); empty when it has none."""
    attacks: list[str] = []
    for key in sorted(keys):
        found = _ROBUST_KEY.match(key[len(prefix) :]) if key.startswith(prefix) else None
        if found is not None and found["attack"] is not None and found["attack"] not in attacks:
            attacks.append(found["attack"])
    order = {name: index for index, name in enumerate(ATTACKS)}
    return ", ".join(sorted(attacks, key=lambda name: order.get(name, len(order))))
