"""Epoch time with the backfeed callback against the same epoch without it (run by hand).

FC100-100-10 on MNIST, the ``backfeed-fc100`` preset: one training epoch (validation and
set-up excluded) clean, with FGSM and with L-BFGS generators at the preset's refresh rate,
and with L-BFGS refreshed 2x and 4x as often, side by side and alternating in one process
so that a busy machine slows every variant alike. Issue 4's targets: at most 2x the clean
epoch with FGSM, at most 4x with L-BFGS at the preset's rate.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/backfeed_overhead.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from timing import framework_epoch

from intriguing.configs import compose


def variants(every: int) -> dict[str, list[str]]:
    """Name -> overrides of the backfeed-fc100 preset."""
    return {
        "clean (no callback)": ["backfeed.enabled=false"],
        f"FGSM, refresh every {every} steps": ["backfeed.generator.name=fgsm"],
        f"L-BFGS, refresh every {every} steps (preset)": [],
        f"L-BFGS, refresh every {every // 2} steps": [
            f"backfeed.refresh_every_n_steps={every // 2}"
        ],
        f"L-BFGS, refresh every {every // 4} steps": [
            f"backfeed.refresh_every_n_steps={every // 4}"
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="config overrides for every variant")
    args = parser.parse_args()
    base = ["experiment=backfeed-fc100", "logger=none", "backfeed.val_subset=0", *args.overrides]
    every = compose(base).backfeed.refresh_every_n_steps
    runs = variants(every)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, overrides in runs.items():
                seconds[name].append(framework_epoch([*base, *overrides], tmp))
    clean = statistics.median(seconds["clean (no callback)"])
    print(f"{torch.get_num_threads()} threads, {args.repeats} repeats, medians:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<42} {median:7.2f} s  {median / clean:5.2f}x  {values}")


if __name__ == "__main__":
    main()
