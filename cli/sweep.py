"""``intriguing sweep SWEEP.yaml [key=value ...]``: a W&B sweep file, run on this machine.

Argument handling and printing only: the sweep runs in :func:`intriguing.pipelines.sweep.run_sweep`
on W&B's engine (the optional extra ``sweep``). The same file runs on many machines with
``wandb sweep SWEEP.yaml`` and ``wandb agent``.
"""

from __future__ import annotations

import argparse

from intriguing.pipelines.sweep import SUMMARY_CSV, SUMMARY_MARKDOWN, run_sweep
from intriguing.pipelines.sweep_file import load_sweep


def run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep_file)
    result = run_sweep(
        sweep,
        list(args.overrides),
        seed=args.seed,
        dry_run=args.dry_run,
        max_runs=args.max_runs,
        say=_say,
    )
    if args.dry_run:
        return 0
    _say("\n" + result.markdown)
    if sweep.metric and not any(sweep.metric in p.metrics for p in result.points):
        _say(f"note: no run logged the sweep's metric {sweep.metric}")
    histories = [p.history for p in result.points if p.history]
    if sweep.early_terminate and not any(sweep.metric in row for h in histories for row in h):
        _say(
            f"note: early_terminate: no run logged {sweep.metric} after a validation epoch, "
            "so hyperband had nothing to compare (use a val/ metric)"
        )
    _say(f"summary: {result.folder / SUMMARY_MARKDOWN}, {result.folder / SUMMARY_CSV}")
    if result.wandb:
        _say(f"W&B table: {result.wandb}")
    return 1 if result.failed else 0


def _say(line: str) -> None:
    print(line, flush=True)
