"""``intriguing train [experiment=NAME] [key=value ...]``: train, test, print a summary."""

from __future__ import annotations

import argparse

from lightning.pytorch.utilities import rank_zero_only

from intriguing.configs import compose


def run(args: argparse.Namespace) -> int:
    config = compose(args.overrides)
    if args.print_config:
        from intriguing.configs import to_yaml

        print(to_yaml(config), end="")
        return 0
    from intriguing.cli.experiment import (
        format_comparison,
        format_summary,
        log_comparison,
        run_experiment,
        run_with_baseline,
    )

    if config.compare_baseline:
        summary, baseline, reused = run_with_baseline(config)
        _print(format_summary(summary))
        _print(format_comparison(summary, baseline, reused))
        log_comparison(config, summary, baseline)  # the same table to W&B, in the run's group
    else:
        _print(format_summary(run_experiment(config)))
    return 0


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)
