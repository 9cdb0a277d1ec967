"""A W&B sweep run on this machine with W&B's engine: :func:`run_sweep`.

The points come from W&B's sweep engine (:mod:`intriguing.pipelines.sweep_file`), and each
is trained by the command line a ``wandb agent`` would run for it, plus three words of our
own: the caller's extra ``key=value`` words, ``logger.group=SWEEP_NAME`` (all runs of a sweep
form one W&B group) and ``run_dir=...`` (so that the sweep knows which folder holds the
point's result). ``early_terminate`` (hyperband) is honoured as a W&B controller does: while
a point trains, the engine's ``sweeps.stop_runs`` is asked, after each validation epoch the
run records (:class:`~intriguing.callbacks.history.MetricHistory`), whether to stop it, given
the histories of the sweep's earlier runs; a run it names is terminated, as an agent
terminates it. Bayes search asks the engine for each point given the results so far.

Every point runs as its own process (:func:`run_process`), not through
:func:`pipelines.train.train` in this one: it is the agent's own command, so what runs here
is what runs under ``wandb agent``; a point may use DDP (Lightning's launcher re-runs the
current command line, which would be the whole sweep); nothing leaks from one point to the
next (W&B's global run, seeds, CUDA memory); a crashed point is recorded as failed while the
sweep goes on; and a run can be stopped. Run folders and their summaries are
:mod:`pipelines.runs`'s (``RunSummary``, :func:`find_finished_run`, :func:`new_run_dir`).

What this runner adds to the engine stays small: offline runs, a resumable sweep folder
``OUTPUT_DIR/sweeps/NAME/`` (``runs.json``: every point's state and metric history; points
whose configuration has a finished run are reused, and points hyperband stopped stay
stopped), a summary table (``summary.md``, ``summary.csv``, and a W&B table in the sweep's
group when the runs log to W&B), and dry runs.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import wandb
from omegaconf import DictConfig, OmegaConf

from intriguing.analysis.tables import csv_table, markdown_lines
from intriguing.callbacks.history import HISTORY_FILE, read_history
from intriguing.configs import ConfigError, compose
from intriguing.configs.compose import GROUPS
from intriguing.pipelines import sweep_file
from intriguing.pipelines.runs import RunSummary, find_finished_run, new_run_dir
from intriguing.pipelines.sweep_file import (
    Sweep,
    agent_words,
    expand_command,
    next_point,
    points,
    train_overrides,
)
from intriguing.pipelines.tracking import wandb_dir, wandb_mode, wandb_project
from intriguing.storage import atomic_output

STATE_FILE = "runs.json"
SUMMARY_MARKDOWN = "summary.md"
SUMMARY_CSV = "summary.csv"
# The figures every point's row shows: clean test error, robust error (the union of the run's
# evaluation.robust_attacks) at MNIST's budgets, FGSM error as an extra, Table 1's measure.
RESULT_COLUMNS = (
    ("test/error", "clean test error"),
    ("eval/robust_error/linf_0.1", "robust error (L-inf 0.1)"),
    ("eval/robust_error/l2_1.5", "robust error (L2 1.5)"),
    ("eval/adversarial_error", "FGSM error"),
    ("eval/min_distortion", "mean min. distortion"),
)
# How W&B's engine reads a point's outcome (RunState): stopped by hyperband as W&B's
# controller kills a run; a non-zero exit as a failed run.
_ENGINE_STATES = {
    "ran": "finished",
    "reused": "finished",
    "stopped": "killed",
    "failed": "failed",
    "pending": "pending",
}


@dataclass(frozen=True)
class Point:
    """One point of the sweep: its values, the agent's command line, ours, its config."""

    index: int
    values: dict[str, Any]
    agent_argv: list[str]
    argv: list[str]
    config: DictConfig


@dataclass(frozen=True)
class PointBuilder:
    """What every point of a sweep shares: the words added to the agent's command line."""

    sweep: Sweep
    local: list[str]
    given: frozenset[str]

    def build(self, index: int, values: dict[str, Any]) -> Point:
        """Point ``index`` with its composed configuration.

        Raises:
            ConfigError: the composed configuration is invalid, naming the point and key.
        """
        sweep = self.sweep
        program = sweep.raw.get("program")
        agent_argv = expand_command(sweep.command, values, program=program)
        # The W&B run's name: the sweep's and the point's number, so that a group reads well.
        named = [] if "logger.name" in self.given else [f"logger.name={sweep.name}-{index}"]
        argv = agent_argv + named + self.local
        try:
            config = compose(train_overrides(argv))
        except ConfigError as error:
            words = " ".join(agent_words({k: values[k] for k in sweep.swept}))
            raise ConfigError(f"{sweep.path}: point {index} ({words}): {error}") from None
        return Point(index, values, agent_argv, argv, config)


