"""``intriguing reproduce``: the whole study on a tiny budget, the report files (markdown and
a self-contained HTML page with every table and plot), resuming without retraining or
re-attacking, the shipped budgets' plans, bad budget files, and the report's W&B run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from intriguing.analysis.paper import Reported
from intriguing.analysis.report import (
    Compared,
    Image,
    Paragraph,
    Report,
    Section,
    Table,
    table_records,
)
from intriguing.configs import ConfigError
from intriguing.configs.budget import load_budget
from intriguing.pipelines.reproduce import log_report
from intriguing.pipelines.study import departures, plan_study

from .conftest import wandb_summary

TINY = Path(__file__).with_name("budgets") / "tiny.yaml"
SECTIONS = (
    "At a glance",
    "How this was run",
    "Table 1: MNIST models",
    "Table 2: cross-model generalisation",
    "Table 3: models trained on P1 and P2",
    "Table 4: cross-training-set generalisation",
    "Table 5: upper Lipschitz bounds",
    "Adversarial training (Section 4.2)",
    "Units versus random directions (Section 3)",
    "Training runs",
    "Budget",
)
FIGURES = (
    "table1_distortions",
    "table2_heatmap",
    "table2_difference",
    "table2_examples",
    "table3_distortions",
    "table4_heatmap",
    "table4_difference",
    "table4_examples",
    "units_unit",
    "units_random",
    "units_purity",
)


def _files(folder: Path, pattern: str) -> dict[str, int]:
    """Each matching file below ``folder`` and its modification time (ns)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob(pattern)}


