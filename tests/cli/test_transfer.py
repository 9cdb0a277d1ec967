"""``intriguing transfer``: Table 2 and Tables 3/4 from checkpoints or a zoo preset, the
cache across runs, refused checkpoints (missing, other inputs, unsafe), and the W&B run."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
import torch

from intriguing.cli.main import main
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.zoo import load_zoo
from intriguing.trainers import load_classifier

from .conftest import read_summary, wandb_summary

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
QUICK = [
    "trainer.max_epochs=1",
    "data.train_subset=1024",
    "data.test_subset=100",
    "logger=none",
    "trainer.enable_progress_bar=false",
    f"data.data_dir={REPO_DATA}",
]
ATTACK = ["--attack", "lbfgs", "--attack-option", "search_steps=5"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small MNIST models trained by `intriguing train` (softmax regression, an MLP)."""
    out = tmp_path_factory.mktemp("zoo")
    paths = []
    for experiment in ("fc10-1e-4", "fc100-100-10"):
        assert main(["train", f"experiment={experiment}", f"output_dir={out}", *QUICK]) == 0
        paths.append(Path(read_summary(out, experiment)["checkpoint"]))
    return paths


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["row"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def _test_images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = build_datamodule({"name": "mnist", "data_dir": str(REPO_DATA)})
    images, labels = datamodule.tensors("test")
    return images[:count], labels[:count]


def test_table2_from_checkpoints_then_from_the_cache(run_cli, checkpoints, tmp_path: Path):
    common = [
        "transfer",
        "--checkpoints",
        *map(str, checkpoints),
        "--subset",
        "30",
        *ATTACK,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    first = run_cli(*common, "--out", str(tmp_path / "first"))
    assert first.code == 0, first.err
    assert first.out.count(": made, success") == 2
    names = ["fc10-1e-4", "fc100-100-10"]
    assert f"| Made for | {' | '.join(names)} | Av. distortion |" in first.out
    out = tmp_path / "first"
    for name in ("table2.md", "table2.csv", "table2_heatmap.png", "table2_examples.png"):
        assert (out / name).stat().st_size > 0
    rows = _rows(out / "table2.csv")
    assert list(rows) == [
        *names,
        "Gaussian noise, stddev 0.1",
        "Gaussian noise, stddev 0.3",
        "Clean (no perturbation)",
    ]
    for name in names:  # L-BFGS fools its own model on every example
        assert float(rows[name]["success_rate"]) == 1.0
        assert float(rows[name][name]) == 1.0
        assert 0 < float(rows[name]["av_distortion"]) < 0.2
    images, labels = _test_images(30)
    for name, path in zip(names, checkpoints, strict=True):
        with torch.no_grad():
            clean = (load_classifier(path)(images).argmax(1) != labels).float().mean().item()
        assert float(rows["Clean (no perturbation)"][name]) == pytest.approx(clean, abs=1e-6)
    assert 0.18 < float(rows["Gaussian noise, stddev 0.3"]["av_distortion"]) < 0.3  # clipped

    second = run_cli(*common, "--out", str(tmp_path / "second"))
    assert second.code == 0, second.err
    assert second.out.count(": from the cache, success") == 2
    assert (tmp_path / "second" / "table2.csv").read_text() == (out / "table2.csv").read_text()


def test_table4_layout_with_table3_matched_noise_and_magnified_rows(
    run_cli, checkpoints, tmp_path: Path
):
    outcome = run_cli(
        "transfer",
        "--checkpoints",
        *map(str, checkpoints),
        "--names",
        "A",
        "B",
        "--table",
        "4",
        "--subset",
        "20",
        *ATTACK,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert outcome.code == 0, outcome.err
    table3 = (tmp_path / "table3.md").read_text()
    assert "| Model | Error on P1 | Error on P2 | Error on test | Av. min. distortion |" in table3
    rows = _rows(tmp_path / "table4.csv")
    kinds = [row["kind"] for row in rows.values()]
    assert kinds == ["adversarial"] * 2 + ["noise"] + ["magnified"] * 2 + ["noise", "clean"]
    adversarial = [float(rows[n]["av_distortion"]) for n in ("A", "B")]
    matched = next(name for name in rows if name.endswith("(matched)"))
    assert float(rows[matched]["av_distortion"]) == pytest.approx(sum(adversarial) / 2, abs=1e-4)
    for name in ("Magnified, made for A", "Magnified, made for B"):
        assert float(rows[name]["av_distortion"]) == pytest.approx(0.1, abs=1e-4)
    assert "the paper writes x + 0.1 (x' - x) / ||x' - x||" in outcome.out.lower()


def test_missing_checkpoint_fails_naming_it(run_cli, checkpoints, tmp_path: Path):
    missing = tmp_path / "nowhere" / "model.ckpt"
    outcome = run_cli("transfer", "--checkpoints", str(checkpoints[0]), str(missing))
    assert outcome.code == 2
    assert str(missing) in outcome.err and "no such file" in outcome.err
    assert "Traceback" not in outcome.err


def test_checkpoint_for_other_inputs_fails_naming_it(
    run_cli, checkpoints, checkpoint_for_other_inputs: Path
):
    path = checkpoint_for_other_inputs
    outcome = run_cli("transfer", "--checkpoints", str(checkpoints[0]), str(path))
    assert outcome.code == 2
    assert (
        str(path) in outcome.err and "(1, 12, 12)" in outcome.err and "(1, 28, 28)" in outcome.err
    )


class _Payload:
    """Unpickling this runs os.mkdir: what weights_only loading must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_checkpoint_needing_code_to_load_is_refused(run_cli, checkpoints, tmp_path: Path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "extra": _Payload(marker)}, path)
    outcome = run_cli("transfer", "--checkpoints", str(checkpoints[0]), str(path))
    assert outcome.code == 2
    assert str(path) in outcome.err and "refused" in outcome.err
    assert not marker.exists()


def test_wandb_run_holds_the_table_the_images_and_the_adversarial_sets(
    run_cli, checkpoints, tmp_path: Path
):
    outcome = run_cli(
        "transfer",
        "--checkpoints",
        *map(str, checkpoints),
        "--subset",
        "10",
        *ATTACK,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--wandb",
    )
    assert outcome.code == 0, outcome.err
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    summary = wandb_summary(run_dir)["summary"]
    assert summary["transfer/table2"]["_type"] == "table-file"
    assert summary["transfer/table2"]["nrows"] == 5
    for key in ("transfer/heatmap", "transfer/examples"):
        assert summary[key]["_type"] == "image-file"
    assert summary["transfer/error/fc10-1e-4/fc10-1e-4"] == 1.0
    # Each source's adversarial set is logged as a dataset artifact holding the cache file.
    record = next(run_dir.glob("run-*.wandb")).read_bytes()
    for name in ("adversarial-fc10-1e-4", "adversarial-fc100-100-10"):
        assert name.encode() in record
    assert b"dataset" in record
    for cached in (tmp_path / "cache").glob("*.pt"):
        assert cached.name.encode() in record


def test_bad_arguments_exit_2(run_cli, checkpoints):
    ckpt = str(checkpoints[0])
    for words, message in [
        (["--noise", "loud"], "--noise 'loud'"),
        (["--attack-option", "speed=3"], "--attack-option speed"),
        (["--names", "a", "b"], "2 names for 1 checkpoints"),
        (["trainer.max_epochs=1"], "overrides are for --zoo"),
        (["--subset", "0"], "--subset 0"),
    ]:
        outcome = run_cli("transfer", "--checkpoints", ckpt, *words)
        assert outcome.code == 2, words
        assert message in outcome.err, (words, outcome.err)


# -------------------------------------------------------------------------------- zoos


def test_zoo_trains_what_is_missing_and_reuses_finished_runs(run_cli, tmp_path: Path):
    zoo = tmp_path / "tiny.yaml"
    zoo.write_text(
        "table: 2\nsplit: test\nmodels:\n"
        "  - {experiment: fc10-1e-4, name: soft}\n"
        "  - {experiment: fc10-1, name: stiff}\n"
    )
    out = tmp_path / "runs"
    words = ["transfer", "--zoo", str(zoo), "--subset", "10", "--no-progress", *ATTACK]
    words += ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "t")]
    overrides = [*QUICK, f"output_dir={out}"]

    first = run_cli(*words, *overrides)
    assert first.code == 0, first.err
    assert first.out.count(": training") == 2
    assert "| Made for | soft | stiff | Av. distortion |" in first.out
    runs = sorted(out.glob("*/*/summary.json"))
    assert len(runs) == 2

    again = run_cli(*words, *overrides)
    assert again.code == 0, again.err
    assert again.out.count(": reusing") == 2 and ": training" not in again.out
    assert again.out.count(": from the cache") == 2
    assert sorted(out.glob("*/*/summary.json")) == runs

    changed = run_cli(*words, *overrides, "trainer.max_epochs=2")  # another config: retrain
    assert changed.code == 0, changed.err
    assert changed.out.count(": training") == 2
    assert len(list(out.glob("*/*/summary.json"))) == 4


def test_zoo_presets_name_the_papers_models():
    table2 = load_zoo("table2")
    assert table2.table == 2 and table2.split == "test"
    assert table2.names == [
        "FC10(1e-4)",
        "FC10(1e-2)",
        "FC10(1)",
        "FC100-100-10",
        "FC200-200-10",
        "AE400-10",
    ]
    table4 = load_zoo("table4")
    assert table4.table == 4
    assert table4.experiments == ["fc100-100-10-p1", "fc123-456-10-p1", "fc100-100-10-p2"]
    with pytest.raises(ConfigError, match="no such preset"):
        load_zoo("table9")


def test_zoo_refuses_a_run_without_checkpoint(run_cli, tmp_path: Path):
    zoo = tmp_path / "one.yaml"
    zoo.write_text("models: [fc10-1e-4]\n")
    outcome = run_cli(
        "transfer", "--zoo", str(zoo), *QUICK, f"output_dir={tmp_path}", "checkpoint.enabled=false"
    )
    assert outcome.code == 2
    assert "saved no checkpoint" in outcome.err


@pytest.mark.slow
def test_table2_zoo_preset_trains_the_six_models_and_builds_the_table(run_cli, tmp_path: Path):
    outcome = run_cli(
        "transfer",
        "--zoo",
        "table2",
        "--subset",
        "20",
        *ATTACK,
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "table"),
        *QUICK,
        "model.autoencoder.pretrain_epochs=1",
        f"output_dir={tmp_path / 'runs'}",
    )
    assert outcome.code == 0, outcome.err
    rows = _rows(tmp_path / "table" / "table2.csv")
    assert list(rows)[:6] == load_zoo("table2").names
    for name in load_zoo("table2").names:
        assert float(rows[name][name]) == pytest.approx(float(rows[name]["success_rate"]))
