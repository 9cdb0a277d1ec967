"""``intriguing evaluate``: robust error at fixed budgets, per attack and their union, with
the gradient-masking checks (the parser is in :mod:`intriguing.cli.parsers`; the computation
is :mod:`intriguing.pipelines.evaluate_models`).

::

    intriguing evaluate --checkpoint A.ckpt --checkpoint B.ckpt --attack autoattack \\
        --norm linf --epsilon 0.1 0.3 --subset 1000 --out outputs/eval
    intriguing evaluate --checkpoint run.ckpt --target my_pkg.models:Net --attack apgd-ce pgd
    intriguing evaluate --model nets.py:build --state-dict w.pt --data cifar10 --epsilon 0.03

Writes ``DIR/results.json`` (per model and budget: ``clean_error``, ``robust_error`` per attack
and ``union``, ``examples``, ``seconds``; the masking checks), ``DIR/results.md`` and
``DIR/robust_error.png``; logs the same to W&B with ``--wandb``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from intriguing.cli.arguments import settings_from, torch_device, wandb_tracking
from intriguing.pipelines.evaluate_models import (
    EvaluateModelsSettings,
    evaluate_models,
    log_results,
    write_results,
)
from intriguing.pipelines.runs import new_run_dir


def settings(args: argparse.Namespace) -> EvaluateModelsSettings:
    """The pipeline's settings from the options (``--device`` resolved)."""
    return settings_from(
        EvaluateModelsSettings,
        args,
        options={"epsilons": "epsilon", "attacks": "attack", "dataset": "data"},
        checkpoints=list(args.checkpoint or []),
        device=torch_device(args.device),
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    results = evaluate_models(settings(args), report=lambda line: print(line, flush=True))
    out = Path(args.out) if args.out else new_run_dir("outputs", "evaluate")
    files = write_results(results, out)
    print(results.markdown(), end="")  # the results and every model's gradient-masking checks
    print(f"wrote {files.json}, {files.markdown}, {files.plot}")
    log_results(results, files.plot, wandb_tracking(args))
    return 0
