"""``intriguing spectral --checkpoint CKPT``: each layer's upper Lipschitz bound (Table 5)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from intriguing.analysis.spectral import SpectralBounds, network_bounds
from intriguing.cli.parsers import add_wandb_arguments
from intriguing.cli.tracking import analysis_run
from intriguing.trainers import load_classifier


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spectral",
        help="per-layer upper bounds on the Lipschitz constant of a trained model (Table 5)",
        description=(
            "Print, in the layout of Szegedy et al. (2013)'s Table 5, each layer's upper bound on "
            "its Lipschitz constant (L2 operator norm) at the input shape it sees, and their "
            "product: exact norms for fully connected and convolutional layers (the paper's "
            "Fourier-domain bound beside the latter), sqrt of the window overlap for max pooling, "
            "1 for ReLU, 1/4 for the sigmoid."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="an ImageClassifier checkpoint")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the tables here")
    parser.add_argument("--json", metavar="OUT.json", help="also write every layer's record here")
    add_wandb_arguments(parser)
    parser.add_argument(
        "--dense-limit",
        type=int,
        default=1024,
        help="exact Gram eigenvalues when an operator's smaller side is at most this long, "
        "else Lanczos iteration (default 1024)",
    )
    parser.add_argument(
        "--tol", type=float, default=1e-7, help="Lanczos relative tolerance (default 1e-7)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model = load_classifier(args.checkpoint)
    bounds = network_bounds(model.network, dense_limit=args.dense_limit, tol=args.tol)
    shape = "x".join(str(d) for d in model.network.input_shape)
    family = model.model_config.get("family", "?")
    text = (
        f"Upper Lipschitz bounds (L2) of {Path(args.checkpoint).name} "
        f"({family} network, inputs {shape}):\n\n{bounds.to_markdown()}"
    )
    print(text, end="", flush=True)
    if args.markdown:
        _write(Path(args.markdown), text)
    if args.json:
        record = {"checkpoint": str(args.checkpoint), **bounds.summary(), "layers": bounds.rows()}
        _write(Path(args.json), json.dumps(record, indent=2) + "\n")
    config = {"checkpoint": str(args.checkpoint), "family": family, "tol": args.tol}
    with analysis_run(args, job_type="spectral", config=config) as run:
        if run is not None:
            _log(run, bounds)
    return 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")


def _log(run: Any, bounds: SpectralBounds) -> None:
    """The per-layer table and the per-stage and product values, to a W&B run."""
    import wandb

    rows = bounds.rows()
    columns = list(rows[0])
    table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
    run.log({"spectral/layers": table})
    run.summary.update(bounds.summary())
