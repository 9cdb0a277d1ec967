"""``intriguing units --checkpoint CKPT --layer NAME``: units versus random directions.

Szegedy et al. (2013), Section 3: the held-out images that maximise single units of a layer
and those that maximise random directions of it, as labelled grids, with the label purity of
the top-k images as the number that tests the claim (see :mod:`analysis.units`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from intriguing.analysis.units import UnitAnalysis, analyse_units
from intriguing.cli.arguments import wandb_tracking
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.data import checkpoint_data, split_examples
from intriguing.pipelines.tracking import analysis_run
from intriguing.pipelines.units import save_outputs
from intriguing.trainers import load_classifier


def run(args: argparse.Namespace) -> int:
    module = build_datamodule(
        checkpoint_data(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir)
    )
    model = load_classifier(args.checkpoint, input_shape=module.input_shape)
    if args.layer not in model.network.layer_names:
        raise ConfigError(
            f"--layer {args.layer}: checkpoint {args.checkpoint} has no layer {args.layer!r}; "
            "its layers are "
            f"{', '.join(model.network.layer_names)}"
        )
    images, labels = split_examples(module, args.split, args.limit)
    analysis = analyse_units(
        model.network,
        args.layer,
        images,
        labels,
        directions=args.directions,
        top_k=args.top_k,
        seed=args.seed,
        batch_size=args.batch_size,
        num_classes=module.num_classes,
    )
    out = Path(args.out or Path("outputs") / "units" / f"{Path(args.checkpoint).stem}-{args.layer}")
    paths = save_outputs(analysis, images, labels, out, rows=args.rows, split=args.split)
    text = f"Checkpoint {args.checkpoint}, {module.name} {args.split} split.\n\n"
    text += analysis.to_markdown()
    (out / "units.md").write_text(text)
    print(text, end="")
    print("wrote " + ", ".join(str(p) for p in [*paths.values(), out / "units.md"]), flush=True)
    config = {
        "checkpoint": str(args.checkpoint),
        "layer": args.layer,
        "dataset": module.name,
        "split": args.split,
        "directions": args.directions,
        "top_k": args.top_k,
        "seed": args.seed,
    }
    with analysis_run(wandb_tracking(args), job_type="units", config=config) as run:
        if run is not None:
            _log(run, analysis, paths)
    return 0


def _log(run: Any, analysis: UnitAnalysis, paths: dict[str, Path]) -> None:
    """The grids and histogram as images, every purity as a table, the numbers as summary."""
    import wandb

    images = {
        f"units/{kind}_grid": wandb.Image(str(path))
        for kind, path in paths.items()
        if path.suffix == ".png"
    }
    purities = [
        [kind, i, float(value)]
        for kind, values in (
            ("unit", analysis.unit_purity),
            ("random", analysis.random_purity),
            ("baseline", analysis.baseline_purity),
        )
        for i, value in enumerate(values)
    ]
    table = wandb.Table(columns=["kind", "index", "purity"], data=purities)
    run.log({**images, "units/purity": table})
    run.summary.update(analysis.summary())
