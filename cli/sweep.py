"""``intriguing sweep SWEEP.yaml [key=value ...]``: a W&B sweep file, run on this machine.

The file is the one ``wandb sweep SWEEP.yaml`` takes, so the same ablation runs here or on
many machines with ``wandb agent``. Each point is trained by the command line a W&B agent
would run for it (:mod:`cli.sweeps` builds it), plus three words of our own: the extra
``key=value`` words given here, ``logger.group=SWEEP_NAME`` (all runs of a sweep form one W&B
group) and ``run_dir=...`` (so that the sweep knows which folder holds the point's result).

Every point runs as its own process, not through ``run_experiment`` in this one:

- it is the agent's own command, so what runs here is what runs under ``wandb agent``;
- a point may use DDP (``trainer=ddp``): Lightning's launcher starts the other processes by
  re-running the current command line, which would be the whole sweep if points ran here;
- nothing leaks from one point to the next (W&B's global run, seeds and backend flags,
  CUDA memory, ``INTRIGUING_RUN_DIR``), and a point that crashes is recorded as failed while
  the sweep goes on. The price, a few seconds of imports per point, is small next to training.

Points whose configuration (its fingerprint) has a finished run below ``output_dir`` are
reused, so an interrupted sweep continues where it stopped. At the end a summary table
(clean and adversarial test error, mean minimum distortion, the sweep's metric, best first)
is printed, written as ``summary.md`` and ``summary.csv`` in ``OUTPUT_DIR/sweeps/NAME/`` and,
when the runs log to W&B, logged as a table to a run of the sweep's group.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from intriguing.analysis.tables import csv_table
from intriguing.cli.sweeps import (
    PointResult,
    Sweep,
    agent_words,
    expand_command,
    load_sweep,
    points,
    summary_table,
    to_markdown,
    train_overrides,
)
from intriguing.configs import ConfigError, compose
from intriguing.configs.compose import GROUPS

SUMMARY_MARKDOWN = "summary.md"
SUMMARY_CSV = "summary.csv"


@dataclass
class Point:
    """One point of the sweep: its values, the agent's command line, our own, its config."""

    index: int
    values: dict[str, Any]
    agent_argv: list[str]
    argv: list[str]
    config: DictConfig


def plan(sweep: Sweep, extra: list[str], *, seed: int) -> list[Point]:
    """Every point with its composed configuration: a bad key or value fails here, before
    anything runs, with a :class:`ConfigError` naming it."""
    for word in extra:
        key, sep, _ = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"{word!r}: expected key=value")
        if key.lstrip("-") in sweep.swept:
            raise ConfigError(f"{key}: swept by {sweep.path}; do not also set it here")
    program = sweep.raw.get("program")
    command_words = train_overrides(expand_command(sweep.command, {}, program=program))
    given = {w.partition("=")[0].lstrip("-") for w in [*command_words, *extra]}
    given |= {p.name for p in sweep.parameters}
    local = _recording_words(sweep, given) + extra
    base = compose(command_words + local)
    _check_parameter_keys(sweep, base)

    planned = []
    for index, values in enumerate(points(sweep, seed=seed), start=1):
        agent_argv = expand_command(sweep.command, values, program=program)
        # The W&B run's name: the sweep's and the point's number, so that a group reads well.
        named = [] if "logger.name" in given else [f"logger.name={sweep.name}-{index}"]
        argv = agent_argv + named + local
        try:
            config = compose(train_overrides(argv))
        except ConfigError as error:
            words = " ".join(agent_words({k: values[k] for k in sweep.swept}))
            raise ConfigError(f"{sweep.path}: point {index} ({words}): {error}") from None
        planned.append(Point(index, values, agent_argv, argv, config))
    return planned


def _recording_words(sweep: Sweep, given: set[str]) -> list[str]:
    """``logger.group=SWEEP_NAME`` (and the sweep's project and entity, which an agent
    imposes on its runs) for the keys the command, the sweep and the extra words leave unset."""
    settings = {
        "logger.group": sweep.name,
        "logger.project": sweep.project,
        "logger.entity": sweep.entity,
    }
    return [f"{key}={value}" for key, value in settings.items() if value and key not in given]


_ABSENT = object()


def _check_parameter_keys(sweep: Sweep, base: DictConfig) -> None:
    for parameter in sweep.parameters:
        name = parameter.name
        if "." not in name and name in (*GROUPS, "experiment"):
            continue  # a group selection: configs/GROUP/VALUE.yaml, checked per point
        if OmegaConf.select(base, name, default=_ABSENT) is _ABSENT:
            raise ConfigError(
                f"{sweep.path}: parameters.{name}: no such config key (see "
                "`intriguing train --print-config`)"
            )


