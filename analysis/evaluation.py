"""Robust error at fixed budgets, as the field reports it, with gradient-masking checks.

:func:`evaluate_robustness` attacks a classifier's examples at each budget ``epsilon`` of an
L-inf or L2 ball with several attacks and reports, per budget, the clean error, the robust
error under each attack and under their union (an example counts as wrong when it is
misclassified clean or when *any* attack fools it within the budget: the per-example worst
case, which is what "robust error" means in every headline), the examples and the seconds.

Attacks (:data:`ATTACKS`): AutoAttack (Croce & Hein 2020) and its components from torchattacks
(an optional extra, ``pip install intriguing[eval]``), run through
:class:`attacks.peers.PeerAttack` (our normalisation, and float64 by default so that the
cross-entropy gradient survives on overconfident models), and ours: PGD with restarts
(Madry et al. 2018), FGSM and the paper's L-BFGS (its minimum-distortion adversarials count
where they lie within the budget); besides these names, any attack by specification
(:data:`AttackEntry`: a torchattacks class, ``{"name": "torchattacks.PGD", ...}``, or one of
ours), its budget set from each epsilon. Every adversarial is checked against the budget, so an
attack that returns a larger perturbation (FAB's, L-BFGS's) never counts beyond it.

:func:`masking_checks` applies the sanity checks of Carlini et al. (2019), "On evaluating
adversarial robustness", Section 5 / Athalye et al. (2018): robust error must not fall as
epsilon grows, PGD must not be weaker than FGSM, a black-box attack (Square) must not beat
the white-box ones, and an attack must reach (nearly) 100% error at a large budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from intriguing.analysis.evaluation_attacks import ATTACKS
from intriguing.attacks import FGSM, PGD, Attack, LBFGSAttack, PeerAttack, build_attack
from intriguing.attacks.base import Statistic, device_of
from intriguing.attacks.peers import import_torchattacks, is_peer_spec

#: Attacks that query only the model's outputs (the rest use its gradients).
BLACK_BOX = ("square",)
NORMS = ("linf", "l2")
#: The key of the union over attacks in :attr:`BudgetEvaluation.robust_error`.
UNION = "union"
#: Target classes of APGD-T in ``autoattack-fast`` (the standard version uses all others).
FAST_TARGETS = 3


@dataclass
class AttackSettings:
    """How hard the attacks try.

    Attributes:
        steps: iterations of APGD-CE, APGD-T and FAB (100: AutoAttack's original settings;
            torchattacks' own AutoAttack class uses its components' default of 10).
        pgd_steps, pgd_restarts: our PGD's iterations and random restarts (an example
            counts as fooled when any restart fools it).
        square_queries: Square's query budget (5000 in AutoAttack).
        peer_dtype: the torchattacks attacks' compute dtype (float64 by default: see
            :mod:`attacks.peers`); ours compute in the model's precision with a stable loss.
        batch_size: examples per attack call.
        seed: the seed of every random attack (AutoAttack's components, PGD's restarts).
    """

    steps: int = 100
    pgd_steps: int = 40
    pgd_restarts: int = 5
    square_queries: int = 5000
    peer_dtype: torch.dtype = torch.float64
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "pgd_steps", "pgd_restarts", "square_queries", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a whole number of at least 1")
        if self.peer_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"peer_dtype={self.peer_dtype!r}: expected float32 or float64")


@dataclass
class BudgetEvaluation:
    """The errors at one budget.

    Attributes:
        epsilon: the radius of the ball (pixel units of ``[0, 1]`` images).
        clean_error: fraction of the examples misclassified unperturbed.
        robust_error: per attack name, and for :data:`UNION`, the fraction of examples
            misclassified clean or fooled within ``epsilon``.
        examples: how many examples.
        seconds: wall time of all attacks at this budget.
        attack_seconds: wall time per attack.
    """

    epsilon: float
    clean_error: float
    robust_error: dict[str, float]
    examples: int
    seconds: float
    attack_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class MaskingCheck:
    """One gradient-masking check: ``status`` is ``"passed"``, ``"violated"`` or
    ``"not checked"`` (what it needs was not evaluated); ``details`` say where and why."""

    name: str
    status: str
    details: list[str]

    @property
    def violated(self) -> bool:
        return self.status == "violated"

    def line(self) -> str:
        head = {"passed": "ok", "violated": "VIOLATED", "not checked": "not checked"}
        text = f"[{head.get(self.status, self.status)}] {self.name}"
        return text + (": " + "; ".join(self.details) if self.details else "")


@dataclass
class RobustnessEvaluation:
    """:func:`evaluate_robustness`'s result: the budgets in increasing order and the checks."""

    norm: str
    attacks: list[str]
    budgets: list[BudgetEvaluation]
    masking: list[MaskingCheck]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "norm": self.norm,
            "attacks": list(self.attacks),
            "budgets": [asdict(budget) for budget in self.budgets],
            "masking": [asdict(check) for check in self.masking],
        }


