"""Speed and strength of our L-BFGS attack against advertorch's, side by side (run by hand).

On the same trained FC100-100-10 and the same MNIST test images, targeted at
``(y + 1) mod 10``:

- advertorch 0.2.3's ``LBFGSAttack`` with its defaults (9 search steps, 100 iterations), in
  batches of 100 (it couples each batch into one SciPy L-BFGS-B problem),
- ours (``attacks.LBFGSAttack`` with its defaults), in batches of ``--batch-size``;

reporting wall time, gradient evaluations, success and mean distortion of both. Then our
untargeted mean minimum distortion (the paper's Table 1 column; 0.058 for FC100-100-10 in
the paper) and the success of FGSM, PGD and Gaussian noise at the same mean distortion.

    python benchmarks/attack_speed.py --checkpoint CKPT [--examples 1000] [--device cuda]

advertorch is a benchmark-only tool: ``pip install advertorch==0.2.3`` (it needs SciPy).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from intriguing.attacks import FGSM, PGD, Attack, GaussianNoise, LBFGSAttack, distortion
from intriguing.datamodules import build_datamodule
from intriguing.trainers import load_classifier

PAPER_FC100_DISTORTION = 0.058


def import_advertorch_lbfgs() -> type:
    """advertorch's LBFGSAttack, after the one-line shim it needs on current torch."""
    # advertorch 0.2.3 imports torch.autograd.gradcheck.zero_gradients, removed in torch 1.9.
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    if not hasattr(gradcheck, "zero_gradients"):
        gradcheck.zero_gradients = lambda x: x.grad.zero_() if x.grad is not None else None
    from advertorch.attacks import LBFGSAttack as AdvertorchLBFGS

    return AdvertorchLBFGS


