"""W&B tracking: a run and its baseline are one group with a job type each, read back from the
offline runs' own files; W&B's environment variables are honoured (WANDB_DIR above all); a
resumed run keeps its group; a reproduction's runs carry their roles."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from intriguing.cli.reproduce import study_group
from intriguing.configs import compose, to_yaml
from intriguing.pipelines import tracking
from intriguing.pipelines.runs import resumed_tracking
from intriguing.pipelines.train import comparison_group

from ..wandb_runs import logged_table, run_record, run_records
from .conftest import read_summary, wandb_summary

TINY = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "data.train_subset=512",
    "data.test_subset=64",
    "evaluation.subset=0",
    "backfeed.generator.name=fgsm",
    "backfeed.layers=[input]",
    "backfeed.alternate=false",
    "backfeed.pool_size=64",
    "backfeed.refresh_every_n_steps=1",
    "backfeed.refresh_fraction=0.25",
    "backfeed.val_subset=0",
    "backfeed.log_examples_every_n_epochs=1",
]


def test_run_and_baseline_are_one_wandb_group_with_a_job_type_each(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    words = ["experiment=backfeed-fc100", "compare_baseline=true", f"output_dir={out}", *TINY]
    outcome = run_cli("train", *words)
    assert outcome.code == 0, outcome.err
    run, baseline = (
        read_summary(out, "backfeed-fc100"),
        read_summary(out, "backfeed-fc100-baseline"),
    )
    group = comparison_group(compose(words))
    assert group.startswith("backfeed-fc100-") and len(group) == len("backfeed-fc100-") + 8
    records = {"backfeed": run_record(run["logs"]), "baseline": run_record(baseline["logs"])}
    for job_type, record in records.items():
        assert record["run_group"] == group
        assert record["job_type"] == job_type
    # WANDB_DIR (tmp_path, see tests/conftest.py) decides where the runs are, not run_dir.
    for summary in (run, baseline):
        assert Path(summary["logs"]).parent == tmp_path / "wandb"
        assert not (Path(summary["run_dir"]) / "wandb").exists()
    # The backfed run logged its pool examples (3 images per input-pool row).
    logged = wandb_summary(run["logs"])["summary"]["backfeed/examples"]
    assert logged["nrows"] == 8 and logged["ncols"] == 10
    table, files = logged_table(run_records(run["logs"]), "backfeed/examples")
    for row in table["data"]:
        assert all(cell["path"] in files for cell in row[4:7])


def test_a_run_lands_in_wandb_dir_when_set_else_in_its_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch, run_dir = tmp_path / "scratch", tmp_path / "run"
    monkeypatch.setenv("WANDB_DIR", str(scratch))
    section = {"kind": "wandb", "mode": "offline"}
    logger = tracking.make_logger(section, run_dir=run_dir, name="r", config={})
    try:
        where = Path(tracking.run_location(logger))
    finally:
        tracking.finish(logger)
    assert where.parent == scratch / "wandb" and where.name.startswith("offline-run-")
    assert not run_dir.exists()

    monkeypatch.delenv("WANDB_DIR")
    unset = tracking.make_logger(section, run_dir=run_dir, name="r", config={})
    assert unset.save_dir == str(run_dir)  # wandb.init(dir=run_dir): run_dir/wandb/...


def test_explicit_config_wins_over_wandb_variables_which_win_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def init(section: dict, **kwargs) -> dict:
        logger = tracking.make_logger(section, run_dir=tmp_path, name="r", config={}, **kwargs)
        return logger._wandb_init  # the arguments wandb.init gets

    defaults = init({"kind": "wandb"})
    assert defaults["project"] == "intriguing" and defaults["job_type"] == "train"
    assert defaults["group"] is None and defaults["entity"] is None  # W&B's own then
    monkeypatch.setenv("WANDB_PROJECT", "scratch-project")
    monkeypatch.setenv("WANDB_JOB_TYPE", "sweep-point")
    from_environment = init({"kind": "wandb"})
    assert from_environment["project"] == "scratch-project"
    assert from_environment["job_type"] == "sweep-point"
    given = init({"kind": "wandb", "project": "mine", "job_type": "baseline"})
    assert given["project"] == "mine" and given["job_type"] == "baseline"
    assert init({"kind": "wandb", "job_type": "baseline"}, job_type="pretrain")["job_type"] == (
        "pretrain"
    )

    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # an explicit WANDB_MODE wins over auto
    assert tracking.wandb_mode("auto") == "offline"
    assert tracking.wandb_mode("online") == "offline"


def test_group_given_by_the_user_or_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    config = compose(["experiment=backfeed-fc100"])
    assert comparison_group(config) == comparison_group(compose(["experiment=backfeed-fc100"]))
    assert comparison_group(compose(["experiment=backfeed-fc100", "resume=last"])) == (
        comparison_group(config)  # a resumed job keeps its group
    )
    monkeypatch.setenv("WANDB_RUN_GROUP", "from-env")
    assert comparison_group(config) == "from-env"
    config.logger.group = "mine"
    assert comparison_group(config) == "mine"


def test_a_resumed_run_keeps_its_group_and_job_type(tmp_path: Path) -> None:
    started = compose(["experiment=fc100-100-10", "logger.group=g", "logger.job_type=backfeed"])
    (tmp_path / "config.yaml").write_text(to_yaml(started))
    resumed = resumed_tracking(compose(["experiment=fc100-100-10"]), tmp_path)
    assert (resumed.logger.group, resumed.logger.job_type) == ("g", "backfeed")
    regrouped = compose(["experiment=fc100-100-10", "logger.group=new"])
    assert resumed_tracking(regrouped, tmp_path).logger.group == "new"  # given now: it wins


def test_a_reproduction_is_one_group() -> None:
    def args(*overrides: str, group: str | None = None) -> argparse.Namespace:
        return argparse.Namespace(wandb_group=group, overrides=list(overrides))

    assert study_group(args(), "quick") == "reproduce-quick"
    assert study_group(args("logger.group=mine"), "quick") == "mine"
    assert study_group(args("logger.group=mine", group="flag"), "quick") == "flag"
    # The roles as job types: test_reproduce.py's test_shipped_budgets_plan_the_papers_runs.
