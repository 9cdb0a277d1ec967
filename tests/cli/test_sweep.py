"""``intriguing sweep``: W&B sweep files expanded by W&B's engine, run here one process per point,
recorded one W&B run per point in the sweep's group, resumed, and refused when malformed."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from intriguing.pipelines.sweep import plan
from intriguing.pipelines.sweep_file import load_sweep, points

from .conftest import wandb_summary

SWEEPS = Path(__file__).parent / "sweeps"
WANDB = Path(sys.executable).with_name("wandb")


@pytest.fixture
def agent_command(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """The command line wandb's own agent builds for a run of a sweep (wandb's Agent, with
    the process it would start recorded instead of started)."""
    from wandb import wandb_agent

    launched: list[list[str]] = []

    class Recorder:
        def __init__(self, command: list[str] | None = None, **_: Any) -> None:
            launched.append(command or [])

    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    # The agent sets these for the run it starts: restore them after the test.
    monkeypatch.setenv("WANDB_RUN_ID", "unset")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "unset")

    def build(command: list[str], values: dict[str, Any]) -> list[str]:
        agent = wandb_agent.Agent(api=None, queue=None, sweep_id="local")
        agent._sweep_command = list(command)
        # The sweep controller sends a run's parameters sorted by name.
        args = {name: {"value": values[name]} for name in sorted(values)}
        agent._command_run({"run_id": "point", "program": None, "args": args})
        return launched.pop()

    return build


def test_grid_expands_in_wandbs_order_into_the_agents_command_lines(
    agent_command: Callable[..., list[str]], tmp_path: Path
) -> None:
    sweep = load_sweep(SWEEPS / "grid.yaml")
    expected = [
        {
            "backfeed.alternate": alternate,
            "backfeed.generator.steps": steps,
            "backfeed.layers": layers,
            "backfeed.mix_ratio": mix,
            "seed": 7,
        }
        # W&B's grid: parameters in name order, the last one varying fastest; int_uniform
        # takes min..max, q_uniform np.arange(min, max, q).
        for alternate in (True, False)
        for steps in (2, 3, 4)
        for layers in (["input"], ["input", "fc1"])
        for mix in (0.25, 0.5, 0.75)
    ]
    assert points(sweep) == expected
    assert points(dataclasses.replace(sweep, run_cap=5)) == expected[:5]

    out = tmp_path / "out"
    planned = plan(sweep, [f"output_dir={out}"], seed=0)
    assert len(planned) == 36
    for point, values in zip(planned, expected, strict=True):
        assert point.agent_argv == agent_command(sweep.command, values)
        assert point.argv == [
            *point.agent_argv,
            f"logger.name=grid-sweep-{point.index}",
            "logger.group=grid-sweep",
            f"output_dir={out}",
        ]
        config = point.config
        assert list(config.backfeed.layers) == values["backfeed.layers"]
        assert config.backfeed.alternate is values["backfeed.alternate"]
        assert config.backfeed.generator.steps == values["backfeed.generator.steps"]
        assert config.backfeed.mix_ratio == values["backfeed.mix_ratio"]
        assert config.seed == 7 and config.backfeed.enabled
    assert planned[1].agent_argv[-5:] == [
        "backfeed.alternate=True",
        "backfeed.generator.steps=2",
        "backfeed.layers=['input']",
        "backfeed.mix_ratio=0.5",
        "seed=7",
    ]
    # Nothing ran: planning writes no run folder.
    assert not out.exists()


def test_random_search_draws_run_cap_points_from_each_distribution_with_a_seed(
    agent_command: Callable[..., list[str]], tmp_path: Path
) -> None:
    sweep = load_sweep(SWEEPS / "random.yaml")
    drawn = points(sweep, seed=3)
    assert len(drawn) == sweep.run_cap == 400
    assert points(sweep, seed=3) == drawn
    assert points(sweep, seed=4) != drawn

    def column(name: str) -> list[Any]:
        return [point[name] for point in drawn]

    epsilon = column("backfeed.generator.epsilon")  # float min/max: uniform
    assert all(0.05 <= e <= 0.3 for e in epsilon)
    assert sum(epsilon) / len(epsilon) == pytest.approx(0.175, abs=0.015)
    pool = column("backfeed.pool_size")  # int min/max: int_uniform, both ends included
    assert all(isinstance(p, int) for p in pool) and set(pool) == {100, 101, 102, 103, 104}
    lr = column("optim.lr")  # log_uniform_values: half the draws below the geometric mean
    assert all(1e-4 <= r <= 1e-1 for r in lr)
    below = sum(r < math.sqrt(1e-4 * 1e-1) for r in lr) / len(lr)
    assert below == pytest.approx(0.5, abs=0.1)
    mix = column("backfeed.mix_ratio")  # q_uniform: multiples of q
    assert all(0 <= m <= 1 and (m / 0.125).is_integer() for m in mix)
    assert set(column("backfeed.generator.name")) == {"fgsm", "pgd"}
    refresh = column("backfeed.refresh_every_n_steps")  # q_log_uniform_values with q=1: ints
    assert all(isinstance(n, int) and 1 <= n <= 64 for n in refresh)

    few = dataclasses.replace(sweep, run_cap=6)
    planned = plan(few, [f"output_dir={tmp_path}"], seed=3)
    assert [p.values for p in planned] == drawn[:6]
    for point in planned:
        assert point.agent_argv == agent_command(sweep.command, point.values)
        assert point.config.optim.lr == point.values["optim.lr"]
        assert (
            point.config.backfeed.refresh_every_n_steps
            == (point.values["backfeed.refresh_every_n_steps"])
        )


def test_dry_run_lists_the_commands_and_runs_nothing(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    outcome = run_cli("sweep", str(SWEEPS / "tiny.yaml"), "--dry-run", f"output_dir={out}")
    assert outcome.code == 0, outcome.err
    lines = [line for line in outcome.out.splitlines() if line.startswith("[")]
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] to run: /usr/bin/env intriguing train experiment=")
    assert "\"backfeed.layers=['input']\"" in lines[0]
    assert "\"backfeed.layers=['fc2']\"" in lines[1]
    assert "logger.group=tiny-sweep" in lines[1]
    assert not out.exists()


def _run_records(run_folder: Path) -> dict[str, Any]:
    """The 'run' record of an offline W&B run: its group, name and config as W&B stored them."""
    done = subprocess.run(
        [str(WANDB), "leet", "inspect", "--json", str(run_folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return next(r["run"] for r in records if r["type"] == "run")


@pytest.mark.slow  # about 60 s: two real trainings, three sweep calls
def test_sweep_logs_one_run_per_point_in_its_group_and_resumes(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep_args = ("sweep", str(SWEEPS / "tiny.yaml"), f"output_dir={out}")

    # Interrupted after one point (--max-runs 1 stops as an interruption would) ...
    first = run_cli(*sweep_args, "--max-runs", "1")
    assert first.code == 0, first.err
    assert "[2/2] left for a later call" in first.out
    runs = sorted((out / "fc100-100-10").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()

    # ... then resumed: the finished point is reused, only the other one trains.
    second = run_cli(*sweep_args)
    assert second.code == 0, second.err
    assert f"[1/2] finished, reusing {runs[0]}" in second.out
    runs = sorted((out / "fc100-100-10").iterdir())
    assert len(runs) == 2

    # A finished sweep trains nothing more.
    third = run_cli(*sweep_args)
    assert third.code == 0, third.err
    assert third.out.count("finished, reusing") == 2
    assert len(list((out / "fc100-100-10").iterdir())) == 2

    summaries = {}
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        wandb_run = summary["logs"]  # in WANDB_DIR (tests/conftest.py), where W&B put it
        logged = wandb_summary(wandb_run)
        for key in ("test/error", "eval/adversarial_error", "eval/min_distortion"):
            assert logged["summary"][key] == pytest.approx(summary["metrics"][key])
        record = _run_records(wandb_run)
        assert record["run_group"] == "tiny-sweep"
        layers = logged["config"]["backfeed"]["layers"]
        index = 1 if layers == ["input"] else 2
        assert layers == [["input"], ["fc2"]][index - 1]
        assert record["display_name"] == f"tiny-sweep-{index}"
        summaries[index] = summary

    folder = out / "sweeps" / "tiny-sweep"
    with (folder / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["reused", "reused"]
    errors = [float(row["eval/adversarial_error"]) for row in rows]
    assert errors == sorted(errors)  # best first for goal: minimize
    for row in rows:
        metrics = summaries[int(row["point"])]["metrics"]
        assert float(row["test/error"]) == pytest.approx(metrics["test/error"])
        assert float(row["eval/min_distortion"]) == pytest.approx(metrics["eval/min_distortion"])
    markdown = (folder / "summary.md").read_text()
    assert "| point | backfeed.layers | clean test error | robust error (L-inf 0.1) |" in markdown
    assert markdown in third.out

    # Each call logged its table to a W&B run of the sweep's group, in WANDB_DIR.
    offline = sorted((Path(os.environ["WANDB_DIR"]) / "wandb").glob("offline-run-*"))
    tables = [run for run in offline if _run_records(run)["job_type"] == "sweep-summary"]
    assert len(tables) == 3
    logged = wandb_summary(tables[-1])["summary"]
    assert logged["sweep/summary"]["nrows"] == 2
    assert logged["best/point"] == int(rows[0]["point"])
    assert _run_records(tables[-1])["run_group"] == "tiny-sweep"


BASE: dict[str, Any] = yaml.safe_load((SWEEPS / "tiny.yaml").read_text())


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(sweep: dict[str, Any]) -> None:
        if value is None:
            sweep.pop(key)
        else:
            sweep[key] = value

    return change


def _parameter(name: str, settings: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(sweep: dict[str, Any]) -> None:
        sweep["parameters"][name] = settings

    return change


BAD_SWEEPS = [
    (
        "unknown-method",
        _set("method", "hyperopt"),
        "method: 'hyperopt' is not one of ['bayes', 'random', 'grid', 'custom']",
    ),
    (
        "bayes-without-metric",
        lambda sweep: [_set("method", "bayes")(sweep), _set("metric", None)(sweep)],
        "metric: bayes search needs metric",
    ),
    ("unknown-sweep-key", _set("paramters", {}), "paramters: not a W&B sweep key"),
    (
        "schema-lacks-key",
        _parameter("backfeed.poolsize", {"values": [10, 20]}),
        "parameters.backfeed.poolsize: no such config key",
    ),
    (
        "unknown-distribution",
        _parameter("optim.lr", {"distribution": "gaussian", "min": 0.1, "max": 1.0}),
        "parameters.optim.lr: unknown distribution 'gaussian'",
    ),
    (
        "min-above-max",
        _parameter("optim.lr", {"distribution": "log_uniform_values", "min": 1.0, "max": 0.1}),
        "parameters.optim.lr: min 1.0 is not less than max 0.1",
    ),
    (
        "text-bound",
        _parameter("optim.lr", {"distribution": "uniform", "min": "1e-3", "max": 0.1}),
        "parameters.optim.lr.min: '1e-3' is not of type 'number'",
    ),
    (
        "grid-of-a-continuous-distribution",
        _parameter("optim.lr", {"distribution": "uniform", "min": 0.01, "max": 0.1}),
        "parameters.optim.lr: distribution uniform cannot be a grid axis",
    ),
    (
        "value-of-the-wrong-type",
        _parameter("backfeed.pool_size", {"values": [32, "many"]}),
        "backfeed.pool_size",
    ),
    (
        "none-value",
        _parameter("backfeed.generator.layer", {"values": [None, "fc1"]}),
        "parameters.backfeed.generator.layer: W&B agents pass None as the word 'None'",
    ),
    ("missing-command", _set("command", None), "command: missing"),
    (
        "command-without-arguments",
        _set("command", ["${env}", "intriguing", "train", "experiment=fc100-100-10"]),
        "command: needs exactly one ${args_no_hyphens}",
    ),
    (
        "command-of-another-program",
        _set("command", ["${env}", "python", "train.py", "${args_no_hyphens}"]),
        "command: the local runner runs `intriguing train ...`",
    ),
    ("random-without-run-cap", _set("method", "random"), "run_cap: random search needs run_cap"),
]


def _write(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    sweep = copy.deepcopy(BASE)
    change(sweep)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [case[1:] for case in BAD_SWEEPS],
    ids=[case[0] for case in BAD_SWEEPS],
)
def test_a_bad_sweep_file_fails_before_any_run_naming_the_key(
    run_cli, tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _write(tmp_path, change)
    outcome = run_cli("sweep", str(path), f"output_dir={tmp_path / 'out'}")
    assert outcome.code == 2
    assert outcome.err.startswith(f"intriguing sweep: error: {path}: ")
    assert message in outcome.err
    assert outcome.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_bad_sweep_file_fails_in_one_line_without_a_traceback(
    run_process, tmp_path: Path
) -> None:
    path = _write(tmp_path, _parameter("backfeed.poolsize", {"values": [10, 20]}))
    outcome = run_process("sweep", str(path), "--dry-run", timeout=120)
    assert outcome.code == 2
    assert outcome.err == (
        f"intriguing sweep: error: {path}: parameters.backfeed.poolsize: no such config key "
        "(see `intriguing train --print-config`)\n"
    )
    assert outcome.out == ""


def test_extra_words_may_not_set_a_swept_key(run_cli, tmp_path: Path) -> None:
    outcome = run_cli("sweep", str(SWEEPS / "tiny.yaml"), "backfeed.layers=[fc1]", "--dry-run")
    assert outcome.code == 2
    assert "backfeed.layers: swept by" in outcome.err


@pytest.mark.slow  # about 20 s: composes all 48 points
def test_the_shipped_backfeed_ablation_composes_every_point(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "backfeed-ablation.yaml"
    sweep = load_sweep(path)
    assert sweep.swept == [
        "backfeed.generator.name",
        "backfeed.layers",
        "backfeed.mix",
        "backfeed.mix_ratio",
        "backfeed.pool_size",
        "backfeed.refresh_fraction",
        "experiment",
    ]
    planned = plan(sweep, [f"output_dir={tmp_path / 'out'}"], seed=0)
    assert len(planned) == sweep.run_cap
    configs = [point.config for point in planned]
    assert all(c.backfeed.enabled and c.evaluation.subset > 0 for c in configs)
    # Every value of every factor is drawn at least once in the 48 points.
    for parameter in sweep.parameters:
        drawn = {json.dumps(point.values[parameter.name]) for point in planned}
        assert drawn == {json.dumps(value) for value in parameter.settings["values"]}
