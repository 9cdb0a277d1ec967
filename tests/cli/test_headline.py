"""Honest headline figures (issue 12, item 5): the demo's comparison shows clean and robust
error at each budget (FGSM error and minimum distortion as extras), is logged to W&B as a
table in the run's group, and an evaluation that cannot run is refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from intriguing.analysis import robustness
from intriguing.cli.formatting import format_comparison, format_summary
from intriguing.configs import compose
from intriguing.pipelines.runs import RunSummary
from intriguing.pipelines.train import comparison_table, log_comparison

from ..wandb_runs import logged_table, run_record, run_records


def summary(name: str, run_dir: Path, robust: float, fgsm: float, violated: float) -> RunSummary:
    metrics = {
        "test/error": 0.0161,
        "eval/clean_error": 0.022,
        "eval/examples": 1000.0,
        "eval/adversarial_error": fgsm + 0.01,
        "eval/min_distortion": 0.0486,
        "eval/robust_clean_error": 0.02,
        "eval/robust_examples": 200.0,
        "eval/robust_error/linf_0.1": robust,
        "eval/robust_error/linf_0.3": 1.0,
        "eval/robust_error/l2_1.5": 0.655,
        "eval/masking/linf/pgd_at_least_as_strong_as_fgsm": violated,
        "eval/masking/linf/robust_error_grows_with_epsilon": 0.0,
        "eval/masking_violations": violated,
        "train/error": 0.005,
    }
    for budget in ("linf_0.1", "linf_0.3", "l2_1.5"):
        for attack in ("pgd", "apgd-ce", "apgd-t", "fgsm"):
            metrics[f"eval/robust_error/{budget}/{attack}"] = fgsm if attack == "fgsm" else robust
    return RunSummary(name=name, run_dir=str(run_dir), checkpoint=None, metrics=metrics)


def test_the_comparison_shows_clean_and_robust_error_at_each_budget(tmp_path: Path) -> None:
    run = summary("demo", tmp_path / "demo", robust=0.375, fgsm=0.228, violated=0.0)
    baseline = summary("demo-baseline", tmp_path / "base", robust=0.91, fgsm=0.793, violated=1.0)
    header, rows = comparison_table(run, baseline)
    assert header == ["figure", "demo-baseline", "demo"]
    assert rows == [
        ["clean test error", "1.61%", "1.61%"],
        ["clean error (same images)", "2.00%", "2.00%"],
        ["robust error (L-inf 0.1)", "91.00%", "37.50%"],
        ["robust error (L-inf 0.3)", "100.00%", "100.00%"],
        ["robust error (L2 1.5)", "65.50%", "65.50%"],
        ["FGSM error (L-inf 0.1)", "79.30%", "22.80%"],
        ["mean minimum distortion", "0.0486", "0.0486"],
    ]
    text = format_comparison(run, baseline, reused=True)
    lines = text.splitlines()
    assert lines[0].split() == ["demo-baseline", "demo"]
    assert lines[3].split()[-2:] == ["91.00%", "37.50%"]
    assert "any of apgd-ce, apgd-t, pgd, fgsm within the budget" in text
    assert "on the first 200 test images (a subset, for time); minimum distortion on the " in text
    assert "demo-baseline: gradient-masking checks VIOLATED: linf/pgd_at_least_as_strong" in text
    assert lines[-1] == f"baseline: reused from {tmp_path / 'base'}"
    # The run's own summary: the same figures by name, and its checks.
    own = format_summary(run)
    assert "robust error (L-inf 0.3)" in own and "FGSM error (L-inf 0.1)" in own
    assert "gradient-masking checks: 2 passed, none violated" in own


@pytest.mark.slow  # a W&B run started and read back: about 15 s
def test_the_comparison_is_a_wandb_table_in_the_runs_group(tmp_path: Path) -> None:
    config = compose(["experiment=demo", "logger.group=demo-1234", f"output_dir={tmp_path}"])
    run = summary("demo", tmp_path / "demo", robust=0.375, fgsm=0.228, violated=0.0)
    baseline = summary("demo-baseline", tmp_path / "base", robust=0.91, fgsm=0.793, violated=0.0)
    location = log_comparison(config, run, baseline)
    assert location is not None
    record = run_record(location)
    assert record["run_group"] == "demo-1234" and record["job_type"] == "comparison"
    table, _ = logged_table(run_records(location), "comparison")
    header, rows = comparison_table(run, baseline)
    assert table["columns"] == header and table["data"] == rows
    assert log_comparison(compose(["logger=none"]), run, baseline) is None


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["evaluation.robust_attacks=[pgd,apgdce]"], "evaluation.robust_attacks=[pgd, apgdce]"),
        (["evaluation.linf_epsilons=[0.1,0]"], "evaluation.linf_epsilons=[0.1, 0.0]: epsilon 0"),
        (["evaluation.pgd_restarts=0"], "evaluation.pgd_restarts=0: must be at least 1"),
        (["evaluation.robust_subset=-2"], "evaluation.robust_subset=-2"),
    ],
)
def test_a_bad_evaluation_is_refused_before_training(run_cli, tmp_path, words, named) -> None:
    outcome = run_cli(
        "train", "evaluation.subset=16", "logger=none", f"output_dir={tmp_path}", *words
    )
    assert outcome.code == 2 and named in outcome.err, outcome.err
    assert not list(tmp_path.iterdir())  # no run folder: nothing started


def test_apgd_without_torchattacks_is_refused_before_training(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> None:
        raise ImportError("torchattacks is not installed; ...: pip install intriguing[eval]")

    monkeypatch.setattr(robustness, "import_torchattacks", missing)
    outcome = run_cli("train", "evaluation.subset=16", "logger=none", f"output_dir={tmp_path}")
    assert outcome.code == 2 and len(outcome.err.strip().splitlines()) == 1
    assert "evaluation.robust_attacks=[pgd, apgd-ce, apgd-t, fgsm]: apgd-ce, apgd-t" in outcome.err
    assert "intriguing[eval]" in outcome.err
    assert "evaluation.robust_attacks=[pgd,fgsm]" in outcome.err  # what runs without it
    assert not list(tmp_path.iterdir())