class CountingModel(nn.Module):
    """Counts the forward passes whose input requires a gradient (gradient evaluations)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.gradient_calls = 0
        self.gradient_examples = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            self.gradient_calls += 1
            self.gradient_examples += len(x)
        return self.model(x)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_advertorch(
    model: nn.Module, x: Tensor, y: Tensor, target: Tensor, batch_size: int
) -> dict[str, float]:
    attack_class = import_advertorch_lbfgs()
    counting = CountingModel(model)
    advs = []
    started = time.perf_counter()
    for i in range(0, len(x), batch_size):
        rows = slice(i, i + batch_size)
        attack = attack_class(
            counting, num_classes=10, batch_size=len(x[rows]), targeted=True
        )  # its defaults: 9 binary search steps, 100 iterations, initial const 1e-2
        advs.append(attack.perturb(x[rows], target[rows]))
    synchronize(x.device)
    seconds = time.perf_counter() - started
    adv = torch.cat(advs)
    with torch.no_grad():
        success = model(adv).argmax(dim=1) == target
    size = distortion(adv, x)
    return {
        "seconds": seconds,
        "gradient_evaluations_per_example": counting.gradient_examples / len(x),
        "batched_gradient_calls": counting.gradient_calls,
        "success_rate": float(success.float().mean()),
        "mean_distortion": float(size[success].mean()) if bool(success.any()) else math.nan,
    }


def run_ours(
    attack: LBFGSAttack, x: Tensor, y: Tensor, target: Tensor | None, batch_size: int
) -> tuple[dict[str, float], Tensor]:
    results = []
    synchronize(x.device)
    started = time.perf_counter()
    for i in range(0, len(x), batch_size):
        rows = slice(i, i + batch_size)
        results.append(attack(x[rows], y[rows], None if target is None else target[rows]))
    synchronize(x.device)
    seconds = time.perf_counter() - started
    success = torch.cat([r.success for r in results])
    size = torch.cat([r.distortion for r in results])
    evaluations = torch.cat([r.gradient_evaluations for r in results])
    record = {
        "seconds": seconds,
        "gradient_evaluations_per_example": float(evaluations.float().mean()),
        "success_rate": float(success.float().mean()),
        "mean_distortion": float(size[success].mean()) if bool(success.any()) else math.nan,
    }
    return record, size


def matched_epsilon(
    make: Callable[[float], Attack], x: Tensor, y: Tensor, wanted: float
) -> tuple[float, dict]:
    """The budget whose adversarial set has mean distortion ``wanted`` (bisection)."""
    lower, upper = 0.0, 1.0
    while float(make(upper)(x, y).distortion.mean()) < wanted and upper < 1e3:
        upper *= 2
    for _ in range(30):
        middle = (lower + upper) / 2
        if float(make(middle)(x, y).distortion.mean()) < wanted:
            lower = middle
        else:
            upper = middle
    result = make(upper)(x, y)
    return upper, {
        "epsilon": upper,
        "mean_distortion": float(result.distortion.mean()),
        "success_rate": result.success_rate,
    }


def baselines_at(model: nn.Module, x: Tensor, y: Tensor, sizes: Tensor) -> dict[str, dict]:
    """Success of FGSM, PGD (global budget) and noise (per example) at our distortion."""
    wanted = float(sizes.mean())
    rows: dict[str, dict] = {}
    for name, make in {
        "fgsm_linf": lambda e: FGSM(model, epsilon=e, norm="linf"),
        "fgsm_l2": lambda e: FGSM(model, epsilon=e, norm="l2"),
        "pgd_linf": lambda e: PGD(
            model, epsilon=e, norm="linf", generator=torch.Generator(x.device).manual_seed(0)
        ),
        "pgd_l2": lambda e: PGD(
            model, epsilon=e, norm="l2", generator=torch.Generator(x.device).manual_seed(0)
        ),
    }.items():
        _, rows[name] = matched_epsilon(make, x, y, wanted)
    noise = GaussianNoise(model, stddev=None, generator=torch.Generator(x.device).manual_seed(0))
    result = noise(x, y, distortion=sizes)
    rows["noise_matched_per_example"] = {
        "mean_distortion": float(result.distortion.mean()),
        "success_rate": result.success_rate,
    }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="an FC100-100-10 ImageClassifier")
    parser.add_argument("--data-dir", default="data", help="where MNIST is cached (data)")
    parser.add_argument("--examples", type=int, default=1000, help="first N test images (1000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="our batch size (1000)")
    parser.add_argument("--advertorch-batch-size", type=int, default=100)
    parser.add_argument("--skip-advertorch", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_classifier(args.checkpoint).network.eval().to(device)
    data = build_datamodule({"name": "mnist", "data_dir": args.data_dir, "on_device": False})
    data.prepare_data()
    data.setup("test")
    x, y = data.tensors("test")
    x, y = x[: args.examples].to(device), y[: args.examples].to(device)
    target = (y + 1) % 10
    with torch.no_grad():
        clean_error = float((model(x).argmax(dim=1) != y).float().mean())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    report: dict[str, object] = {
        "checkpoint": args.checkpoint,
        "examples": len(x),
        "device": f"{device} ({where or platform.machine()}), {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "clean_error": clean_error,
    }
    print(f"{len(x)} MNIST test images, clean error {clean_error:.2%}, on {report['device']}")

    attack = LBFGSAttack(model)
    run_ours(attack, x[:10], y[:10], target[:10], args.batch_size)  # warm-up
    ours, _ = run_ours(attack, x, y, target, args.batch_size)
    report["ours_targeted"] = ours
    print(
        f"ours (batch {args.batch_size}):       {ours['seconds']:8.1f} s, "
        f"{ours['gradient_evaluations_per_example']:6.0f} gradient evaluations per example, "
        f"success {ours['success_rate']:.1%}, mean distortion {ours['mean_distortion']:.5f}"
    )
    if not args.skip_advertorch:
        theirs = run_advertorch(model, x, y, target, args.advertorch_batch_size)
        report["advertorch_targeted"] = theirs
        print(
            f"advertorch (batch {args.advertorch_batch_size}): {theirs['seconds']:8.1f} s, "
            f"{theirs['gradient_evaluations_per_example']:6.0f} gradient evaluations per example "
            f"({theirs['batched_gradient_calls']} batched calls), success "
            f"{theirs['success_rate']:.1%}, mean distortion {theirs['mean_distortion']:.5f}"
        )
        # Ours again, so that ours brackets advertorch's minutes: on a shared machine the
        # load changes while advertorch runs; the speed-up uses the mean of the two.
        again, _ = run_ours(attack, x, y, target, args.batch_size)
        report["ours_targeted_after"] = again
        ours_seconds = (ours["seconds"] + again["seconds"]) / 2
        report["speedup"] = theirs["seconds"] / ours_seconds
        print(f"ours again (after advertorch): {again['seconds']:8.1f} s")
        print(f"speed-up: {report['speedup']:.1f}x (ours: the mean of both timings)")

    untargeted, sizes = run_ours(attack, x, y, None, args.batch_size)
    report["ours_untargeted"] = untargeted
    report["paper_mean_minimum_distortion"] = PAPER_FC100_DISTORTION
    print(
        f"untargeted mean minimum distortion: {untargeted['mean_distortion']:.5f} "
        f"(paper: {PAPER_FC100_DISTORTION}), success {untargeted['success_rate']:.1%}, "
        f"{untargeted['seconds']:.1f} s"
    )
    baselines = baselines_at(model, x, y, sizes)
    report["baselines_at_same_mean_distortion"] = baselines
    for name, row in baselines.items():
        budget = f"epsilon {row['epsilon']:.4f}, " if "epsilon" in row else ""
        print(
            f"  {name:26s} {budget}mean distortion {row['mean_distortion']:.4f}: "
            f"success {row['success_rate']:.1%}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