def run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep_file)
    planned = plan(sweep, list(args.overrides), seed=args.seed)
    from intriguing.cli.experiment import RunSummary, find_finished_run, new_run_dir

    print(
        f"sweep {sweep.name}: {sweep.method} search, {len(planned)} points "
        f"over {', '.join(sweep.swept) or 'no varying parameter'}",
        flush=True,
    )
    results: list[PointResult] = []
    started = 0
    failed = False
    for point in planned:
        shown = {name: point.values[name] for name in sweep.swept}
        result = PointResult(point.index, shown, status="pending")
        finished = find_finished_run(point.config)
        if finished is not None:
            result.status, result.run_dir = "reused", finished.run_dir
            result.metrics = finished.metrics
            _say(point, len(planned), f"finished, reusing {finished.run_dir}")
        elif args.dry_run:
            _say(point, len(planned), f"to run: {shell_line(point.argv)}")
        elif args.max_runs is not None and started >= args.max_runs:
            _say(point, len(planned), "left for a later call (--max-runs)")
        else:
            started += 1
            run_dir = new_run_dir(point.config.output_dir, point.config.name)
            argv = [*point.argv, f"run_dir={run_dir}"]
            _say(point, len(planned), shell_line(argv))
            code = subprocess.run(argv, env=_environment(), check=False).returncode
            result.run_dir = str(run_dir)
            if code == 0:
                result.status, result.metrics = "ran", RunSummary.load(run_dir).metrics
            else:
                result.status, failed = f"failed (exit {code})", True
        results.append(result)
    if args.dry_run:
        return 0

    columns, rows = summary_table(sweep, results)
    markdown = to_markdown(sweep, columns, rows)
    folder = Path(planned[0].config.output_dir) / "sweeps" / sweep.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_MARKDOWN).write_text(markdown)
    (folder / SUMMARY_CSV).write_text(csv_table(columns, rows))
    print("\n" + markdown, flush=True)
    if sweep.metric and not any(sweep.metric in r.metrics for r in results):
        print(f"note: no run logged the sweep's metric {sweep.metric}", flush=True)
    logs = _log_table(sweep, planned[0].config, columns, rows, folder)
    print(f"summary: {folder / SUMMARY_MARKDOWN}, {folder / SUMMARY_CSV}", flush=True)
    if logs:
        print(f"W&B table: {logs}", flush=True)
    return 1 if failed else 0


def shell_line(argv: list[str]) -> str:
    """The command line as a shell would take it, quoted for reading: words with quotes of
    their own (list values: ``"backfeed.layers=['input']"``) go in double quotes."""
    words = []
    for word in argv:
        quoted = shlex.quote(word)
        if quoted != word and not set(word) & set('"$`\\!'):
            quoted = f'"{word}"'
        words.append(quoted)
    return " ".join(words)


def _say(point: Point, total: int, text: str) -> None:
    print(f"[{point.index}/{total}] {text}", flush=True)


def _environment() -> dict[str, str]:
    """This environment, with this installation's scripts first on PATH: the agent's
    ``/usr/bin/env intriguing`` (or ``python``) then runs the same installation as the sweep."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def _log_table(
    sweep: Sweep, config: DictConfig, columns: list[str], rows: list[list[Any]], folder: Path
) -> str | None:
    """The summary as a W&B table in a run of the sweep's group (when the runs use W&B)."""
    from intriguing.cli.tracking import wandb_mode, wandb_project

    if config.logger.kind != "wandb":
        return None
    mode = wandb_mode(str(config.logger.mode))
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=wandb_project(config.logger.project),
        entity=config.logger.entity,
        group=config.logger.group,
        name=f"{sweep.name}-summary",
        job_type="sweep-summary",
        dir=str(folder),
        mode=mode,
        config={"sweep": sweep.raw},
        reinit="finish_previous",
    )
    try:
        run.log({"sweep/summary": wandb.Table(columns=columns, data=rows)})
        best = rows[0] if rows and sweep.metric else None
        if best is not None and best[columns.index(sweep.metric)] is not None:
            run.summary.update(
                {f"best/{sweep.metric}": best[columns.index(sweep.metric)], "best/point": best[0]}
            )
        return str(run.url or Path(run.dir).parent)
    finally:
        run.finish()