def point_builder(sweep: Sweep, extra: Sequence[str]) -> PointBuilder:
    """Check the extra ``key=value`` words and the parameters' config keys.

    Raises:
        ConfigError: a malformed extra word, one that sets a swept key, or a parameter that
            is no config key.
    """
    for word in extra:
        key, sep, _ = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"{word!r}: expected key=value")
        if key.lstrip("-") in sweep.swept:
            raise ConfigError(f"{key}: swept by {sweep.path}; do not also set it here")
    command_words = train_overrides(
        expand_command(sweep.command, {}, program=sweep.raw.get("program"))
    )
    given = {w.partition("=")[0].lstrip("-") for w in [*command_words, *extra]}
    given |= {p.name for p in sweep.parameters}
    local = _recording_words(sweep, given) + list(extra)
    _check_parameter_keys(sweep, compose(command_words + local))
    return PointBuilder(sweep, local, frozenset(given))


def plan(sweep: Sweep, extra: Sequence[str], *, seed: int) -> list[Point]:
    """The points known before any run, composed (a bad key or value fails here, before
    anything runs): every point of a grid or random search; the first of a bayes search."""
    return _known_points(point_builder(sweep, extra), seed)


def _known_points(builder: PointBuilder, seed: int) -> list[Point]:
    sweep = builder.sweep
    if sweep.method == "bayes":
        return [builder.build(1, next_point(sweep, [], seed=seed, index=1))]
    return [builder.build(i, values) for i, values in enumerate(points(sweep, seed=seed), 1)]


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
        parent = OmegaConf.select(base, name.rpartition(".")[0]) if "." in name else base
        if isinstance(parent, DictConfig) and OmegaConf.get_type(parent) is dict:
            continue  # a free-form section (an attack's keys): checked per point by compose
        if OmegaConf.select(base, name, default=_ABSENT) is _ABSENT:
            raise ConfigError(
                f"{sweep.path}: parameters.{name}: no such config key (see "
                "`intriguing train --print-config`)"
            )


@dataclass
class RunOutcome:
    """How a point's training ended: exit status, whether it was stopped (early
    termination), its metric history (one row per validation epoch) and final metrics."""

    exit_code: int
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


# Trains a point in a folder; calls ``should_stop(history)`` whenever the history grows
# and stops the training when it answers True.
RunPoint = Callable[[Point, Path, Callable[[list[dict[str, float]]], bool]], RunOutcome]


def run_process(
    point: Point,
    run_dir: Path,
    should_stop: Callable[[list[dict[str, float]]], bool],
    *,
    poll_seconds: float = 5.0,
) -> RunOutcome:
    """Train ``point`` by its command line as a process of its own (session), polling its
    ``history.jsonl``; stopped with SIGTERM to its process group (then SIGKILL after 30 s),
    as a W&B agent stops a run. The final metrics are those of its ``summary.json``."""
    argv = [*point.argv, f"run_dir={run_dir}"]
    history_file = run_dir / HISTORY_FILE
    process = subprocess.Popen(argv, env=_environment(), start_new_session=True)
    seen, stopped = 0, False
    try:
        while True:
            try:
                code = process.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            history = read_history(history_file)
            if len(history) > seen:
                seen = len(history)
                if should_stop(history):
                    code, stopped = _terminate(process), True
                    break
    except BaseException:
        _terminate(process)
        raise
    history = read_history(history_file)
    summary = run_dir / "summary.json"
    finished = code == 0 and not stopped and summary.is_file()
    metrics = RunSummary.load(run_dir).metrics if finished else {}
    return RunOutcome(code, stopped, history, metrics)


