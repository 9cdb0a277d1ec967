"""``intriguing reproduce --budget quick|full``: the paper's MNIST study and its report.

Trains the models of Szegedy et al. (2013) that have no finished run yet (Table 1's, the
P1/P2 models of Table 3, FC100-100-10 with each backfeed variant and without over seeds,
the conv net of the unit analysis), measures Tables 1 to 5, the adversarial-training
comparison and units versus random directions (:mod:`cli.study`), and writes a report -
``report.md`` with its figures and a self-contained ``report.html`` - where every measured
figure stands beside the paper's (:mod:`analysis.report`). Training runs are W&B runs in one
group (``--wandb-group``, else a ``logger.group=`` override, else ``reproduce-BUDGET``), each
with its role as job type (:func:`cli.study.plan_study`); the report is logged to W&B too,
into the same group, when the runs log there. Started again after an interruption, it reuses
every finished run and cached adversarial set (and logs into the same group).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from intriguing.analysis.report import Report, build_report, draw_figures, table_records
from intriguing.analysis.reproduction import StudyResults
from intriguing.cli.arguments import torch_device
from intriguing.cli.parsers import DEFAULT_CACHE
from intriguing.cli.study import plan_study, run_study
from intriguing.configs.budget import budget_path, load_budget
from intriguing.pipelines.tracking import analysis_run, wandb_mode, wandb_project


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
    results = run_study(
        plan,
        out=out,
        cache_dir=Path(args.cache_dir),
        device=device,
        progress=not args.no_progress,
        report=lambda line: print(line, flush=True),
        commands=[command_line(args)],
        budget_text=f"# {budget_path(args.budget)}\n" + budget_path(args.budget).read_text(),
    )
    step = time.perf_counter()
    results.figures.update(draw_figures(results, out / "figures"))
    results.steps["Figures"] = time.perf_counter() - step
    report = build_report(results)
    files = write_report(report, results, out)
    print(report.to_markdown(out).split("\n## How this was run")[0].split("## At a glance")[-1])
    print("wrote " + ", ".join(str(path) for path in files.values()))
    first = plan.table1[0].config.logger
    if str(first.kind) == "wandb" and wandb_mode(str(first.mode)) != "disabled":
        log_report(report, results, files, project=wandb_project(first.project), group=group)
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


def write_report(report: Report, results: StudyResults, out: Path) -> dict[str, Path]:
    """``report.md`` (figures linked), ``report.html`` (self-contained), ``results.json``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "json": out / "results.json",
    }
    files["markdown"].write_text(report.to_markdown(out))
    files["html"].write_text(report.to_html())
    files["json"].write_text(json.dumps(results_record(results), indent=1, default=_plain) + "\n")
    return files


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def results_record(results: StudyResults) -> dict[str, Any]:
    """Every figure of the study as plain data."""
    return {
        "budget": results.budget,
        "departures": results.departures,
        "commands": results.commands,
        "machine": results.machine,
        "steps_seconds": results.steps,
        "seconds": results.seconds,
        "table1": [m.record() for m in results.table1],
        "table2": results.table2.matrix.records(),
        "table3": {
            "models": [m.record() for m in results.table3],
            "splits": results.table4.by_split.records() if results.table4.by_split else None,
        },
        "table4": results.table4.matrix.records(),
        "adversarial_training": [
            {
                "experiment": comparison.experiment,
                "description": comparison.description,
                "settings": comparison.settings,
                "attack": comparison.attack,
                "examples": comparison.examples,
                "runs": comparison.records(),
            }
            for comparison in results.adversarial_training
        ],
        "units": results.units.summary(),
        "spectral": {m.name: m.bounds.summary() for m in results.spectral},
        "runs": [vars(run) for run in results.runs],
        "figures": {name: str(path) for name, path in results.figures.items()},
    }


def log_report(
    report: Report, results: StudyResults, files: dict[str, Path], *, project: str, group: str
) -> None:
    """One W&B run in the study's group: the HTML page, every table, the headline figures."""
    args = SimpleNamespace(wandb=True, wandb_project=project, wandb_group=group)
    config = {"budget": results.budget, "departures": results.departures}
    with analysis_run(
        args, job_type="reproduce", config=config, name=f"report-{results.budget}"
    ) as run:
        if run is None:
            return
        import wandb

        logged: dict[str, Any] = {"report": wandb.Html(files["html"].read_text(), inject=False)}
        for name, table in report.tables().items():
            columns, rows = table_records(table)
            logged[f"tables/{name}"] = wandb.Table(columns=columns, data=rows)
        run.log(logged)
        run.summary.update(
            {
                "seconds": results.seconds,
                **{f"table1/{m.name}/test_error": m.test_error for m in results.table1},
                **{f"table1/{m.name}/min_distortion": m.distortion for m in results.table1},
                **{
                    f"adversarial_training/{name}/test_error": comparison.spread(
                        arm, "test_error"
                    ).mean
                    for comparison in results.adversarial_training
                    for arm, name in (
                        ("backfeed", comparison.experiment),
                        ("baseline", "without-backfeeding"),
                    )
                },
            }
        )
        artifact = wandb.Artifact(f"reproduce-{results.budget}", type="report")
        for path in files.values():
            artifact.add_file(str(path))
        run.log_artifact(artifact)
