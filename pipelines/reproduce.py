"""``intriguing reproduce`` as a library function: the study (:mod:`pipelines.study`), its
figures, its report (``report.md`` with figures, a self-contained ``report.html``,
``results.json``; :mod:`analysis.report`) and, when the study's runs log to W&B, the report
logged into their group.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from intriguing.analysis.report import Report, build_report, draw_figures, table_records
from intriguing.analysis.reproduction import StudyResults
from intriguing.pipelines.study import StudyPlan, run_study
from intriguing.pipelines.tracking import (
    AnalysisTracking,
    analysis_run,
    wandb_mode,
    wandb_project,
)


@dataclass
class Reproduction:
    """A finished reproduction: every figure (``results``), the report made of them, and the
    files written (``markdown``, ``html``, ``json``)."""

    results: StudyResults
    report: Report
    files: dict[str, Path]


def reproduce(
    plan: StudyPlan,
    *,
    out: Path,
    cache_dir: Path,
    device: torch.device,
    group: str,
    progress: bool = False,
    report: Callable[[str], None] = print,
    commands: Sequence[str] = (),
    budget_text: str = "",
) -> Reproduction:
    """Run the study of ``plan`` (:func:`pipelines.study.run_study`, which trains only what
    has no finished run), draw its figures below ``out/figures``, write the report into
    ``out`` (:func:`write_report`) and, when the runs log to W&B, log it into their W&B
    ``group`` (:func:`log_report`). ``report`` takes each line of progress."""
    results = run_study(
        plan,
        out=out,
        cache_dir=cache_dir,
        device=device,
        progress=progress,
        report=report,
        commands=commands,
        budget_text=budget_text,
    )
    step = time.perf_counter()
    results.figures.update(draw_figures(results, out / "figures"))
    results.steps["Figures"] = time.perf_counter() - step
    built = build_report(results)
    files = write_report(built, results, out)
    first = plan.table1[0].config.logger
    if str(first.kind) == "wandb" and wandb_mode(str(first.mode)) != "disabled":
        log_report(built, results, files, project=wandb_project(first.project), group=group)
    return Reproduction(results, built, files)


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
    config = {"budget": results.budget, "departures": results.departures}
    with analysis_run(
        AnalysisTracking(enabled=True, project=project, group=group),
        job_type="reproduce",
        config=config,
        name=f"report-{results.budget}",
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
