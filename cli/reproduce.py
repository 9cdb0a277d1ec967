"""``intriguing reproduce --budget quick|full``: the paper's MNIST study and its report.

Trains the models of Szegedy et al. (2013) that have no finished run yet (Table 1's, the
P1/P2 models of Table 3, FC100-100-10 with each backfeed variant and without over seeds,
the conv net of the unit analysis), measures Tables 1 to 5, the adversarial-training
comparison and units versus random directions (:mod:`pipelines.study`), and writes a report -
``report.md`` with its figures and a self-contained ``report.html`` - where every measured
figure stands beside the paper's (:mod:`analysis.report`). Training runs are W&B runs in one
group (``--wandb-group``, else a ``logger.group=`` override, else ``reproduce-BUDGET``), each
with its role as job type (:func:`pipelines.study.plan_study`); the report is logged to W&B too,
into the same group, when the runs log there. Started again after an interruption, it reuses
every finished run and cached adversarial set (and logs into the same group).
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

from intriguing.cli.arguments import torch_device
from intriguing.cli.parsers import DEFAULT_CACHE
from intriguing.configs.budget import budget_path, load_budget
from intriguing.pipelines.reproduce import reproduce
from intriguing.pipelines.study import plan_study


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would type it again (with OMP_NUM_THREADS when set)."""
    words = ["intriguing", "reproduce", "--budget", args.budget]
    for option in ("out", "wandb_group", "device"):
        value = getattr(args, option)
        if value is not None and not (option == "device" and value == "auto"):
            words += [f"--{option.replace('_', '-')}", str(value)]
    if args.cache_dir != DEFAULT_CACHE:
        words += ["--cache-dir", args.cache_dir]
    if args.no_progress:
        words.append("--no-progress")
    words += args.overrides
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(words)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    budget = load_budget(args.budget)
    out = Path(args.out or Path("outputs") / "reproduce" / budget.name)
    group = study_group(args, budget.name)
    overrides = [*args.overrides]
    if args.no_progress:
        overrides.append("trainer.enable_progress_bar=false")
    plan = plan_study(budget, overrides, group=group)
    device = torch_device(args.device)
    runs = plan.runs()
    print(
        f"reproduce: budget {budget.name} ({budget_path(args.budget)}), {len(runs)} training "
        f"runs, report in {out}, W&B group {group}",
        flush=True,
    )
    reproduction = reproduce(
        plan,
        out=out,
        cache_dir=Path(args.cache_dir),
        device=device,
        group=group,
        progress=not args.no_progress,
        report=lambda line: print(line, flush=True),
        commands=[command_line(args)],
        budget_text=f"# {budget_path(args.budget)}\n" + budget_path(args.budget).read_text(),
    )
    markdown = reproduction.report.to_markdown(out)
    print(markdown.split("\n## How this was run")[0].split("## At a glance")[-1])
    print("wrote " + ", ".join(str(path) for path in reproduction.files.values()))
    print(f"wall time {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def study_group(args: argparse.Namespace, budget: str) -> str:
    """The W&B group of every run of one reproduction: ``--wandb-group``, else the last
    ``logger.group=NAME`` among the overrides (given by the user, it wins), else
    ``reproduce-BUDGET`` (the same for a reproduction started again, which reuses the runs)."""
    if args.wandb_group:
        return str(args.wandb_group)
    given = [word.split("=", 1)[1] for word in args.overrides if word.startswith("logger.group=")]
    return given[-1] if given and given[-1] else f"reproduce-{budget}"
