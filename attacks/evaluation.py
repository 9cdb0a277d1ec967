"""Minimum distortion over a data set: the last column of the paper's Table 1.

Szegedy et al. (2013) report, per model, the average distortion of the smallest perturbations
that misclassify every example. :func:`minimum_distortion` runs a minimum-distortion attack
(L-BFGS, or a budget attack bisected per example) over a loader, shows a progress bar, and can
save the adversarial set for transfer studies (Tables 2 and 4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from intriguing.attacks.base import Attack
from intriguing.attacks.lbfgs import LBFGSAttack
from intriguing.storage import atomic_output


@dataclass
class MinimumDistortion:
    """Summary of :func:`minimum_distortion` over a data set.

    Attributes:
        mean_distortion: mean of the per-example minimum distortion over the examples the
            attack succeeded on (all of them when ``success_rate`` is 1); examples already
            misclassified (untargeted) or already classified as the target count with 0. The
            distortion is the paper's: ``sqrt(sum((adv - x)^2) / n)``, the L2 norm of the
            perturbation divided by the square root of the number of values ``n`` (784 for
            MNIST), in pixel units of ``[0, 1]`` images (:func:`attacks.distortion`).
        success_rate: fraction of examples for which an adversarial was found.
        adversarial_error: error rate (prediction differs from the label) on the returned
            adversarial set; failures are scored on their unperturbed input.
        clean_error: error rate on the clean examples.
        examples: number of examples attacked.
        already_adversarial: how many were adversarial before any perturbation.
        gradient_evaluations: total over examples (see :class:`attacks.AttackResult`).
        seconds: wall time of the attacks.
        saved: where the adversarial set was saved, if it was.
    """

    mean_distortion: float
    success_rate: float
    adversarial_error: float
    clean_error: float
    examples: int
    already_adversarial: int
    gradient_evaluations: int
    seconds: float
    saved: str | None = None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def minimum_distortion(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    *,
    attack: Attack | None = None,
    target: Callable[[Tensor], Tensor] | None = None,
    save: str | Path | None = None,
    progress: bool = True,
    description: str = "attack",
) -> MinimumDistortion:
    """The average minimum distortion at which every example of ``loader`` is misclassified.

    Args:
        model: the classifier (the attack's model when ``attack`` is given; used for the
            clean error and the device batches are moved to).
        loader: batches ``(x, y, ...)``, e.g. a ``DataLoader``.
        attack: the attack to minimise distortion with; default ``LBFGSAttack(model)`` with
            its benchmarked settings. Budget attacks (FGSM, PGD, noise) are bisected per
            example over their budget (:meth:`attacks.budget.BudgetAttack.minimal`).
        target: a function from labels to target labels for a targeted study (e.g.
            ``lambda y: (y + 1) % 10``); ``None``: untargeted.
        save: write the adversarial set there with ``torch.save`` (tensors and primitives
            only, loadable with ``weights_only=True``): ``adv``, ``x``, ``y``, ``distortion``,
            ``success``, ``target`` (or None), ``origin`` (the clean activation, for a
            hidden-layer attack; else None), ``layer`` and ``attack`` (its name).
        progress: show a tqdm progress bar.

    Already-misclassified examples count with distortion 0, as the paper's column asks for
    the distortion at which *every* example is misclassified.
    """
    attack = attack if attack is not None else LBFGSAttack(model)
    device = _device_of(model)
    keep = save is not None
    parts: dict[str, list[Tensor]] = {
        k: [] for k in ("adv", "x", "y", "distortion", "success", "target", "origin")
    }
    distortions: list[Tensor] = []
    successes: list[Tensor] = []
    wrong_after = 0
    wrong_before = 0
    already = 0
    evaluations = 0
    examples = 0
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(loader, total=total, desc=description, disable=not progress, unit="batch")
    started = time.perf_counter()
    for batch in bar:
        x, y = batch[0].to(device), batch[1].to(device)
        goal = None if target is None else target(y).to(device)
        result = attack.minimal(x, y, goal)
        if len(result):
            # The returned set: adversarials, and the unchanged inputs where the attack failed.
            wrong_after += int((result.logits.argmax(dim=1) != y).sum())
            wrong_before += int((result.clean_logits.argmax(dim=1) != y).sum())
        already += int((result.success & (result.distortion == 0)).sum())
        evaluations += result.total_gradient_evaluations
        examples += len(x)
        distortions.append(result.distortion.detach().cpu())
        successes.append(result.success.detach().cpu())
        if keep:
            parts["adv"].append(result.adv.detach().cpu())
            parts["x"].append(x.detach().cpu())
            parts["y"].append(y.detach().cpu())
            parts["distortion"].append(result.distortion.detach().cpu())
            parts["success"].append(result.success.detach().cpu())
            if goal is not None:
                parts["target"].append(goal.detach().cpu())
            if result.layer is not None:
                parts["origin"].append(result.origin.detach().cpu())
        done = torch.cat(successes)
        shown = torch.cat(distortions)[done]
        bar.set_postfix(
            distortion=f"{float(shown.mean()) if len(shown) else math.nan:.4f}",
            success=f"{float(done.float().mean()):.3f}",
        )
    seconds = time.perf_counter() - started
    success = torch.cat(successes) if successes else torch.zeros(0, dtype=torch.bool)
    values = torch.cat(distortions) if distortions else torch.zeros(0)
    saved = None
    if keep:
        path = Path(save)  # type: ignore[arg-type]
        content: dict[str, object] = {
            key: (torch.cat(parts[key]) if parts[key] else None) for key in parts
        }
        content["layer"] = attack.layer
        content["attack"] = attack.name
        with atomic_output(path) as stream:  # an interrupted save keeps an earlier file whole
            torch.save(content, stream)
        saved = str(path)
    count = max(examples, 1)
    return MinimumDistortion(
        mean_distortion=float(values[success].mean()) if bool(success.any()) else math.nan,
        success_rate=float(success.float().mean()) if examples else 0.0,
        adversarial_error=wrong_after / count,
        clean_error=wrong_before / count,
        examples=examples,
        already_adversarial=already,
        gradient_evaluations=evaluations,
        seconds=seconds,
        saved=saved,
    )