def budget_norm(perturbation: Tensor, norm: str) -> Tensor:
    """Per-example L-inf or L2 norm of ``perturbation`` ``(batch, ...)``: ``(batch,)``."""
    flat = perturbation.flatten(1).double()
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def within(perturbation: Tensor, norm: str, epsilon: float) -> Tensor:
    """Whether each perturbation lies in the ``epsilon`` ball (a relative slack of 1e-6 and
    one float32 rounding step, which attacks' clamping to the box can add)."""
    return budget_norm(perturbation, norm) <= epsilon * (1 + 1e-6) + 1e-6


def large_epsilon(norm: str, example_shape: Sequence[int]) -> float:
    """The budget at which the mid-grey image is reachable from every ``[0, 1]`` image, so
    that an attack that works must reach (nearly) 100% error: 0.5 in L-inf,
    ``0.5 * sqrt(elements)`` in L2."""
    if norm == "linf":
        return 0.5
    return 0.5 * math.sqrt(math.prod(int(d) for d in example_shape))


#: An attack of :func:`evaluate_robustness`: a name of :data:`ATTACKS`, or a specification
#: for :func:`attacks.build_attack` without the budget (``{"name": "torchattacks.PGD",
#: "steps": 100, "label": "pgd-100"}``, ``{"name": "pgd", "steps": 100}``); ``label`` names
#: it in the results (default its ``name``).
AttackEntry = str | Mapping[str, Any]


def _attack_entries(attacks: Sequence[AttackEntry]) -> dict[str, str | dict[str, Any]]:
    """The attacks by label: a name of :data:`ATTACKS`, or a specification without budget."""
    if isinstance(attacks, str | Mapping) or not attacks:
        raise ValueError(f"attacks {attacks!r}: give a list of at least one attack")
    entries: dict[str, str | dict[str, Any]] = {}
    for entry in attacks:
        spec: str | dict[str, Any]
        if isinstance(entry, str):
            if entry not in ATTACKS:
                raise ValueError(f"attack {entry!r}: expected one of {', '.join(ATTACKS)}")
            label, spec = entry, entry
        elif isinstance(entry, Mapping):
            spec = dict(entry)
            if "name" not in spec:
                raise ValueError(f"attack {entry!r}: a specification needs a name")
            budget = sorted({"eps", "epsilon"} & set(spec))
            if budget:
                raise ValueError(f"attack {entry!r}: {budget[0]} is set from each epsilon")
            label = str(spec.pop("label", spec["name"]))
        else:
            raise TypeError(f"attack {entry!r}: expected a name or a specification mapping")
        if label in entries or label == UNION:
            raise ValueError(f"attack {label!r}: each label at most once, and not {UNION!r}")
        entries[label] = spec
    return entries


def _check_budgets(norm: str, epsilons: Sequence[float]) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r}: expected one of {', '.join(NORMS)}")
    if not epsilons:
        raise ValueError("epsilons: give at least one")
    for epsilon in epsilons:
        if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon {epsilon!r}: must be a positive number")