def _terminate(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the process group this runner started (the point and its DDP ranks)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return int(process.returncode)


def _environment() -> dict[str, str]:
    """This environment, with this installation's scripts first on PATH: the agent's
    ``/usr/bin/env intriguing`` (or ``python``) then runs the same installation as the sweep."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


@dataclass
class PointResult:
    """A point's row of the summary table and its record in ``runs.json``."""

    index: int
    values: dict[str, Any]
    status: str  # ran, reused, stopped, failed, pending
    run_dir: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    note: str = ""  # "exit 1", "at epoch 3 (hyperband)"

    def engine_run(self) -> Any:
        """The point as W&B's engine sees a run of the sweep (``sweeps.SweepRun``)."""
        return sweep_file.sweeps.SweepRun(
            name=str(self.index),
            config={name: {"value": value} for name, value in self.values.items()},
            state=_ENGINE_STATES[self.status],
            history=self.history,
            summary_metrics=self.metrics,
        )


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: every point's result, and where the summary went."""

    sweep: Sweep
    points: list[PointResult]
    folder: Path
    markdown: str = ""
    wandb: str | None = None  # the W&B summary run's URL (online) or folder (offline)

    @property
    def failed(self) -> bool:
        return any(p.status == "failed" for p in self.points)


def run_sweep(
    sweep: Sweep,
    extra: Sequence[str] = (),
    *,
    seed: int = 0,
    dry_run: bool = False,
    max_runs: int | None = None,
    run_point: RunPoint = run_process,
    say: Callable[[str], None] = lambda line: None,
) -> SweepResult:
    """Run a sweep's points here, one after another, as W&B's engine draws and stops them.

    Args:
        sweep: from :func:`~intriguing.pipelines.sweep_file.load_sweep`.
        extra: ``key=value`` words added to every point's command (not a swept key).
        seed: seeds the engine's draws (see :mod:`~intriguing.pipelines.sweep_file`).
        dry_run: list the points and their commands (a bayes search's first), run nothing.
        max_runs: start at most this many trainings (reused points do not count).
        run_point: trains one point (:func:`run_process`; tests pass a fake).
        say: receives one line per point and event, for printing.

    Returns:
        The points' results, best first by the sweep's metric in ``markdown``.

    Raises:
        ConfigError: a point's configuration is invalid (for grid and random search, before
            anything runs).
    """
    builder = point_builder(sweep, extra)
    planned = _known_points(builder, seed)
    total = len(planned) if sweep.method != "bayes" else int(sweep.run_cap or 0)
    stopping = f", early_terminate {sweep.early_terminate['type']}" if sweep.early_terminate else ""
    over = ", ".join(sweep.swept) or "no varying parameter"
    say(f"sweep {sweep.name}: {sweep.method} search{stopping}, {total} points over {over}")
    folder = Path(planned[0].config.output_dir) / "sweeps" / sweep.name
    recorded = _load_state(folder, sweep, seed, extra)
    results: list[PointResult] = []
    started = 0
    for index in range(1, total + 1):
        if index <= len(planned):
            point = planned[index - 1]
        else:
            done = [r.engine_run() for r in results]
            point = builder.build(index, next_point(sweep, done, seed=seed, index=index))
        result = PointResult(index, point.values, "pending")
        head = f"[{index}/{total}]"
        finished = find_finished_run(point.config)
        earlier = recorded.get(_key(point.values))
        if finished is not None:
            result.status, result.run_dir = "reused", finished.run_dir
            result.metrics = finished.metrics
            result.history = read_history(Path(finished.run_dir) / HISTORY_FILE)
            say(f"{head} finished, reusing {finished.run_dir}")
        elif earlier is not None and earlier.status == "stopped":
            result = earlier
            result.index = index
            say(f"{head} stopped {earlier.note} in {earlier.run_dir}, kept stopped")
        elif dry_run or (max_runs is not None and started >= max_runs):
            later = "to run: " + shell_line(point.argv) if dry_run else "left for a later call"
            say(f"{head} {later}" + ("" if dry_run else " (--max-runs)"))
            if sweep.method == "bayes":  # the next points depend on this one's result
                say(f"[{index + 1}-{total}/{total}] drawn by the engine from the results")
                results.append(result)
                break
        else:
            started += 1
            _train(sweep, point, result, results, run_point, say, head)
        results.append(result)
        if not dry_run:
            _save_state(folder, sweep, seed, extra, results)
    outcome = SweepResult(sweep, results, folder)
    if dry_run:
        return outcome
    columns, rows = summary_table(sweep, results)
    outcome.markdown = to_markdown(sweep, columns, rows)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_MARKDOWN).write_text(outcome.markdown)
    (folder / SUMMARY_CSV).write_text(csv_table(columns, rows))
    outcome.wandb = _log_table(sweep, planned[0].config, columns, rows, folder)
    return outcome


