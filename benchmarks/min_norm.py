"""Minimum-norm (L2) attacks side by side on one model and the same MNIST test images (by hand).

Issue 12's measurement: our box-constrained L-BFGS (``attacks.LBFGSAttack``, Szegedy et al.
2013) against the minimum-norm attacks the field uses, on the first ``--examples`` MNIST test
images of one checkpoint, all in float32:

- ``lbfgs``: ours with its defaults; ``lbfgs[key=value,...]`` adds a row with other keyword
  arguments (e.g. ``lbfgs[rivals=2]``, see ``LBFGSAttack``), named by the brackets;
- ``fab``: torchattacks 3.5.1's FAB (Croce & Hein 2020), L2, ``--fab-steps`` iterations, no
  restarts: the untargeted run (row ``fab``) and the best per image of that run and the nine
  targeted runs at the 2nd..10th most likely class (row ``fab10``, "best of 10", timed as the
  sum of the ten runs);
- ``fmn`` and ``ddn``: Foolbox 3.3.4's ``L2FMNAttack`` (Pintor et al. 2021) and
  ``DDNAttack`` (Rony et al. 2019), their defaults (100 steps); ``fmn[key=value,...]`` and
  ``ddn[...]`` add rows with other keyword arguments (e.g. ``ddn[steps=1000]``);
- ``cw``: Foolbox's ``L2CarliniWagnerAttack`` (binary search over ``c``; ``--cw-steps`` Adam
  steps per search step, abort early) and ``cw-ta``: torchattacks' ``CW`` (one ``c``, no
  search: the smallest adversarial iterate at ``--cw-ta-c``; not a minimum-norm attack, for
  reference).

Every attack sees the same images in chunks of ``--chunk``; the order of the attacks rotates
from chunk to chunk, so that on a shared, noisy machine each one meets the same load (ratios
are measured in one run). Every returned point is checked afresh: it counts as a success when
it lies in the box [0, 1] and the model's float32 prediction differs from the label.
Images the model already misclassifies are left out of the distortion figures (every attack
would report 0) and counted in ``already_misclassified``.

Reported per attack, over the correctly classified images: success rate; mean and median L2
distortion over the successes; the median over all of them with a failure counted as
infinite; the paper's measure (``sqrt(sum(r^2) / n)``, :func:`attacks.distortion`, averaged
as :func:`attacks.minimum_distortion` does: over successes, misclassified images counting 0);
wall time; and ratios to ours (``lbfgs``). The tail: the fraction of images where ours is
more than 5% / 20% above the best peer's distortion (per image, the smallest of every peer
that succeeded there).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/min_norm.py --checkpoint CKPT \\
        [--examples 1000] [--threads 1] [--attacks lbfgs fab fmn ddn cw cw-ta] [--json OUT]

Foolbox is a benchmark-only tool, not a project dependency. Its import needs GitPython, so it
goes into a folder of its own that the benchmark is pointed at (the project's venv stays as
it is)::

    .venv/bin/pip install --no-deps --target /tmp/foolbox-site foolbox==3.3.4 \\
        eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3
    PYTHONPATH=/tmp/foolbox-site OMP_NUM_THREADS=1 .venv/bin/python benchmarks/min_norm.py ...

torchattacks comes with the project's ``eval`` extra (``pip install intriguing[eval]``).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from intriguing.attacks import LBFGSAttack
from intriguing.datamodules import build_datamodule
from intriguing.trainers import load_classifier

FOOLBOX_HELP = (
    "Foolbox 3.3.4 is missing (a benchmark-only tool): .venv/bin/pip install --no-deps "
    "--target /tmp/foolbox-site foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 "
    "smmap==5.0.3, then run with PYTHONPATH=/tmp/foolbox-site"
)
TORCHATTACKS_HELP = "torchattacks is missing: pip install 'intriguing[eval]' (torchattacks 3.5.1)"
OURS = "lbfgs"

# An attack runs on a chunk (x, y) and returns one adversarial batch per row it reports
# (FAB reports two: its untargeted run and the best of ten), with the seconds of each row.
Runner = Callable[[Tensor, Tensor], dict[str, tuple[Tensor, float]]]


@dataclass
class Row:
    """Adversarial points and seconds of one reported attack, gathered chunk by chunk."""

    advs: list[Tensor] = field(default_factory=list)
    seconds: float = 0.0


def timed(function: Callable[[], Tensor]) -> tuple[Tensor, float]:
    started = time.perf_counter()
    result = function()
    return result.detach(), time.perf_counter() - started


def parse_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``name`` or ``name[key=value,...]`` -> the name and keyword arguments (values as
    Python literals)."""
    name, bracket, rest = spec.partition("[")
    if not bracket:
        return spec, {}
    if not rest.endswith("]"):
        raise ValueError(f"attack {spec!r}: expected NAME or NAME[key=value,...]")
    options: dict[str, object] = {}
    for item in filter(None, rest[:-1].split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = ast.literal_eval(value.strip())
    return name, options


def lbfgs_runner(model: nn.Module, spec: str) -> Runner:
    attack = LBFGSAttack(model, **parse_spec(spec)[1])  # type: ignore[arg-type]

    def run(x: Tensor, y: Tensor) -> dict[str, tuple[Tensor, float]]:
        return {spec: timed(lambda: attack(x, y).adv)}

    return run


def fab_runner(model: nn.Module, steps: int) -> Runner:
    try:
        import torchattacks
    except ImportError as error:
        raise SystemExit(TORCHATTACKS_HELP) from error
    untargeted = torchattacks.FAB(model, norm="L2", steps=steps, n_restarts=1, n_classes=10)
    targeted = torchattacks.FAB(
        model, norm="L2", steps=steps, n_restarts=1, n_classes=10, multi_targeted=True
    )

    def run(x: Tensor, y: Tensor) -> dict[str, tuple[Tensor, float]]:
        # attack_single_run returns the smallest adversarial of one run (x where none);
        # perturb() would keep the first run's point for every later one.
        first, seconds = timed(lambda: untargeted.attack_single_run(x, y))
        best, total = first, seconds
        for rank in range(2, 11):  # the 2nd..10th most likely class, as AutoAttack's FAB-T
            targeted.target_class = rank
            adv, spent = timed(lambda: targeted.attack_single_run_targeted(x, y))
            total += spent
            best = smaller_adversarial(model, x, y, best, adv)
        return {"fab": (first, seconds), "fab10": (best, total)}

    return run


def smaller_adversarial(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per image, the adversarial one of ``a`` and ``b`` with the smaller L2 distance to ``x``."""
    size_a = torch.where(fooled(model, a, y), l2(a, x), math.inf)
    size_b = torch.where(fooled(model, b, y), l2(b, x), math.inf)
    view = (-1, *([1] * (x.ndim - 1)))
    return torch.where((size_b < size_a).view(view), b, a)


def foolbox_runner(model: nn.Module, spec: str, cw_steps: int) -> Runner:
    try:
        import foolbox
    except ImportError as error:
        raise SystemExit(FOOLBOX_HELP) from error
    wrapped = foolbox.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")
    name, options = parse_spec(spec)
    attack = {
        "fmn": lambda: foolbox.attacks.L2FMNAttack(**options),
        "ddn": lambda: foolbox.attacks.DDNAttack(**options),
        "cw": lambda: foolbox.attacks.L2CarliniWagnerAttack(**{"steps": cw_steps, **options}),
    }[name]()

    def run(x: Tensor, y: Tensor) -> dict[str, tuple[Tensor, float]]:
        return {spec: timed(lambda: attack(wrapped, x, y, epsilons=None)[1])}

    return run


def cw_torchattacks_runner(model: nn.Module, c: float, steps: int) -> Runner:
    try:
        import torchattacks
    except ImportError as error:
        raise SystemExit(TORCHATTACKS_HELP) from error
    attack = torchattacks.CW(model, c=c, kappa=0, steps=steps, lr=0.01)

    def run(x: Tensor, y: Tensor) -> dict[str, tuple[Tensor, float]]:
        return {"cw-ta": timed(lambda: attack(x, y))}

    return run


def l2(adv: Tensor, x: Tensor) -> Tensor:
    return (adv - x).flatten(1).norm(dim=1)


def fooled(model: nn.Module, adv: Tensor, y: Tensor) -> Tensor:
    """A fresh float32 check: in the box [0, 1] and predicted as another class than ``y``."""
    with torch.no_grad():
        wrong = model(adv).argmax(dim=1) != y
    inside = (adv >= 0).flatten(1).all(dim=1) & (adv <= 1).flatten(1).all(dim=1)
    return wrong & inside


def summarise(
    size: Tensor, success: Tensor, seconds: float, pixels: int, misclassified: int
) -> dict[str, float]:
    """Figures of one attack over the correctly classified images (``size``: L2, inf where
    the attack failed)."""
    found = size[success]
    with_failures = torch.where(success, size, math.inf)
    paper = found / math.sqrt(pixels)  # attacks.distortion, the paper's measure
    paper_total = float(paper.sum())  # misclassified images count with 0
    return {
        "success_rate": float(success.float().mean()),
        "mean_l2": float(found.mean()) if len(found) else math.nan,
        "median_l2": float(found.median()) if len(found) else math.nan,
        "median_l2_failures_inf": float(with_failures.median()),
        "paper_mean_distortion": paper_total / max(len(found) + misclassified, 1),
        "seconds": seconds,
    }


def format_table(rows: dict[str, dict[str, float]]) -> str:
    ours = rows[OURS]
    lines = [
        "| Attack | Success | Mean L2 | Median L2 | Median L2 (failures inf) | Paper's measure "
        "| Wall time | Mean L2 / ours | Time / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['success_rate']:.1%} | {row['mean_l2']:.4f} | "
            f"{row['median_l2']:.4f} | {row['median_l2_failures_inf']:.4f} | "
            f"{row['paper_mean_distortion']:.5f} | {row['seconds']:.1f} s | "
            f"{row['mean_l2'] / ours['mean_l2']:.3f} | {row['seconds'] / ours['seconds']:.2f} |"
        )
    return "\n".join(lines)


def tail(ours: Tensor, peers: dict[str, Tensor]) -> dict[str, float]:
    """How often ours is above the best peer per image, where ours and some peer succeeded
    (``ours`` and ``peers``: L2 per image, inf where the attack failed)."""
    best = torch.stack(list(peers.values())).amin(dim=0)
    where = torch.isfinite(ours) & torch.isfinite(best)
    ratio = ours[where] / best[where].clamp(min=1e-12)
    count = max(int(where.sum()), 1)
    return {
        "images_compared": int(where.sum()),
        "above_best_peer_5pct": int((ratio > 1.05).sum()) / count,
        "above_best_peer_20pct": int((ratio > 1.20).sum()) / count,
        "below_best_peer_5pct": int((ratio < 1 / 1.05).sum()) / count,
        "mean_ratio_to_best_peer": float(ratio.mean()) if len(ratio) else math.nan,
        "max_ratio_to_best_peer": float(ratio.max()) if len(ratio) else math.nan,
    }


def target(name: str, rows: dict[str, dict[str, float]]) -> dict[str, object]:
    """Issue 12's target for our row ``name``: mean L2 at most the best peer's (the smallest
    mean among peers at least as successful), in at most half that peer's wall time."""
    ours = rows[name]
    peers = {
        peer: row
        for peer, row in rows.items()
        if not peer.startswith(OURS) and row["success_rate"] >= ours["success_rate"]
    }
    if not peers:
        return {"best_peer": None, "verdict": "no peer as successful as ours"}
    best = min(peers, key=lambda peer: peers[peer]["mean_l2"])
    distortion = ours["mean_l2"] / peers[best]["mean_l2"]
    time_ratio = ours["seconds"] / peers[best]["seconds"]
    met = distortion <= 1 and time_ratio <= 0.5
    return {
        "best_peer": best,
        "mean_l2_ratio": distortion,
        "time_ratio": time_ratio,
        "met": met,
        "verdict": f"{'met' if met else 'NOT met'} (best peer {best}: mean L2 x{distortion:.4f}, "
        f"wall time x{time_ratio:.3f})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained ImageClassifier (.ckpt)")
    parser.add_argument("--data-dir", default="data", help="where MNIST is cached (data)")
    parser.add_argument("--examples", type=int, default=1000, help="first N test images (1000)")
    parser.add_argument("--chunk", type=int, default=250, help="images per chunk (250)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=[OURS, "fab", "fmn", "ddn", "cw", "cw-ta"],
        help="lbfgs, fab (rows fab and fab10), fmn, ddn, cw, cw-ta; lbfgs, fmn, ddn and cw "
        "also as NAME[key=value,...] with keyword arguments of their own",
    )
    parser.add_argument("--fab-steps", type=int, default=100, help="FAB iterations (100)")
    parser.add_argument("--cw-steps", type=int, default=1000, help="Foolbox CW steps (1000)")
    parser.add_argument("--cw-ta-c", type=float, default=10.0, help="torchattacks CW c (10)")
    parser.add_argument("--cw-ta-steps", type=int, default=100, help="torchattacks CW (100)")
    parser.add_argument("--json", help="write every number (and per-image L2) here")
    args = parser.parse_args()
    if OURS not in args.attacks:
        parser.error("--attacks must include lbfgs (the ratios are to ours)")
    torch.set_num_threads(args.threads)
    model = load_classifier(args.checkpoint).network.eval().float()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    data = build_datamodule({"name": "mnist", "data_dir": args.data_dir, "on_device": False})
    data.prepare_data()
    data.setup("test")
    x_all, y_all = data.tensors("test")
    x_all, y_all = x_all[: args.examples].float(), y_all[: args.examples]

    runners: list[Runner] = []
    for name in args.attacks:
        if name.startswith(OURS):
            runners.append(lbfgs_runner(model, name))
        elif name == "fab":
            runners.append(fab_runner(model, args.fab_steps))
        elif parse_spec(name)[0] in ("fmn", "ddn", "cw"):
            runners.append(foolbox_runner(model, name, args.cw_steps))
        elif name == "cw-ta":
            runners.append(cw_torchattacks_runner(model, args.cw_ta_c, args.cw_ta_steps))
        else:
            parser.error(f"unknown attack {name!r}")

    with torch.no_grad():
        correct = model(x_all).argmax(dim=1) == y_all
    x, y = x_all[correct], y_all[correct]
    misclassified = int((~correct).sum())
    for run in runners:  # warm-up on a few images, untimed
        run(x[:8], y[:8])
    rows: dict[str, Row] = {}
    chunks = range(0, len(x), args.chunk)
    for number, start in enumerate(chunks):
        rows_x, rows_y = x[start : start + args.chunk], y[start : start + args.chunk]
        shift = number % len(runners)
        for run in runners[shift:] + runners[:shift]:
            for name, (adv, seconds) in run(rows_x, rows_y).items():
                row = rows.setdefault(name, Row())
                row.advs.append(adv)
                row.seconds += seconds
        print(f"chunk {number + 1}/{len(chunks)} done", file=sys.stderr)

    sizes: dict[str, Tensor] = {}
    summary: dict[str, dict[str, float]] = {}
    pixels = x[0].numel()
    for name, row in rows.items():
        adv = torch.cat(row.advs)
        success = fooled(model, adv, y)
        sizes[name] = torch.where(success, l2(adv, x), math.inf)
        summary[name] = summarise(sizes[name], success, row.seconds, pixels, misclassified)
    ordered = {OURS: summary.pop(OURS), **summary}
    peers = {name: size for name, size in sizes.items() if not name.startswith(OURS)}
    report: dict[str, object] = {
        "checkpoint": args.checkpoint,
        "examples": len(x_all),
        "attacked": len(x),
        "already_misclassified": misclassified,
        "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} "
        f"torch thread(s), torch {torch.__version__}",
        "options": vars(args),
        "attacks": ordered,
    }
    ours_rows = [name for name in ordered if name.startswith(OURS)]
    if peers:
        report["tail"] = {name: tail(sizes[name], peers) for name in ours_rows}
        report["tail_by_peer"] = {
            name: tail(sizes[OURS], {name: size}) for name, size in peers.items()
        }
        report["target"] = {name: target(name, ordered) for name in ours_rows}
    print(
        f"{len(x_all)} MNIST test images, {misclassified} misclassified (left out), "
        f"{len(x)} attacked; {report['machine']}"
    )
    print(format_table(ordered))
    for name in ours_rows if peers else []:
        figures = report["tail"][name]  # type: ignore[index]
        print(
            f"tail of {name} against the best peer per image: "
            + ", ".join(f"{key} {value:.4g}" for key, value in figures.items())
        )
        print(f"target for {name}: {report['target'][name]['verdict']}")  # type: ignore[index]
    if args.json:
        report["per_image_l2"] = {name: size.tolist() for name, size in sizes.items()}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
