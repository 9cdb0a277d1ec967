"""``intriguing train [experiment=NAME] [key=value ...]``: train, test, print a summary.

The composed configuration is validated before anything is made or trains
(:func:`intriguing.pipelines.validate.validate_run_config`): by
:func:`~intriguing.pipelines.train.train` and
:func:`~intriguing.pipelines.train.train_with_baseline` themselves, and here under
``--print-config``. What the run would refuse later (a layer the model lacks, a bad mix ratio,
data sizes out of range) is refused in one line naming the key.
"""

from __future__ import annotations

import argparse

from lightning.pytorch.utilities import rank_zero_only

from intriguing.cli.formatting import format_comparison, format_summary
from intriguing.configs import compose, to_yaml
from intriguing.pipelines.train import log_comparison, train, train_with_baseline
from intriguing.pipelines.validate import validate_run_config


def run(args: argparse.Namespace) -> int:
    config = compose(args.overrides)
    if args.print_config:
        validate_run_config(config)
        print(to_yaml(config), end="")
        return 0
    if config.compare_baseline:
        comparison = train_with_baseline(config)  # validates config before the baseline
        _print(format_summary(comparison.run))
        _print(format_comparison(comparison.run, comparison.baseline, comparison.baseline_reused))
        log_comparison(config, comparison.run, comparison.baseline)  # the same table, to W&B
    else:
        _print(format_summary(train(config)))  # validates config before anything is made
    return 0


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)