def _specified_attack(
    model: nn.Module,
    spec: Mapping[str, Any],
    *,
    norm: str,
    epsilon: float,
    settings: AttackSettings,
    mean: Statistic | None,
    std: Statistic | None,
) -> Attack:
    """The attack of a specification at budget ``epsilon``: a torchattacks one (``eps``; the
    class must fit ``norm``, e.g. ``torchattacks.PGDL2`` for L2) in ``settings.peer_dtype``,
    or one of ours (``epsilon`` and ``norm``)."""
    if is_peer_spec(spec):
        dtype = settings.peer_dtype if settings.peer_dtype == torch.float64 else None
        return PeerAttack(model, {**spec, "eps": epsilon}, mean=mean, std=std, compute_dtype=dtype)
    return build_attack(model, {**spec, "epsilon": epsilon, "norm": norm}, mean=mean, std=std)


def build_budget_attack(
    model: nn.Module,
    name: str,
    *,
    norm: str,
    epsilon: float,
    num_classes: int,
    settings: AttackSettings,
    mean: Statistic | None = None,
    std: Statistic | None = None,
    restart: int = 0,
) -> Attack:
    """The attack ``name`` of :data:`ATTACKS` at budget ``epsilon``, as one of ours.

    ``autoattack`` is the standard version with the original settings (APGD-CE, APGD-T on
    all other classes, FAB-T, Square; ``settings.steps`` iterations, one restart each,
    ``settings.square_queries`` queries), each on the examples the previous ones left;
    ``autoattack-fast`` is APGD-CE followed by APGD-T on the :data:`FAST_TARGETS` most
    likely other classes (no FAB-T, no Square): about a third of the gradient steps of the
    standard version, the two components that find nearly all its adversarials on
    undefended and adversarially trained models (Croce & Hein 2020, Table 2).
    ``restart`` seeds PGD's random start (``settings.seed + restart``).

    Raises:
        ImportError: for a torchattacks attack when torchattacks is not installed.
    """
    if name == "fgsm":
        return FGSM(model, epsilon=epsilon, norm=norm, mean=mean, std=std)
    if name == "pgd":
        generator = torch.Generator(device=device_of(model)).manual_seed(settings.seed + restart)
        return PGD(
            model,
            epsilon=epsilon,
            norm=norm,
            steps=settings.pgd_steps,
            mean=mean,
            std=std,
            generator=generator,
        )
    if name == "lbfgs":
        return LBFGSAttack(model, mean=mean, std=std)
    library = import_torchattacks()
    common: dict[str, Any] = {
        "norm": "Linf" if norm == "linf" else "L2",
        "eps": epsilon,
        "seed": settings.seed,
    }
    steps = settings.steps

    def apgd_ce() -> Any:
        return library.APGD(model, loss="ce", steps=steps, n_restarts=1, **common)

    def apgd_t(targets: int = num_classes - 1) -> Any:
        attack = library.APGDT(model, steps=steps, n_restarts=1, n_classes=num_classes, **common)
        attack.n_target_classes = max(1, min(targets, num_classes - 1))
        return attack

    def fab() -> Any:
        return library.FAB(
            model, steps=steps, n_restarts=1, multi_targeted=True, n_classes=num_classes, **common
        )

    def square() -> Any:
        return library.Square(model, n_queries=settings.square_queries, n_restarts=1, **common)

    peers = {
        "autoattack": lambda: library.MultiAttack([apgd_ce(), apgd_t(), fab(), square()]),
        "autoattack-fast": lambda: library.MultiAttack([apgd_ce(), apgd_t(FAST_TARGETS)]),
        "apgd-ce": apgd_ce,
        "apgd-t": apgd_t,
        "fab": fab,
        "square": square,
    }
    dtype = settings.peer_dtype if settings.peer_dtype == torch.float64 else None
    attack = PeerAttack(model, peers[name](), mean=mean, std=std, compute_dtype=dtype)
    attack.name = name
    return attack


