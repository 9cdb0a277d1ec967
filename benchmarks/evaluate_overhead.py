"""``intriguing evaluate``'s AutoAttack against torchattacks' AutoAttack called directly (by hand).

Issue 12's measurement: the cost of our evaluation path (:func:`analysis.evaluate_robustness`
with the attack ``autoattack``: clean predictions, the torchattacks attack behind
:class:`attacks.PeerAttack`, the budget check) against torchattacks 3.5.1's ``AutoAttack``
called directly on the same model, images and settings:

- the same components and settings (APGD-CE, APGD-T on all 9 other classes, FAB-T, Square
  with 5000 queries; ``--steps`` iterations each, 100 as in the original AutoAttack, set on
  torchattacks' own ``AutoAttack`` object, whose components default to 10; one restart each;
  seed 0), the same L-inf budget, the same batches (the correctly classified images, in
  batches of ``--batch-size``), the same bookkeeping (a clean forward pass first, a forward
  pass on the adversarials after);
- the same precision: the adapter computes in float64 by default (``AttackSettings.
  peer_dtype``), so the direct call runs on a float64 copy of the model with float64 images
  (FAB gets float32 images, as the adapter gives it); and both again in float32.

The four variants alternate ``--repeats`` times in one process, so that a shared machine
slows each alike; the table gives the median seconds, the adapter's overhead in percent, and
the robust error of each (the adapter and the direct call must agree exactly).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluate_overhead.py --checkpoint CKPT \\
        [--examples 1000] [--epsilon 0.1] [--repeats 2] [--attack autoattack] [--json OUT]

``--attack autoattack-fast`` compares the cheaper version (APGD-CE and APGD-T on 3 classes)
instead. torchattacks comes with the project's ``eval`` extra (``pip install intriguing[eval]``).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from intriguing.analysis.evaluation import FAST_TARGETS, AttackSettings, evaluate_robustness
from intriguing.attacks.peers import import_torchattacks
from intriguing.datamodules import build_datamodule
from intriguing.trainers import load_classifier


class InDtype(nn.Module):
    """``model`` (a copy in ``dtype``) on inputs cast to ``dtype``, logits in the input's
    dtype: what the adapter's forward pass does for a float64 evaluation."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(dtype)
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.to(self.dtype)).to(x.dtype)


def direct_autoattack(
    network: InDtype, name: str, epsilon: float, steps: int, queries: int
) -> Callable[[Tensor, Tensor], Tensor]:
    """torchattacks' AutoAttack at our settings on ``network``, as ``(x, y) -> x_adv``."""
    library = import_torchattacks()
    dtype = network.dtype
    attack = library.AutoAttack(
        network, norm="Linf", eps=epsilon, version="standard", n_classes=10, seed=0
    )
    components = list(attack._autoattack._attacks.values())
    if name == "autoattack-fast":  # APGD-CE, then APGD-T on the 3 most likely other classes
        components = components[:2]
        components[1].n_target_classes = FAST_TARGETS
        attack._autoattack = library.MultiAttack(components)
    for component in components:
        component.steps = steps
        if type(component).__name__ == "Square":
            component.n_queries = queries
        if type(component).__name__ == "FAB" and dtype == torch.float64:
            # As the adapter: FAB 3.5.1 mixes in float32 tensors, so it gets float32 images.
            original = component.forward
            component.forward = lambda x, y, run=original: run(x.float(), y).to(x.dtype)

    def run(x: Tensor, y: Tensor) -> Tensor:
        return attack(x.to(dtype), y)

    return run


def run_direct(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    name: str,
    epsilon: float,
    steps: int,
    dtype: torch.dtype,
    batch_size: int,
    queries: int = 5000,
) -> tuple[float, float, float]:
    """Wall and CPU seconds and robust error of the direct call, with the adapter's
    bookkeeping."""
    network = InDtype(model, dtype).eval()
    started, cpu = time.perf_counter(), time.process_time()
    attack = direct_autoattack(network, name, epsilon, steps, queries)
    with torch.no_grad():
        wrong = network(x.to(dtype)).argmax(dim=1) != y
    rows = (~wrong).nonzero().flatten()
    fooled = torch.zeros_like(wrong)
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        adv = attack(x[part], y[part])
        with torch.no_grad():
            fooled[part] = network(adv).argmax(dim=1) != y[part]
        inside = (adv.double() - x[part].double()).flatten(1).abs().amax(dim=1) <= epsilon + 1e-6
        fooled[part] &= inside
    seconds = time.perf_counter() - started
    return seconds, time.process_time() - cpu, float((wrong | fooled).float().mean())


