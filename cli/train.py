"""``intriguing train [experiment=NAME] [key=value ...]``: train, test, print a summary.

The composed configuration is validated first, also under ``--print-config``
(:func:`intriguing.pipelines.validate.validate_run_config`): what the run would refuse later
(a layer the model lacks, a bad mix ratio, data sizes out of range) is refused in one line
naming the key, before any folder is made or anything trains.
"""

from __future__ import annotations

import argparse

from lightning.pytorch.utilities import rank_zero_only

from intriguing.configs import compose
from intriguing.pipelines.validate import validate_run_config


def run(args: argparse.Namespace) -> int:
    config = compose(args.overrides)
    validate_run_config(config)
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