@pytest.mark.slow  # about 80 s: the whole study end to end on a tiny budget
def test_tiny_budget_writes_both_reports_then_resumes_without_redoing_anything(
    run_cli, tmp_path: Path
):
    runs, cache, out = tmp_path / "runs", tmp_path / "cache", tmp_path / "report"
    words = [
        "reproduce",
        "--budget",
        str(TINY),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-progress",
        f"output_dir={runs}",
        "logger=none",
    ]
    first = run_cli(*words)
    assert first.code == 0, first.err
    # 6 + 3 + 2 seeds x (baseline + 2 backfeed variants) + conv
    assert first.out.count(": training (no finished run") == 16

    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"\n## {title}\n" in markdown
        assert f"<h2>{title}</h2>" in page
    # Every measured figure beside the paper's, and the budget's departures stated.
    assert "| FC10(1e-4) | 1e-4 | " in markdown and "6.7%†" in markdown
    assert "uses smaller budgets and subsets than the paper" in markdown
    assert "data.train_subset=512 (preset: None)" in markdown
    assert markdown.count("n/a") >= 8  # clean rows, Table 4's distortion column, ...
    for name in FIGURES:
        assert name in json.loads((out / "results.json").read_text())["figures"]
    # The page stands alone: every figure embedded, no outside resource of any kind.
    assert page.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    # Figures linked from the markdown exist beside it.
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / link).is_file(), link
    results = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in results["table1"]] == [
        "FC10(1e-4)",
        "FC10(1e-2)",
        "FC10(1)",
        "FC100-100-10",
        "FC200-200-10",
        "AE400-10",
    ]
    for row in results["table1"]:  # train error on the 512 images trained on, test on 10k
        assert row["train_examples"] == 512 and row["test_examples"] == 10_000
        assert row["distortion_examples"] == 16 and row["min_distortion_success"] > 0.5
    variants = results["adversarial_training"]
    assert [v["experiment"] for v in variants] == ["backfeed-fc100", "backfeed-fc100-fgsm"]
    for variant in variants:  # 2 seeds x with/without, the baseline's figures shared
        assert [(r["arm"], r["seed"]) for r in variant["runs"]] == [
            ("backfeed", 0),
            ("backfeed", 1),
            ("baseline", 0),
            ("baseline", 1),
        ]
        assert all(0 <= r["test_error"] <= 1 for r in variant["runs"])
    baselines = [[r for r in v["runs"] if r["arm"] == "baseline"] for v in variants]
    assert baselines[0] == [{**r, "experiment": "backfeed-fc100"} for r in baselines[1]]
    # A row per variant beside the baseline, in the section and in the headline table.
    section = markdown.split("## Adversarial training (Section 4.2)")[1].split("\n## ")[0]
    headline = markdown.split("## At a glance")[1].split("\n## ")[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| Without backf")]
    assert row.startswith("| Without backfeeding (weight decay only) | ") and "/ 1.6% (" in row
    for name, pool in (
        (
            "backfeed-fc100",
            "L-BFGS pools at input, fc1 and fc2, taking turns, refreshed every 50 steps",
        ),
        ("backfeed-fc100-fgsm", "FGSM pool at input, refreshed every 20 steps"),
    ):
        (row,) = [line for line in section.splitlines() if line.startswith(f"| `{name}`: ")]
        assert row.startswith(f"| `{name}`: {pool} | ") and "/ < 1.2% (" in row
        assert f"| Adversarial training, `{name}` ({pool}): clean test error (mean " in headline
        assert section.count(f"| `{name}` | ") == 2  # per seed
        assert f"- `{name}`: " in section  # its settings
    assert section.count("| without backfeeding | ") == 2
    assert "| Same network without backfeeding, weight decay only (mean of 2 seeds) | " in headline

    summaries = _files(runs, "*/*/summary.json")
    checkpoints = _files(runs, "*/*/checkpoints/*.ckpt")
    cached = _files(cache, "*.pt")
    assert len(summaries) == 16 and len(cached) == 9 + 9  # distortion sets + transfer sets

    # Interrupted after one model was lost: only that one is trained and attacked again.
    (lost,) = [p for p in runs.glob("fc10-1/*") if p.is_dir()]
    shutil.rmtree(lost)
    again = run_cli(*words)
    assert again.code == 0, again.err
    trained = re.findall(r"\] (\S+): training", again.out)
    assert trained == ["fc10-1"]
    assert again.out.count(": reusing ") == 15
    made = re.findall(r"\] (\S+): made, success", again.out)
    assert made == ["FC10(1)"]  # its new checkpoint's set; every other set from the cache
    assert again.out.count(": from the cache, success") == 8
    assert "FC10(1): train error" in again.out and again.out.count(", attacked)") == 1
    now = _files(runs, "*/*/summary.json")
    assert {k: v for k, v in now.items() if not k.startswith("fc10-1/")} == {
        k: v for k, v in summaries.items() if not k.startswith("fc10-1/")
    }
    assert {k: v for k, v in _files(runs, "*/*/checkpoints/*.ckpt").items()} != checkpoints
    for key, stamp in cached.items():  # no cached set was rewritten
        assert _files(cache, "*.pt")[key] == stamp


def test_shipped_budgets_plan_the_papers_runs():
    quick = plan_study(load_budget("quick"), ["logger=none"], group="g")
    keys = [run.key for run in quick.runs()]
    assert keys == [
        "fc10-1e-4",
        "fc10-1e-2",
        "fc10-1",
        "fc100-100-10",
        "fc200-200-10",
        "ae400-10",
        "fc100-100-10-p1",
        "fc123-456-10-p1",
        "fc100-100-10-p2",
        "backfeed-fc100-baseline/seed0",
        "backfeed-fc100/seed0",
        "backfeed-fc100-fgsm/seed0",
        "backfeed-fc100-fgsm-fresh/seed0",
        "backfeed-fc100-baseline/seed1",
        "backfeed-fc100/seed1",
        "backfeed-fc100-fgsm/seed1",
        "backfeed-fc100-fgsm-fresh/seed1",
        "backfeed-fc100-baseline/seed2",
        "backfeed-fc100/seed2",
        "backfeed-fc100-fgsm/seed2",
        "backfeed-fc100-fgsm-fresh/seed2",
        "conv",
    ]
    configs = {run.key: run.config for run in quick.runs()}
    assert configs["fc10-1"].trainer.max_epochs == 15  # its preset
    assert configs["fc100-100-10"].trainer.max_epochs == 20
    assert configs["conv"].data.train_subset == 20000
    assert configs["backfeed-fc100/seed1"].seed == 1
    assert configs["backfeed-fc100/seed1"].backfeed.enabled
    assert not configs["backfeed-fc100-baseline/seed1"].backfeed.enabled
    assert configs["backfeed-fc100-fgsm/seed1"].backfeed.generator.name == "fgsm"
    assert configs["backfeed-fc100-fgsm-fresh/seed1"].backfeed.refresh_every_n_steps == 1
    # Robust error on 100 of the 1,000 evaluated images, for time, baseline included.
    assert configs["backfeed-fc100-baseline/seed1"].evaluation.robust_subset == 100
    assert configs["backfeed-fc100-fgsm/seed1"].evaluation.subset == 1000
    variants = ["backfeed-fc100", "backfeed-fc100-fgsm", "backfeed-fc100-fgsm-fresh"]
    for key in variants:  # all against one baseline
        assert configs[f"{key}/seed2"].trainer.max_epochs == 15
        assert configs[f"{key}/seed2"].seed == 2
    assert [v.experiment for v in quick.variants] == variants
    assert {str(c.logger.group) for c in configs.values()} == {"g"}
    roles = {key: config.logger.job_type for key, config in configs.items()}  # W&B job types
    assert roles["fc10-1"] == "table1" and roles["fc100-100-10-p1"] == "table3"
    assert roles["backfeed-fc100/seed1"] == "backfeed" and roles["conv"] == "units"
    assert roles["backfeed-fc100-baseline/seed1"] == "baseline"
    assert departures(quick)  # quick says how it departs from the paper

    full = plan_study(load_budget("full"), [], group="g")
    assert len(full.baselines) == 3 and full.units_backfeed is not None
    assert [v.experiment for v in full.variants] == variants
    assert full.units_backfeed.experiment == "backfeed-conv"
    assert departures(full) == []  # presets as shipped, whole data sets
    for run in full.runs():  # each run is its preset, plus the W&B group only
        assert run.config.trainer.max_epochs > 1 and run.config.data.train_subset is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("distortion: {exampels: 5}\n", "distortion.exampels"),
        ("transfer: {examples: many}\n", "transfer.examples"),
        ("units: {top_k: 0}\n", "units.top_k=0"),
        ("training: {experiments: {fc99: [trainer.max_epochs=1]}}\n", "training.experiments.fc99"),
        ("adversarial_training: {seeds: []}\n", "adversarial_training.seeds"),
        ("adversarial_training: {experiments: []}\n", "adversarial_training.experiments"),
        ("adversarial_training: {experiment: backfeed-fc100}\n", "adversarial_training.experiment"),
        (
            "adversarial_training: {experiments: [backfeed-fc100, backfeed-fc1000]}\n",
            "adversarial_training.experiments=backfeed-fc1000: no such experiment preset",
        ),
        (
            "adversarial_training: {experiments: [backfeed-fc100, fc100-100-10]}\n",
            "fc100-100-10's backfeed callback is off",
        ),
        (
            "adversarial_training: {experiments: [backfeed-fc100, backfeed-conv]}\n",
            "backfeed-fc100 and backfeed-conv are compared with one baseline",
        ),
        (
            "training: {experiments: {backfeed-fc100-fgsm: [trainer.max_epochs=3]}}\n",
            "they also differ in trainer.max_epochs (30 and 3)",
        ),
        ("distortion: {attack: {name: fgsm}}\n", "distortion.attack.name=fgsm"),
        ("spectral: {models: [demo]}\n", "spectral.models: demo is not a model of the study"),
        ("units: {layer: conv9}\ntraining: {overrides: [nonsense=1]}\n", "nonsense"),
    ],
)
def test_bad_budget_file_fails_naming_the_key(run_cli, tmp_path: Path, content, message):
    budget = tmp_path / "bad.yaml"
    budget.write_text(content)
    outcome = run_cli("reproduce", "--budget", str(budget), f"output_dir={tmp_path}")
    assert outcome.code == 2
    assert message in outcome.err, outcome.err
    assert "Traceback" not in outcome.err
    assert not list(tmp_path.glob("*/*/summary.json"))  # nothing was trained