def evaluate_robustness(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    attacks: Sequence[AttackEntry],
    epsilons: Sequence[float],
    norm: str = "linf",
    settings: AttackSettings | None = None,
    mean: Statistic | None = None,
    std: Statistic | None = None,
    large: float | None = None,
    progress: bool = False,
    description: str = "evaluate",
) -> RobustnessEvaluation:
    """Clean and robust error of ``model`` at each budget, per attack and their union.

    Args:
        model: a classifier mapping ``(batch, C, H, W)`` pixels (normalised with ``mean`` and
            ``std`` when given) to logits ``(batch, classes)``.
        images: ``(N, C, H, W)`` floats in ``[0, 1]``; labels ``(N,)`` class indices.
        attacks: names of :data:`ATTACKS`, or specifications (:data:`AttackEntry`; a
            torchattacks class by name, through :class:`attacks.PeerAttack`).
        epsilons: the budgets (radius of the ``norm`` ball, in pixel units).
        norm: ``"linf"`` or ``"l2"``.
        settings: the attacks' strength (:class:`AttackSettings`).
        large: the budget at which :func:`masking_checks` expects (nearly) 100% error
            (default :func:`large_epsilon`).
        progress: a progress bar over attacks and batches.

    Only the examples classified correctly clean are attacked; L-BFGS (a minimum-distortion
    attack, independent of the budget) runs once and counts at each budget where its
    adversarial lies within it.

    Raises:
        ValueError: for an unknown attack or norm, a non-positive epsilon, or images and
            labels that do not match.
        ImportError: naming ``intriguing[eval]`` for a torchattacks attack without it.
    """
    settings = settings or AttackSettings()
    epsilons = sorted(float(e) for e in epsilons)
    _check_budgets(norm, epsilons)
    entries = _attack_entries(attacks)
    if images.ndim < 2 or labels.shape != (len(images),):
        raise ValueError(
            f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: need (N, ...) and (N,)"
        )
    size = settings.batch_size
    rows = [slice(i, i + size) for i in range(0, len(images), size)]
    # Clean predictions through an attack of budget 0: the same checks (box, shapes, labels)
    # and the same normalisation and precision as every attack after it.
    identity = FGSM(model, epsilon=0.0, norm=norm, mean=mean, std=std)
    predicted, num_classes = [], 0
    for part in rows:
        clean_logits = identity(images[part], labels[part]).clean_logits
        predicted.append(clean_logits.argmax(dim=1).cpu())
        num_classes = int(clean_logits.shape[1])
    clean_wrong = torch.cat(predicted) != labels.cpu() if rows else torch.zeros(0, dtype=torch.bool)
    correct = (~clean_wrong).nonzero().flatten()
    count = max(len(labels), 1)
    minimal: Tensor | None = None
    budgets = []
    for epsilon in epsilons:
        fooled: dict[str, Tensor] = {}
        seconds: dict[str, float] = {}
        for name, spec in entries.items():
            started = time.perf_counter()
            label = f"{description} {name} eps={epsilon:g}"
            if not isinstance(spec, str):
                attack = _specified_attack(
                    model, spec, norm=norm, epsilon=epsilon, settings=settings, mean=mean, std=std
                )
                success = _fooled(
                    attack, images, labels, correct, norm, epsilon, size, progress, label
                )
            elif spec == "lbfgs":
                if minimal is None:
                    minimal = _minimal_norms(
                        model, images, labels, correct, norm, settings, mean, std
                    )
                success = minimal <= epsilon * (1 + 1e-6) + 1e-6
            else:
                success = torch.zeros(len(labels), dtype=torch.bool)
                for restart in range(settings.pgd_restarts if spec == "pgd" else 1):
                    attack = build_budget_attack(
                        model,
                        spec,
                        norm=norm,
                        epsilon=epsilon,
                        num_classes=num_classes,
                        settings=settings,
                        mean=mean,
                        std=std,
                        restart=restart,
                    )
                    success |= _fooled(
                        attack, images, labels, correct, norm, epsilon, size, progress, label
                    )
            fooled[name] = success
            seconds[name] = time.perf_counter() - started
        wrong = {name: clean_wrong | success for name, success in fooled.items()}
        union = clean_wrong.clone()
        for value in wrong.values():
            union |= value
        robust = {name: float(value.sum()) / count for name, value in wrong.items()}
        robust[UNION] = float(union.sum()) / count
        budgets.append(
            BudgetEvaluation(
                epsilon=epsilon,
                clean_error=float(clean_wrong.sum()) / count,
                robust_error=robust,
                examples=len(labels),
                seconds=sum(seconds.values()),
                attack_seconds=seconds,
            )
        )
    big = large if large is not None else large_epsilon(norm, images.shape[1:])
    return RobustnessEvaluation(
        norm=norm,
        attacks=list(entries),
        budgets=budgets,
        masking=masking_checks(budgets, large=big),
    )


