"""``run_sweep`` on W&B's engine without training: bayes search draws from results, hyperband
stops a run whose metric history falls behind (the run function is a fake)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from intriguing.pipelines.sweep import Point, RunOutcome, run_sweep
from intriguing.pipelines.sweep_file import load_sweep, next_point

COMMAND = ["${env}", "intriguing", "train", "experiment=fc100-100-10", "${args_no_hyphens}"]
# No W&B run for the summary table: the tests stay offline and fast.
EXTRA = ["logger.kind=none"]


def _sweep_file(tmp_path: Path, **settings: Any) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "engine", "command": COMMAND, **settings}))
    return path


def _fake(
    histories: Callable[[Point], list[float]], calls: list[tuple[Point, int]]
) -> Callable[..., RunOutcome]:
    """A run that 'logs' val/error once per epoch and stops when asked, as run_process does."""

    def run(point: Point, run_dir: Path, should_stop: Callable[..., bool]) -> RunOutcome:
        history: list[dict[str, float]] = []
        for epoch, error in enumerate(histories(point)):
            history.append({"epoch": epoch, "val/error": error})
            if should_stop(list(history)):
                calls.append((point, epoch))
                return RunOutcome(-15, stopped=True, history=history)
        calls.append((point, len(history)))
        return RunOutcome(0, history=history, metrics={"val/error": history[-1]["val/error"]})

    return run


def test_hyperband_stops_a_run_whose_metric_falls_behind(tmp_path: Path) -> None:
    path = _sweep_file(
        tmp_path,
        method="grid",
        metric={"name": "val/error", "goal": "minimize"},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2},
        parameters={"optim.lr": {"values": [0.1, 0.2, 0.3]}},
    )
    sweep = load_sweep(path)
    curves = {0.1: [0.5, 0.4, 0.3, 0.2], 0.2: [0.5, 0.35, 0.3, 0.25], 0.3: [0.9, 0.9, 0.9, 0.9]}
    calls: list[tuple[Point, int]] = []
    lines: list[str] = []
    out = tmp_path / "out"
    result = run_sweep(
        sweep,
        [*EXTRA, f"output_dir={out}"],
        run_point=_fake(lambda p: curves[p.values["optim.lr"]], calls),
        say=lines.append,
    )
    # The first two train all four epochs; the third is behind at the first band (epoch 0:
    # 0.9 against the threshold 0.5, the top half of the three runs there) and is stopped.
    assert [(p.values["optim.lr"], epochs) for p, epochs in calls] == [(0.1, 4), (0.2, 4), (0.3, 0)]
    assert [p.status for p in result.points] == ["ran", "ran", "stopped"]
    assert result.points[2].note == "at epoch 0 (hyperband)"
    assert "[3/3] stopped at epoch 0 (hyperband)" in lines
    assert not result.failed
    assert "early_terminate hyperband" in result.markdown

    # A second call keeps the stopped point stopped (runs.json) instead of training it again.
    calls.clear()
    again = run_sweep(sweep, [*EXTRA, f"output_dir={out}"], run_point=_fake(lambda p: [0.1], calls))
    assert [p.values["optim.lr"] for p, _ in calls] == [0.1, 0.2]  # no summary.json: rerun
    assert again.points[2].status == "stopped"


def test_bayes_search_draws_valid_points_from_the_results_reproducibly(tmp_path: Path) -> None:
    path = _sweep_file(
        tmp_path,
        method="bayes",
        run_cap=4,
        metric={"name": "val/error", "goal": "minimize"},
        parameters={
            "optim.lr": {"min": 0.001, "max": 0.1},
            "optim.name": {"values": ["sgd", "adam"]},
        },
    )
    sweep = load_sweep(path)

    def error(point: Point) -> list[float]:
        lr = point.values["optim.lr"]
        return [abs(lr - 0.03) + (0.1 if point.values["optim.name"] == "adam" else 0.0)]

    calls: list[tuple[Point, int]] = []
    result = run_sweep(
        sweep, [*EXTRA, f"output_dir={tmp_path / 'out'}"], seed=1, run_point=_fake(error, calls)
    )
    assert [p.status for p in result.points] == ["ran"] * 4
    for point, _ in calls:
        assert 0.001 <= point.values["optim.lr"] <= 0.1
        assert point.values["optim.name"] in ("sgd", "adam")
        assert point.config.optim.lr == point.values["optim.lr"]
    assert len({p.values["optim.lr"] for p in result.points}) == 4
    # Each point is the engine's choice given the results before it, and the same again for
    # the same seed and results (what lets an interrupted bayes sweep reuse its runs).
    for index, point in enumerate(result.points, start=1):
        earlier = [p.engine_run() for p in result.points[: index - 1]]
        assert next_point(sweep, earlier, seed=1, index=index) == point.values
    assert next_point(sweep, [], seed=2, index=1) != result.points[0].values

    lines: list[str] = []
    run_sweep(sweep, EXTRA, seed=1, dry_run=True, say=lines.append)
    assert lines[1].startswith("[1/4] to run: /usr/bin/env intriguing train")
    assert lines[2] == "[2-4/4] drawn by the engine from the results"