def test_unknown_budget_name_lists_the_shipped_ones(run_cli):
    outcome = run_cli("reproduce", "--budget", "huge")
    assert outcome.code == 2 and "full, quick" in outcome.err


# ---------------------------------------------------------------------------- report


def _report(tmp_path: Path) -> Report:
    figure = tmp_path / "plot.png"
    figure.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    table = Table(
        ["Model", "Test error", "Distortion"],
        [
            ["A | B", Compared(0.0173, Reported(0.0164, True)), Compared(0.05, None, False)],
            ["C", Compared(0.25, Reported(0.2)), Compared(0.061, Reported(0.058), False)],
        ],
        caption="A table",
    )
    return Report(
        "Title <&>",
        [Paragraph("Summary with **bold** and `code`")],
        [Section("First part", [table, Image(figure, "A plot")])],
    )


def test_compared_cells_show_ours_the_paper_and_the_difference(tmp_path: Path):
    markdown = _report(tmp_path).to_markdown(tmp_path)
    assert "| A \\| B | 1.73% / 1.64%† (+0.09 pp) | 0.050 / n/a |" in markdown
    assert "| C | 25.0% / 20% (+5.0 pp) | 0.061 / 0.058 (+0.003) |" in markdown
    assert "![A plot](plot.png)" in markdown
    columns, rows = table_records(_report(tmp_path).sections[0].blocks[0])  # type: ignore[arg-type]
    assert columns == [
        "Model",
        "Test error",
        "Test error (paper)",
        "Test error (diff)",
        "Distortion",
        "Distortion (paper)",
        "Distortion (diff)",
    ]
    assert rows[0] == ["A | B", "1.73%", "1.64%†", "+0.09 pp", "0.050", "n/a", ""]


