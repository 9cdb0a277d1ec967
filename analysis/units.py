"""Units versus random directions of a layer (Szegedy et al. 2013, Section 3).

The paper compares the held-out images that maximise a single unit's activation,
``argmax_x <phi(x), e_i>`` for a natural-basis vector ``e_i``, with those that maximise the
activation along a random direction, ``argmax_x <phi(x), v>``, and finds both sets equally
coherent: the semantic information lies in the space of activations, not in its units.

Beyond pictures this module puts a number on the claim: the **label purity** of the top-k
images of a direction (the fraction of them that share their most common label), averaged
over many units and many random directions, with standard deviations, bootstrap confidence
intervals of the means, and permutation tests. The purity of ``k`` images drawn at random
from the same set is the chance level both are compared with.

Conventions:

- A layer's activation is flattened: for a convolutional layer a unit is one channel at one
  position, ``(c, y, x)``.
- Units are drawn uniformly without replacement among the units whose top-k images are
  decided by their activations: a unit whose k-th highest activation over the image set
  equals its lowest (for example a ReLU unit that is zero on nearly every image) has no
  maximising images, only ties; these are skipped and counted.
- Random directions are ``v = g / ||g||`` with ``g ~ N(0, I)`` in the layer's flattened space:
  uniform on the unit sphere, so no unit or sign is preferred.
- Every random draw (units, directions, baseline sets, bootstrap and permutation resamples)
  comes from one ``torch.Generator`` seeded with ``seed``: the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from intriguing.analysis.plots import image_grid
from intriguing.trainers.stages import StagedNetwork


def random_directions(dim: int, count: int, *, generator: torch.Generator) -> Tensor:
    """``count`` unit vectors of ``R^dim`` uniform on the sphere (normalised Gaussians)."""
    if dim < 1 or count < 0:
        raise ValueError(f"random_directions: dim must be >= 1 and count >= 0, got {dim}, {count}")
    vectors = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return vectors / vectors.norm(dim=1, keepdim=True)


def label_purity(labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Per row of ``labels`` (``D x k`` integers), the fraction sharing the most common label."""
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise ValueError(f"labels must have shape (directions, k) with k >= 1, got {labels.shape}")
    if labels.dtype.is_floating_point or bool((labels < 0).any()):
        raise ValueError("labels must be non-negative integers")
    counts = F.one_hot(labels.long(), num_classes or int(labels.max()) + 1).sum(dim=1)
    return counts.max(dim=1).values.double() / labels.shape[1]


def bootstrap_ci(
    values: Tensor, *, resamples: int, level: float, generator: torch.Generator
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``."""
    values = values.double().flatten()
    if len(values) == 0:
        return math.nan, math.nan
    draws = torch.randint(len(values), (resamples, len(values)), generator=generator)
    means = values[draws].mean(dim=1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)


def permutation_test(
    first: Tensor, second: Tensor, *, permutations: int, generator: torch.Generator
) -> float:
    """Two-sided p-value of the difference of means, by random relabelling of the pooled
    samples: ``(1 + #{|diff*| >= |diff|}) / (1 + permutations)``."""
    first, second = first.double().flatten(), second.double().flatten()
    if len(first) == 0 or len(second) == 0:
        return math.nan
    pooled = torch.cat([first, second])
    observed = abs(float(first.mean() - second.mean()))
    order = torch.argsort(torch.rand(permutations, len(pooled), generator=generator), dim=1)
    shuffled = pooled[order]
    diffs = (shuffled[:, : len(first)].mean(dim=1) - shuffled[:, len(first) :].mean(dim=1)).abs()
    extreme = int((diffs >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + permutations)


@dataclass(frozen=True)
class PurityStats:
    """Mean, standard deviation (n - 1) and bootstrap CI of the mean of some purities."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    count: int

    @classmethod
    def of(
        cls, values: Tensor, *, resamples: int, level: float, generator: torch.Generator
    ) -> PurityStats:
        values = values.double()
        std = float(values.std()) if len(values) > 1 else 0.0
        low, high = bootstrap_ci(values, resamples=resamples, level=level, generator=generator)
        return cls(float(values.mean()), std, low, high, len(values))


@dataclass(frozen=True)
class UnitAnalysis:
    """The top-k images of units and of random directions of one layer, and their purities.

    Attributes:
        layer: the layer analysed; ``layer_shape`` its activation's shape.
        top_k, seed, num_images, num_classes: the setting.
        units: flat indices of the units analysed (into the flattened activation).
        unit_top: ``(len(units), top_k)`` indices into the image set, best first.
        unit_purity: label purity of each unit's top-k images.
        random_vectors: ``(directions, dim)`` random unit vectors.
        random_top, random_purity: the same for the random directions.
        baseline_purity: purity of ``top_k`` images drawn at random, once per direction.
        skipped_units: units with no maximising images (ties at their minimum).
        level: confidence level of the intervals.
        stats: ``unit``, ``random`` and ``baseline`` :class:`PurityStats`.
        p_values: permutation tests of equal means: ``unit_vs_random`` (the paper's claim is
            that there is no difference), ``unit_vs_baseline``, ``random_vs_baseline``.
    """

    layer: str
    layer_shape: tuple[int, ...]
    top_k: int
    seed: int
    num_images: int
    num_classes: int
    units: Tensor
    unit_top: Tensor
    unit_purity: Tensor
    random_vectors: Tensor
    random_top: Tensor
    random_purity: Tensor
    baseline_purity: Tensor
    skipped_units: int
    level: float
    stats: dict[str, PurityStats]
    p_values: dict[str, float]

    def unit_name(self, flat_index: int) -> str:
        """``unit 57`` for a flat layer, ``unit c3 y5 x7`` for a (C, H, W) one."""
        if len(self.layer_shape) == 1:
            return f"unit {flat_index}"
        coordinates, rest = [], flat_index
        for size in reversed(self.layer_shape):
            coordinates.append(rest % size)
            rest //= size
        coordinates.reverse()
        names = "cyx" if len(self.layer_shape) == 3 else "abcdefgh"
        return "unit " + " ".join(f"{n}{c}" for n, c in zip(names, coordinates, strict=False))

    def summary(self, prefix: str = "units/") -> dict[str, float]:
        """Flat numbers for W&B summaries and JSON."""
        values: dict[str, float] = {}
        for kind, stats in self.stats.items():
            values[f"{prefix}{kind}_purity_mean"] = stats.mean
            values[f"{prefix}{kind}_purity_std"] = stats.std
            values[f"{prefix}{kind}_purity_ci_low"] = stats.ci_low
            values[f"{prefix}{kind}_purity_ci_high"] = stats.ci_high
            values[f"{prefix}{kind}_count"] = stats.count
        for name, p in self.p_values.items():
            values[f"{prefix}p_{name}"] = p
        values[f"{prefix}skipped_units"] = self.skipped_units
        values[f"{prefix}top_k"] = self.top_k
        values[f"{prefix}num_images"] = self.num_images
        return values

    def to_markdown(self) -> str:
        """The purity table, with chance level, and the permutation tests."""
        percent = round(100 * self.level)
        lines = [
            f"Label purity of the top-{self.top_k} images of layer `{self.layer}` "
            f"({self.num_images} images, seed {self.seed}):",
            "",
            f"| Directions | Count | Mean purity | Std | {percent}% CI of the mean |",
            "|---|---|---|---|---|",
        ]
        titles = {
            "unit": "Units (natural basis)",
            "random": "Random directions",
            "baseline": f"{self.top_k} random images (chance)",
        }
        for kind, title in titles.items():
            s = self.stats[kind]
            lines.append(
                f"| {title} | {s.count} | {s.mean:.3f} | {s.std:.3f} "
                f"| [{s.ci_low:.3f}, {s.ci_high:.3f}] |"
            )
        lines += [
            "",
            "Permutation tests of equal means (two-sided p): "
            + ", ".join(f"{name.replace('_', ' ')} {p:.3g}" for name, p in self.p_values.items())
            + f". Units skipped (no maximising images): {self.skipped_units}.",
        ]
        return "\n".join(lines) + "\n"


def _checked(
    network: StagedNetwork, layer: str, images: Tensor, labels: Tensor, top_k: int, count: int
) -> None:
    network.check_layer(layer)
    if images.shape[1:] != network.input_shape:
        raise ValueError(
            f"images have shape {tuple(images.shape[1:])} per example, the network takes "
            f"{network.input_shape}"
        )
    if labels.shape != (len(images),) or labels.dtype.is_floating_point:
        raise ValueError(
            f"labels must be {len(images)} integers, got shape {tuple(labels.shape)} "
            f"of {labels.dtype}"
        )
    if not 1 <= top_k <= len(images):
        raise ValueError(f"top_k={top_k}: must be between 1 and the {len(images)} images")
    if count < 1:
        raise ValueError(f"directions={count}: must be at least 1")


@torch.no_grad()
def analyse_units(
    network: StagedNetwork,
    layer: str,
    images: Tensor,
    labels: Tensor,
    *,
    directions: int = 100,
    top_k: int = 8,
    seed: int = 0,
    batch_size: int = 500,
    num_classes: int | None = None,
    resamples: int = 2000,
    permutations: int = 10000,
    level: float = 0.95,
) -> UnitAnalysis:
    """Units versus random directions of ``layer`` on a held-out image set.

    ``directions`` units and as many random directions are compared; activations are
    computed with ``network.activations`` in batches of ``batch_size`` on the network's device.
    """
    _checked(network, layer, images, labels, top_k, directions)
    generator = torch.Generator().manual_seed(seed)
    layer_shape = tuple(network.layer_shape(layer))
    dim = math.prod(layer_shape)
    num_classes = num_classes or max(network.num_classes, int(labels.max()) + 1)
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    vectors = random_directions(dim, directions, generator=generator)
    vectors_on_device = vectors.to(device)

    was_training = network.training
    network.eval()
    try:
        best_values = torch.empty(0, dim, dtype=torch.float64, device=device)
        best_index = torch.empty(0, dim, dtype=torch.long, device=device)
        lowest = torch.full((dim,), math.inf, dtype=torch.float64, device=device)
        random_scores = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            h = network.activations(batch, [layer])[layer].flatten(1).double()
            lowest = torch.minimum(lowest, h.min(dim=0).values)
            index = torch.arange(start, start + len(h), device=device).unsqueeze(1).expand_as(h)
            values = torch.cat([best_values, h])
            positions = torch.cat([best_index, index])
            kept = min(top_k, len(values))
            best_values, order = values.topk(kept, dim=0, sorted=True)
            best_index = positions.gather(0, order)
            random_scores.append(h @ vectors_on_device.T)
    finally:
        network.train(was_training)

    alive = (best_values[-1] > lowest).nonzero().flatten().cpu()
    chosen = alive[torch.randperm(len(alive), generator=generator)[:directions]]
    unit_top = best_index[:, chosen.to(device)].T.cpu()
    scores = torch.cat(random_scores).cpu()
    random_top = scores.topk(top_k, dim=0, sorted=True).indices.T
    baseline_top = torch.stack(
        [torch.randperm(len(images), generator=generator)[:top_k] for _ in range(directions)]
    )
    labels = labels.cpu()
    purities = {
        "unit": label_purity(labels[unit_top], num_classes)
        if len(chosen)
        else torch.empty(0, dtype=torch.float64),
        "random": label_purity(labels[random_top], num_classes),
        "baseline": label_purity(labels[baseline_top], num_classes),
    }
    stats = {
        kind: PurityStats.of(values, resamples=resamples, level=level, generator=generator)
        for kind, values in purities.items()
    }
    p_values = {
        f"{a}_vs_{b}": permutation_test(
            purities[a], purities[b], permutations=permutations, generator=generator
        )
        for a, b in (("unit", "random"), ("unit", "baseline"), ("random", "baseline"))
    }
    return UnitAnalysis(
        layer=layer,
        layer_shape=layer_shape,
        top_k=top_k,
        seed=seed,
        num_images=len(images),
        num_classes=num_classes,
        units=chosen,
        unit_top=unit_top,
        unit_purity=purities["unit"],
        random_vectors=vectors,
        random_top=random_top,
        random_purity=purities["random"],
        baseline_purity=purities["baseline"],
        skipped_units=dim - len(alive),
        level=level,
        stats=stats,
        p_values=p_values,
    )


def direction_grid(
    analysis: UnitAnalysis,
    images: Tensor,
    labels: Tensor,
    kind: str,
    *,
    rows: int = 8,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Top-k images of the first ``rows`` units (``kind="unit"``) or random directions
    (``kind="random"``): one row per direction, each image captioned with its label (red
    where it differs from the row's most common label)."""
    if kind == "unit":
        top, purity = analysis.unit_top, analysis.unit_purity
        names = [analysis.unit_name(int(u)) for u in analysis.units]
        title = f"Top {analysis.top_k} images of single units of {analysis.layer}"
    elif kind == "random":
        top, purity = analysis.random_top, analysis.random_purity
        names = [f"random {i + 1}" for i in range(len(top))]
        title = f"Top {analysis.top_k} images of random directions of {analysis.layer}"
    else:
        raise ValueError(f"kind {kind!r}: expected 'unit' or 'random'")
    rows = min(rows, len(top))
    if rows == 0:
        raise ValueError(f"no {kind} directions to show")
    top = top[:rows]
    row_labels = labels.cpu()[top]
    majority = row_labels.mode(dim=1).values
    captions = [
        [class_names[int(t)] if class_names else str(int(t)) for t in row] for row in row_labels
    ]
    colors = [
        ["black" if int(t) == int(m) else "red" for t in row]
        for row, m in zip(row_labels, majority, strict=True)
    ]
    row_titles = [f"{names[r]}\npurity {float(purity[r]):.2f}" for r in range(rows)]
    return image_grid(
        images.cpu()[top],
        captions=captions,
        caption_colors=colors,
        row_titles=row_titles,
        title=title,
    )