def _fooled(
    attack: Attack,
    images: Tensor,
    labels: Tensor,
    rows: Tensor,
    norm: str,
    epsilon: float,
    size: int,
    progress: bool,
    description: str,
) -> Tensor:
    """Per example (all of ``images``): attacked (in ``rows``) and fooled within budget."""
    fooled = torch.zeros(len(labels), dtype=torch.bool)
    parts = [rows[i : i + size] for i in range(0, len(rows), size)]
    for part in tqdm(parts, desc=description, disable=not progress, unit="batch", leave=False):
        x, y = images[part], labels[part]
        result = attack(x, y)
        inside = within(result.adv.detach().cpu().double() - x.double(), norm, epsilon)
        fooled[part] = result.success.cpu() & inside
    return fooled


def _minimal_norms(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    rows: Tensor,
    norm: str,
    settings: AttackSettings,
    mean: Statistic | None,
    std: Statistic | None,
) -> Tensor:
    """Per example, the ``norm`` of L-BFGS's minimum-distortion adversarial (``inf`` where it
    failed or was not attacked)."""
    attack = LBFGSAttack(model, mean=mean, std=std)
    norms = torch.full((len(labels),), math.inf, dtype=torch.float64)
    size = settings.batch_size
    for i in range(0, len(rows), size):
        part = rows[i : i + size]
        x = images[part]
        result = attack.minimal(x, labels[part])
        size_of = budget_norm(result.adv.detach().cpu().double() - x.double(), norm)
        norms[part] = torch.where(result.success.cpu(), size_of, math.inf)
    return norms


def masking_checks(
    budgets: Sequence[BudgetEvaluation],
    *,
    large: float,
    full_error: float = 0.95,
) -> list[MaskingCheck]:
    """The gradient-masking checks on an evaluation's budgets (Carlini et al. 2019).

    Each check is named by what must hold; it is violated (the details say where):

    - ``robust error grows with epsilon``: when an attack's (or the union's) robust error
      is lower at a larger budget than at a smaller one.
    - ``PGD at least as strong as FGSM``: when, at a budget, PGD's (ours, or APGD-CE's)
      robust error is below FGSM's.
    - ``white box at least as strong as black box``: when, at a budget, Square's robust
      error is above every white-box attack's (not checked without Square and a white-box
      attack).
    - ``full error at a large epsilon``: when, at a budget of at least ``large``, the
      union's robust error is below ``full_error``; not checked when no such budget was
      evaluated (the details say which budget to add).
    """
    ordered = sorted(budgets, key=lambda b: b.epsilon)
    checks = []
    falls = []
    names = sorted({name for b in ordered for name in b.robust_error})
    for name in names:
        points = [(b.epsilon, b.robust_error[name]) for b in ordered if name in b.robust_error]
        for (small, low), (big, high) in pairwise(points):
            if high < low - 1e-12:
                falls.append(f"{name}: {low:.2%} at eps={small:g} > {high:.2%} at eps={big:g}")
    grows = "robust error grows with epsilon"
    if len(ordered) < 2:
        checks.append(MaskingCheck(grows, "not checked", ["one epsilon"]))
    else:
        checks.append(MaskingCheck(grows, "violated" if falls else "passed", falls))
    weaker = []
    compared = False
    for b in ordered:
        fgsm = b.robust_error.get("fgsm")
        for name in ("pgd", "apgd-ce"):
            value = b.robust_error.get(name)
            if fgsm is None or value is None:
                continue
            compared = True
            if value < fgsm - 1e-12:
                weaker.append(f"eps={b.epsilon:g}: {name} {value:.2%} < fgsm {fgsm:.2%}")
    status = "violated" if weaker else ("passed" if compared else "not checked")
    details = weaker if compared else ["needs fgsm and pgd (or apgd-ce)"]
    checks.append(MaskingCheck("PGD at least as strong as FGSM", status, details))
    beaten = []
    compared = False
    for b in ordered:
        white = [
            value
            for name, value in b.robust_error.items()
            if name not in (*BLACK_BOX, UNION, "autoattack")
        ]
        for name in BLACK_BOX:
            value = b.robust_error.get(name)
            if value is None or not white:
                continue
            compared = True
            if value > max(white) + 1e-12:
                beaten.append(
                    f"eps={b.epsilon:g}: {name} {value:.2%} > best white-box {max(white):.2%}"
                )
    status = "violated" if beaten else ("passed" if compared else "not checked")
    details = beaten if compared else ["needs square and a white-box attack"]
    checks.append(MaskingCheck("white box at least as strong as black box", status, details))
    large_ones = [b for b in ordered if b.epsilon >= large * (1 - 1e-9)]
    if not large_ones:
        checks.append(
            MaskingCheck(
                "full error at a large epsilon",
                "not checked",
                [f"no epsilon >= {large:g} evaluated (add it to check)"],
            )
        )
    else:
        short = [
            f"eps={b.epsilon:g}: union {b.robust_error[UNION]:.2%} < {full_error:.0%}"
            for b in large_ones
            if b.robust_error.get(UNION, 0.0) < full_error
        ]
        checks.append(
            MaskingCheck("full error at a large epsilon", "violated" if short else "passed", short)
        )
    return checks