def run_ours(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    name: str,
    epsilon: float,
    steps: int,
    dtype: torch.dtype,
    batch_size: int,
    queries: int = 5000,
) -> tuple[float, float, float]:
    """Wall and CPU seconds and robust error of :func:`analysis.evaluate_robustness`."""
    settings = AttackSettings(
        steps=steps, square_queries=queries, peer_dtype=dtype, batch_size=batch_size, seed=0
    )
    started, cpu = time.perf_counter(), time.process_time()
    evaluation = evaluate_robustness(
        model, x, y, attacks=[name], epsilons=[epsilon], norm="linf", settings=settings
    )
    seconds = time.perf_counter() - started
    return seconds, time.process_time() - cpu, evaluation.budgets[0].robust_error[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained ImageClassifier (.ckpt)")
    parser.add_argument("--data-dir", default="data", help="where MNIST is cached (data)")
    parser.add_argument("--examples", type=int, default=1000, help="first N test images (1000)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="L-inf budget (0.1)")
    parser.add_argument("--attack", default="autoattack", choices=["autoattack", "autoattack-fast"])
    parser.add_argument("--steps", type=int, default=100, help="APGD/APGD-T/FAB steps (100)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per call (500)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the 4 variants (2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"]
    )
    parser.add_argument("--json", help="write every timing here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_classifier(args.checkpoint).network.eval().float()
    data = build_datamodule({"name": "mnist", "data_dir": args.data_dir, "on_device": False})
    data.prepare_data()
    data.setup("test")
    x, y = data.tensors("test")
    x, y = x[: args.examples].float(), y[: args.examples]

    variants = {
        f"{path} {dtype}": (run, getattr(torch, dtype))
        for dtype in args.dtypes
        for path, run in (("intriguing evaluate", run_ours), ("torchattacks direct", run_direct))
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    errors: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # warm-up, untimed: every code path once, on a few images
        run, dtype = variants[name]
        run(model, x[:16], y[:16], args.attack, args.epsilon, 2, dtype, args.batch_size, 20)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            run, dtype = variants[name]
            spent, used, error = run(
                model, x, y, args.attack, args.epsilon, args.steps, dtype, args.batch_size
            )
            seconds[name].append(spent)
            cpu[name].append(used)
            errors[name].append(error)
            print(
                f"round {repeat + 1}: {name}: {spent:.1f} s ({used:.1f} s CPU), error {error:.1%}"
            )

    median = {name: statistics.median(values) for name, values in seconds.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    lines = [
        f"{args.attack}, L-inf {args.epsilon}, {len(x)} MNIST test images, {args.steps} steps, "
        f"{torch.get_num_threads()} thread(s), {args.repeats} alternated rounds",
        "",
        "| Path | dtype | Median wall seconds (all runs) | Median CPU seconds (all runs) "
        "| Robust error | Adapter overhead (wall, CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for dtype in args.dtypes:
        ours, theirs = f"intriguing evaluate {dtype}", f"torchattacks direct {dtype}"
        overhead = median[ours] / median[theirs] - 1
        overhead_cpu = median_cpu[ours] / median_cpu[theirs] - 1
        for name in (ours, theirs):
            runs = ", ".join(f"{value:.1f}" for value in seconds[name])
            cpu_runs = ", ".join(f"{value:.1f}" for value in cpu[name])
            extra = f"{overhead:+.1%}, {overhead_cpu:+.1%}" if name == ours else ""
            lines.append(
                f"| {name.rsplit(' ', 1)[0]} | {dtype} | {median[name]:.1f} s ({runs}) | "
                f"{median_cpu[name]:.1f} s ({cpu_runs}) | {errors[name][0]:.1%} | {extra} |"
            )
    if len(args.dtypes) == 2:
        ratio = (
            median_cpu["intriguing evaluate float64"] / median_cpu["intriguing evaluate float32"]
        )
        lines.append(f"\nfloat64 / float32 (intriguing evaluate, CPU seconds): {ratio:.2f}x")
    print("\n".join(lines))
    if args.json:
        report = {
            "checkpoint": args.checkpoint,
            "examples": len(x),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}",
            "options": vars(args),
            "seconds": seconds,
            "cpu_seconds": cpu,
            "robust_error": errors,
            "median_seconds": median,
            "median_cpu_seconds": median_cpu,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