def test_html_is_escaped_and_embeds_its_figures(tmp_path: Path):
    page = _report(tmp_path).to_html()
    assert "<title>Title &lt;&amp;&gt;</title>" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert 'href="#first-part"' in page and '<section id="first-part">' in page
    assert 'src="data:image/png;base64,iVBORw0KGgpmYWtl"' in page
    assert '<span class="paper">1.64%†</span>' in page
    assert '<span class="paper none">n/a</span>' in page


def test_report_is_logged_to_wandb_as_html_and_tables(tmp_path: Path):
    report = _report(tmp_path)
    html = tmp_path / "report.html"
    html.write_text(report.to_html())
    results = SimpleNamespace(
        budget="tiny", departures=[], seconds=12.0, table1=[], adversarial_training=[]
    )
    log_report(report, results, {"html": html}, project="intriguing", group="g")  # type: ignore[arg-type]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    summary = wandb_summary(run_dir)["summary"]
    assert summary["report"]["_type"] == "html-file"
    assert summary["tables/first-part"]["_type"] == "table-file"
    assert summary["tables/first-part"]["nrows"] == 2
    assert summary["seconds"] == 12.0


def test_a_missing_budget_file_is_refused():
    with pytest.raises(ConfigError, match="no such preset or file"):
        load_budget("nowhere.yaml")


def test_adversarial_training_section_has_a_row_per_variant_beside_the_shared_baseline():
    from intriguing.analysis.report import _adversarial_training_section
    from intriguing.analysis.reproduction import SeedComparison

    baseline = [{"test_error": e, "eval/adversarial_error": 0.8} for e in (0.017, 0.016, 0.019)]

    def variant(name: str, errors: tuple[float, ...], adversarial: float) -> SeedComparison:
        runs = [{"test_error": e, "eval/adversarial_error": adversarial} for e in errors]
        return SeedComparison(
            seeds=[0, 1, 2],
            runs={"backfeed": runs, "baseline": baseline},
            experiment=name,
            description=f"{name} pool",
            settings=f"{name} settings",
            attack="FGSM",
            examples=100,
        )

    lbfgs = variant("lbfgs", (0.026, 0.027, 0.025), 0.25)
    fgsm = variant("fgsm", (0.014, 0.013, 0.015), 0.18)
    fgsm.runs["backfeed"][2]["eval/adversarial_error"] = float("nan")  # one seed lacks it
    section = _adversarial_training_section(SimpleNamespace(adversarial_training=[lbfgs, fgsm]))  # type: ignore[arg-type]
    table = next(b for b in section.blocks if isinstance(b, Table))
    columns, rows = table_records(table)
    assert [row[0] for row in rows] == [
        "Without backfeeding (weight decay only)",
        "lbfgs: lbfgs pool",
        "fgsm: fgsm pool",
    ]
    by_name = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    base = by_name["Without backfeeding (weight decay only)"]
    assert base["Clean test error: mean ± std"] == "1.73% ± 0.15 pp"
    assert base["Clean test error vs paper (paper)"] == "1.6%"
    first, second = by_name["lbfgs: lbfgs pool"], by_name["fgsm: fgsm pool"]
    assert first["Clean test error vs paper (paper)"] == "< 1.2%"
    assert first["Clean test error minus without backfeeding"] == "+0.87 pp"
    assert second["Clean test error minus without backfeeding"] == "-0.33 pp"
    assert second["Adversarial test error: mean ± std"] == "18.0% ± 0.00 pp (2 of 3 seeds)"
    per_seed = [b for b in section.blocks if isinstance(b, Table)][1]
    assert [(row[0], row[1]) for row in per_seed.rows][:4] == [
        ("without backfeeding", "0"),
        ("without backfeeding", "1"),
        ("without backfeeding", "2"),
        ("`lbfgs`", "0"),
    ]
    assert len(per_seed.rows) == 9