def evaluation_rows(name: str, evaluation: RobustnessEvaluation) -> list[list[str]]:
    """Rows of the markdown table: model, epsilon, clean error, each attack's robust error,
    the union's, examples and seconds (percentages with one decimal)."""
    rows = []
    for b in evaluation.budgets:
        rows.append(
            [
                name,
                f"{b.epsilon:g}",
                f"{b.clean_error:.1%}",
                *(f"{b.robust_error[a]:.1%}" for a in evaluation.attacks),
                f"**{b.robust_error[UNION]:.1%}**",
                str(b.examples),
                f"{b.seconds:.1f}",
            ]
        )
    return rows


def evaluation_header(attacks: Sequence[str]) -> list[str]:
    """The header of :func:`evaluation_rows`' table."""
    return ["model", "epsilon", "clean", *attacks, "union (robust error)", "examples", "seconds"]


def robust_error_figure(
    evaluations: Mapping[str, RobustnessEvaluation], *, title: str | None = None
) -> Any:
    """Robust error against epsilon: per model, the union (solid, with markers) and each
    attack (thin, dashed); a :class:`matplotlib.figure.Figure`."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for index, (name, evaluation) in enumerate(evaluations.items()):
        color = colors[index % len(colors)]
        epsilons = [b.epsilon for b in evaluation.budgets]
        union = [100 * b.robust_error[UNION] for b in evaluation.budgets]
        axes.plot(epsilons, union, marker="o", color=color, linewidth=2, label=f"{name} (union)")
        styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
        for position, attack in enumerate(evaluation.attacks):
            values = [100 * b.robust_error[attack] for b in evaluation.budgets]
            axes.plot(
                epsilons,
                values,
                linestyle=styles[position % len(styles)],
                color=color,
                linewidth=1,
                alpha=0.7,
                label=f"{name} {attack}",
            )
        clean = evaluation.budgets[0].clean_error if evaluation.budgets else math.nan
        axes.axhline(100 * clean, color=color, linewidth=0.8, alpha=0.4)
    norm = next(iter(evaluations.values())).norm if evaluations else "linf"
    axes.set_xlabel(f"epsilon ({'L-inf' if norm == 'linf' else 'L2'})")
    axes.set_ylabel("robust error (%)")
    axes.set_ylim(-2, 102)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure
