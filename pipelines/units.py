"""Units versus random directions written to disk: the grids, the purity histogram and the
numbers of an :class:`~intriguing.analysis.units.UnitAnalysis` (what ``intriguing units``
and the study's unit step write)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from intriguing.analysis.plots import histograms, save_figure
from intriguing.analysis.units import UnitAnalysis, direction_grid


def save_outputs(
    analysis: UnitAnalysis, images: Tensor, labels: Tensor, out: Path, *, rows: int, split: str
) -> dict[str, Path]:
    """Grids of units and random directions, the purity histogram, and ``units.json``."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for kind in ("unit", "random"):
        if kind == "unit" and len(analysis.units) == 0:
            continue
        figure = direction_grid(analysis, images, labels, kind, rows=rows)
        paths[kind] = save_figure(figure, out / f"{kind}_directions.png")
    k = analysis.top_k
    edges = [(j - 0.5) / k for j in range(1, k + 2)]
    figure = histograms(
        {
            "units": analysis.unit_purity,
            "random directions": analysis.random_purity,
            f"{k} random images": analysis.baseline_purity,
        },
        bins=edges,
        xlabel=f"label purity of the top {k} images",
        title=f"Layer {analysis.layer}, {analysis.num_images} {split} images",
    )
    paths["purity"] = save_figure(figure, out / "purity.png")
    record = {
        "layer": analysis.layer,
        "layer_shape": list(analysis.layer_shape),
        "split": split,
        "seed": analysis.seed,
        "summary": analysis.summary(),
        "units": analysis.units.tolist(),
        "unit_purity": analysis.unit_purity.tolist(),
        "unit_top": analysis.unit_top.tolist(),
        "random_purity": analysis.random_purity.tolist(),
        "random_top": analysis.random_top.tolist(),
        "baseline_purity": analysis.baseline_purity.tolist(),
    }
    paths["json"] = out / "units.json"
    paths["json"].write_text(json.dumps(record, indent=1) + "\n")
    return paths