def _train(
    sweep: Sweep,
    point: Point,
    result: PointResult,
    results: list[PointResult],
    run_point: RunPoint,
    say: Callable[[str], None],
    head: str,
) -> None:
    """Train a point, asking the engine after each validation epoch whether to stop it."""
    earlier_runs = [r.engine_run() for r in results if r.status != "pending"]
    name = str(point.index)

    def should_stop(history: list[dict[str, float]]) -> bool:
        if sweep.early_terminate is None:
            return False
        running = sweep_file.sweeps.SweepRun(
            name=name,
            config={k: {"value": v} for k, v in point.values.items()},
            state="running",
            history=history,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped = sweep_file.sweeps.stop_runs(sweep.config, [*earlier_runs, running])
        return any(run.name == name for run in stopped)

    run_dir = new_run_dir(point.config.output_dir, point.config.name)
    say(f"{head} {shell_line([*point.argv, f'run_dir={run_dir}'])}")
    outcome = run_point(point, run_dir, should_stop)
    result.run_dir, result.history = str(run_dir), outcome.history
    if outcome.stopped:
        epoch = outcome.history[-1].get("epoch", len(outcome.history) - 1) if outcome.history else 0
        result.status, result.note = "stopped", f"at epoch {int(epoch)} (hyperband)"
        result.metrics = dict(outcome.history[-1]) if outcome.history else {}
        say(f"{head} stopped {result.note}")
    elif outcome.exit_code == 0:
        result.status, result.metrics = "ran", outcome.metrics
    else:
        result.status, result.note = "failed", f"exit {outcome.exit_code}"


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def _state_header(sweep: Sweep, seed: int, extra: Sequence[str]) -> dict[str, Any]:
    return {"sweep": sweep.raw, "seed": seed, "extra": list(extra)}


def _load_state(
    folder: Path, sweep: Sweep, seed: int, extra: Sequence[str]
) -> dict[str, PointResult]:
    """The points recorded by an earlier call of the same sweep, seed and words, by values."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if {k: state.get(k) for k in ("sweep", "seed", "extra")} != _state_header(sweep, seed, extra):
        return {}
    return {_key(r["values"]): PointResult(**r) for r in state.get("runs", [])}


def _save_state(
    folder: Path, sweep: Sweep, seed: int, extra: Sequence[str], results: list[PointResult]
) -> None:
    state = {**_state_header(sweep, seed, extra), "runs": [asdict(r) for r in results]}
    with atomic_output(folder / STATE_FILE, "w") as stream:
        stream.write(json.dumps(state, indent=1, default=str))


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


def _sort_key(sweep: Sweep, result: PointResult) -> tuple[int, float, int]:
    value = result.metrics.get(sweep.metric) if sweep.metric else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0, result.index)
    return (0, value if sweep.goal == "minimize" else -value, result.index)


def summary_table(
    sweep: Sweep, results: Iterable[PointResult]
) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the sweep's summary, best point first by the sweep's metric.

    Raw values (errors as fractions); :func:`to_markdown` formats them for reading."""
    metric_columns = [key for key, _ in RESULT_COLUMNS]
    if sweep.metric and sweep.metric not in metric_columns:
        metric_columns.append(sweep.metric)
    columns = ["point", *sweep.swept, *metric_columns, "status", "run"]
    rows = []
    for result in sorted(results, key=lambda r: _sort_key(sweep, r)):
        status = " ".join(part for part in (result.status, result.note) if part)
        rows.append(
            [
                result.index,
                *(_display_value(result.values[name]) for name in sweep.swept),
                *(result.metrics.get(key) for key in metric_columns),
                status,
                result.run_dir or "",
            ]
        )
    return columns, rows


def _display_value(value: Any) -> str | int | float:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return value if numeric or isinstance(value, str) else str(value)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and column.endswith("error"):
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(sweep: Sweep, columns: list[str], rows: list[list[Any]]) -> str:
    """The summary table as markdown, with the sweep's method, file, command and constants."""
    labels = dict(RESULT_COLUMNS)
    header = [labels.get(c, c) for c in columns]
    ranked = f"sorted by {sweep.metric} ({sweep.goal})" if sweep.metric else "in point order"
    constants = [f"{p.name}={p.settings['value']}" for p in sweep.parameters if p.constant]
    stopping = f", early_terminate {sweep.early_terminate['type']}" if sweep.early_terminate else ""
    lines = [
        f"# Sweep {sweep.name}",
        "",
        f"{sweep.method} search{stopping} from `{sweep.path}`, {len(rows)} points, {ranked}.",
        f"Command: `{' '.join(sweep.command)}`"
        + (f"; constants: {', '.join(constants)}" if constants else ""),
        "",
    ]
    cells = [[_cell(c, v) for c, v in zip(columns, row, strict=True)] for row in rows]
    numeric = [c not in (*sweep.swept, "status", "run") for c in columns]
    return "\n".join([*lines, *markdown_lines(header, cells, right_aligned=numeric)]) + "\n"


def _log_table(
    sweep: Sweep, config: DictConfig, columns: list[str], rows: list[list[Any]], folder: Path
) -> str | None:
    """The summary as a W&B table in a run of the sweep's group (when the runs use W&B)."""
    if config.logger.kind != "wandb":
        return None
    mode = wandb_mode(str(config.logger.mode))
    if mode == "disabled":
        return None
    run = wandb.init(
        project=wandb_project(config.logger.project),
        entity=config.logger.entity,
        group=config.logger.group,
        name=f"{sweep.name}-summary",
        job_type="sweep-summary",
        dir=wandb_dir(folder),
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
