"""Transfer tables: the diagonal, clean error, noise and magnified rows, the on-disk cache,
the table layouts and figures (small FC nets trained in a second on synthetic images)."""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

import intriguing.analysis.transfer as transfer
from intriguing.analysis.plots import figure_pixels, heatmap
from intriguing.analysis.transfer import (
    AdversarialCache,
    adversarial_set,
    checkpoint_names,
    clean_set,
    example_grid,
    magnified_set,
    noise_set,
    split_errors,
    transfer_study,
    transfer_table,
)
from intriguing.attacks import distortion
from intriguing.trainers import StagedNetwork, fully_connected

from .conftest import IMAGE_SHAPE, NUM_CLASSES, synthetic_images, train

LBFGS = {"name": "lbfgs", "search_steps": 5, "max_iterations": 50}


def _trained(hidden: list[int], seed: int) -> StagedNetwork:
    torch.manual_seed(seed)
    network = fully_connected(IMAGE_SHAPE, NUM_CLASSES, hidden=hidden)
    train(network, *synthetic_images(400, seed=10 + seed), steps=80)
    return network


@pytest.fixture(scope="module")
def zoo() -> dict[str, StagedNetwork]:
    return {"softmax": _trained([], 0), "mlp": _trained([32], 1), "wide": _trained([64, 32], 2)}


@pytest.fixture(scope="module")
def examples() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_images(48, seed=5)


@pytest.fixture
def checkpoints(zoo, tmp_path: Path) -> dict[str, Path]:
    """Files standing for the models' checkpoints (only their contents matter to the cache)."""
    paths = {}
    for name, network in zoo.items():
        paths[name] = tmp_path / f"{name}.ckpt"
        torch.save(network.state_dict(), paths[name])
    return paths


def test_diagonal_is_100_percent_for_an_attack_that_succeeds_on_every_example(zoo, examples):
    sets = [adversarial_set(net, *examples, LBFGS, name=name) for name, net in zoo.items()]
    assert all(s.success_rate == 1.0 for s in sets)  # the premise
    table = transfer_table(zoo, sets)
    for name in zoo:
        assert table.error(name, name) == 1.0
    # Off the diagonal the examples transfer only partly (they are minimal for their source).
    assert any(table.error(a, b) < 1.0 for a in zoo for b in zoo if a != b)
    for row, entry in zip(table.rows, sets, strict=True):
        assert row.distortion == pytest.approx(float(entry.distortion.mean()))
        assert 0 < row.distortion < 0.5


def test_failed_attacks_leave_the_example_clean_and_count_against_the_diagonal(zoo, examples):
    # A small FGSM step: some examples are fooled, others stay correctly classified.
    weak = {"name": "fgsm", "epsilon": 0.3}
    entry = adversarial_set(zoo["mlp"], *examples, weak, name="mlp")
    failed = ~entry.success
    assert failed.any() and entry.success.any(), entry.success_rate
    assert torch.equal(entry.perturbed[failed], examples[0][failed])
    table = transfer_table({"mlp": zoo["mlp"]}, [entry])
    assert table.error("mlp", "mlp") == pytest.approx(entry.success_rate)
    assert entry.mean_distortion == pytest.approx(float(entry.distortion[entry.success].mean()))


def test_clean_row_gives_each_model_its_clean_error(zoo, examples):
    images, labels = examples
    table = transfer_table(zoo, [clean_set(images, labels)])
    for name, network in zoo.items():
        with torch.no_grad():
            expected = (network(images).argmax(1) != labels).float().mean().item()
        assert table.error("Clean", name) == pytest.approx(expected)
    assert table.rows[0].distortion == 0.0


def test_noise_rows_use_the_stated_stddev(zoo):
    images = torch.full((200, *IMAGE_SHAPE), 0.5)  # mid-grey: clipping (5 sigma away) is rare
    labels = torch.arange(200) % NUM_CLASSES
    for stddev in (0.1, 0.3):
        row = noise_set(zoo["mlp"], images, labels, stddev=stddev, seed=3)
        noise = (row.perturbed - images).flatten()
        if stddev == 0.1:
            assert noise.std().item() == pytest.approx(0.1, rel=0.02)
            assert noise.mean().item() == pytest.approx(0.0, abs=0.005)
        else:  # 0.3: clipped at 0.5 / 0.3 = 1.67 sigma, so the spread shrinks, as in the paper
            assert noise.abs().max().item() <= 0.5 + 1e-6
        assert row.name == f"Gaussian noise, stddev {stddev:g}"
        assert row.mean_distortion == pytest.approx(float(distortion(row.perturbed, images).mean()))
    # The same seed gives the same noise; another seed other noise.
    first = noise_set(zoo["mlp"], images, labels, stddev=0.1, seed=3).perturbed
    assert torch.equal(first, noise_set(zoo["mlp"], images, labels, stddev=0.1, seed=3).perturbed)
    assert not torch.equal(first, noise_set(zoo["mlp"], images, labels, stddev=0.1).perturbed)


def test_matched_noise_has_the_asked_distortion_after_clipping(zoo, examples):
    row = noise_set(zoo["mlp"], *examples, distortion=0.06)
    assert row.distortion.tolist() == pytest.approx([0.06] * len(row), abs=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        noise_set(zoo["mlp"], *examples, stddev=0.1, distortion=0.1)


def test_magnified_rows_rescale_each_perturbation_to_the_stated_distortion(zoo, examples):
    images, labels = examples
    source = adversarial_set(zoo["softmax"], images, labels, LBFGS, name="softmax")
    value = round(2 * source.mean_distortion, 3)  # as the paper's 0.06 -> 0.1, on these images
    magnified = magnified_set(source, value)
    assert magnified.name == "Magnified, made for softmax"
    assert magnified.source == "softmax" and magnified.kind == "magnified"
    assert magnified.distortion.tolist() == pytest.approx([value] * len(labels), abs=1e-5)
    assert magnified.perturbed.min() >= 0 and magnified.perturbed.max() <= 1
    # Same direction: where nothing was clipped, the new perturbation is a positive multiple.
    old = (source.perturbed - images).flatten(1)
    new = (magnified.perturbed - images).flatten(1)
    inside = ((magnified.perturbed > 0) & (magnified.perturbed < 1)).flatten(1)
    for k in range(len(labels)):
        ratio = (
            new[k][inside[k] & (old[k].abs() > 1e-4)] / old[k][inside[k] & (old[k].abs() > 1e-4)]
        )
        assert ratio.min() > 0
        assert ratio.max() == pytest.approx(ratio.min().item(), rel=1e-3)
    # Larger perturbations fool their source at least as often.
    table = transfer_table({"softmax": zoo["softmax"]}, [magnified])
    assert table.error(magnified.name, "softmax") == 1.0
    assert transfer.MAGNIFIED_NOTE.startswith("Magnified rows")
    assert "0.1" in transfer.magnified_note(0.1) and "intent" in transfer.magnified_note(0.1)


def test_magnification_leaves_unperturbed_examples_alone(examples):
    images, labels = examples
    perturbed = images.clone()
    perturbed[:10] = (images[:10] + 0.02).clamp(0, 1)
    entry = clean_set(images, labels)
    entry.perturbed = perturbed
    magnified = magnified_set(entry, 0.1)
    assert torch.equal(magnified.perturbed[10:], images[10:])
    assert magnified.counted.tolist() == [True] * 10 + [False] * (len(labels) - 10)
    assert magnified.mean_distortion == pytest.approx(0.1, abs=1e-5)


# ------------------------------------------------------------------------------ cache


def _cached(zoo, examples, checkpoints, cache, name="mlp", attack=LBFGS):
    return adversarial_set(
        zoo[name], *examples, attack, name=name, checkpoint=checkpoints[name], cache=cache
    )


def test_cache_is_reused_when_nothing_changed(zoo, examples, checkpoints, tmp_path, monkeypatch):
    cache = AdversarialCache(tmp_path / "cache")
    first = _cached(zoo, examples, checkpoints, cache)
    assert not first.cached and first.path == cache.path(first.key)
    assert first.path.is_file()
    assert not list(cache.root.glob("*.tmp"))  # the atomic write left no temporary file

    def no_attack(*args, **kwargs):
        raise AssertionError("the attack ran although the set was cached")

    monkeypatch.setattr(transfer, "attack_examples", no_attack)
    second = _cached(zoo, examples, checkpoints, cache)
    assert second.cached and second.key == first.key
    assert torch.equal(second.perturbed, first.perturbed)
    assert torch.equal(second.success, first.success)


@pytest.mark.parametrize("change", ["checkpoint", "attack", "examples", "seed"])
def test_cache_is_invalidated_when_a_checkpoint_or_setting_changes(
    change, zoo, examples, checkpoints, tmp_path
):
    cache = AdversarialCache(tmp_path / "cache")
    # PGD's random start makes the seed a setting that matters.
    attack = {"name": "pgd", "epsilon": 0.3, "steps": 3} if change == "seed" else LBFGS
    first = _cached(zoo, examples, checkpoints, cache, attack=attack)
    data, seed = examples, 0
    if change == "checkpoint":  # same file name, other weights
        torch.save(_trained([32], 7).state_dict(), checkpoints["mlp"])
    elif change == "attack":
        attack = {**LBFGS, "search_steps": 4}
    elif change == "examples":
        data = (examples[0][:-1], examples[1][:-1])
    else:
        seed = 1
    second = adversarial_set(
        zoo["mlp"], *data, attack, name="mlp", checkpoint=checkpoints["mlp"], cache=cache, seed=seed
    )
    assert not second.cached
    assert second.key != first.key
    assert sorted(cache.root.glob("*.pt")) == sorted([first.path, second.path])


def test_a_corrupt_or_unsafe_cache_entry_is_recomputed_not_trusted(
    zoo, examples, checkpoints, tmp_path
):
    cache = AdversarialCache(tmp_path / "cache")
    first = _cached(zoo, examples, checkpoints, cache)
    path = first.path
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.warns(UserWarning, match="unreadable.*recomputing"):
        again = _cached(zoo, examples, checkpoints, cache)
    assert not again.cached and torch.equal(again.perturbed, first.perturbed)
    assert path.read_bytes() != good[: len(good) // 2]  # rewritten

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path.write_bytes(pickle.dumps({"format": 1, "key": first.key, "x": Payload()}, protocol=2))
    with pytest.warns(UserWarning, match="recomputing"):
        assert not _cached(zoo, examples, checkpoints, cache).cached
    assert not marker.exists()  # refused, never executed

    content = torch.load(path, weights_only=True)
    content["perturbed"] = content["perturbed"] + 2.0  # outside the box
    torch.save(content, path)
    with pytest.warns(UserWarning, match="outside the box"):
        assert not _cached(zoo, examples, checkpoints, cache).cached

    content = torch.load(path, weights_only=True)
    content["labels"] = (content["labels"] + 1) % NUM_CLASSES
    torch.save(content, path)
    with pytest.warns(UserWarning, match="labels differ"):
        assert not _cached(zoo, examples, checkpoints, cache).cached
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cached(zoo, examples, checkpoints, cache).cached  # sound again


def test_hidden_layer_attacks_are_refused(zoo, examples):
    with pytest.raises(ValueError, match=r"attack\.layer"):
        adversarial_set(zoo["mlp"], *examples, {"name": "fgsm", "layer": "fc1"}, name="mlp")


# ------------------------------------------------------------------------------ tables


def test_markdown_and_csv_have_the_papers_layout(zoo, examples):
    sets = [adversarial_set(net, *examples, LBFGS, name=n) for n, net in zoo.items()]
    rows = [*sets, noise_set(zoo["mlp"], *examples, stddev=0.1)]
    table = transfer_table(zoo, rows, title="Table 2", notes=["a note"])
    lines = table.to_markdown().splitlines()
    assert lines[0] == "Table 2"
    assert lines[2] == "| Made for | softmax | mlp | wide | Av. distortion |"
    assert lines[4].startswith("| softmax | ") and lines[-1] == "- a note"
    assert "| Gaussian noise, stddev 0.1 |" in lines[7]
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["row"] for r in parsed] == [*zoo, "Gaussian noise, stddev 0.1"]
    for record, row in zip(parsed, table.rows, strict=True):
        assert [float(record[t]) for t in zoo] == pytest.approx(row.errors, abs=1e-6)
        assert float(record["av_distortion"]) == pytest.approx(row.distortion, abs=1e-6)
    assert parsed[-1]["kind"] == "noise" and parsed[-1]["success_rate"] == ""
    assert table.heatmap().axes  # draws


def test_split_errors_give_table_3(zoo, examples):
    other = synthetic_images(40, seed=9)
    errors = split_errors(
        {"mlp": zoo["mlp"]}, {"P1": examples, "P2": other}, distortions={"mlp": 0.06}
    )
    assert errors.to_markdown().splitlines()[0] == (
        "| Model | Error on P1 | Error on P2 | Av. min. distortion |"
    )
    with torch.no_grad():
        expected = (zoo["mlp"](other[0]).argmax(1) != other[1]).float().mean().item()
    assert errors.errors[0][1] == pytest.approx(expected)
    assert errors.distortion == [0.06]
    assert math.isnan(split_errors({"mlp": zoo["mlp"]}, {"P1": examples}).distortion[0])


def test_example_grid_shows_original_perturbation_and_adversarial_per_set(zoo, examples):
    sets = [adversarial_set(zoo[n], *examples, LBFGS, name=n) for n in ("softmax", "mlp")]
    figure = example_grid(sets, zoo, count=5)
    tiles = [axes for axes in figure.axes if axes.images]
    assert len(tiles) == 2 * 3 * 5
    captions = [axes.get_xlabel() for axes in tiles]
    assert all(c.startswith("pred ") for c in captions[:5] + captions[10:15])
    assert all(c.startswith("x") for c in captions[5:10])
    # Adversarial row: every shown example is misclassified by its source (red captions).
    colors = [axes.xaxis.label.get_color() for axes in tiles[10:15]]
    assert colors == ["red"] * 5


def test_checkpoint_names_use_the_experiment_folder():
    paths = ["out/fc10-1e-4/20250101-000000/checkpoints/last.ckpt", "a/b.ckpt", "c/b.ckpt"]
    assert checkpoint_names(paths) == ["fc10-1e-4", "b#1", "b#2"]


def test_heatmap_writes_every_cell_and_renders_to_pixels():
    values = torch.tensor([[1.0, 0.25], [0.5, float("nan")], [0.0, 0.125]])
    figure = heatmap(values, row_labels=["a", "b", "c"], col_labels=["x", "y"])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["100.0%", "25.0%", "50.0%", "0.0%", "12.5%"]  # NaN left blank
    pixels = figure_pixels(figure, dpi=50)
    width, height = figure.get_size_inches()
    assert pixels.dtype == torch.uint8
    assert pixels.shape[2] == 3
    assert pixels.shape[:2] == (pytest.approx(50 * height, abs=1), pytest.approx(50 * width, abs=1))
    with pytest.raises(ValueError, match="one per row and column label"):
        heatmap(values, row_labels=["a"], col_labels=["x", "y"])


# ------------------------------------------------------------------------------ a study


def test_transfer_study_builds_tables_3_and_4_and_reads_its_sets_back_from_the_cache(
    zoo, examples, checkpoints, tmp_path
):
    splits = {"P1": examples, "P2": synthetic_images(40, seed=9)}
    lines: list[str] = []
    common = dict(
        table=4,
        checkpoints=checkpoints,
        cache=AdversarialCache(tmp_path / "cache"),
        splits=splits,
        split_distortions={"softmax": 0.5},
        grid_examples=3,
        report=lines.append,
    )
    study = transfer_study(zoo, *examples, LBFGS, **common)
    assert [s.name for s in study.sources] == list(zoo)
    kinds = [row.kind for row in study.matrix.rows]
    assert kinds == ["adversarial"] * 3 + ["noise"] + ["magnified"] * 3 + ["noise", "clean"]
    for name in zoo:  # each set fools its own model on every example
        assert study.matrix.error(name, name) == pytest.approx(1.0)
    assert study.by_split is not None and study.by_split.splits == ["P1", "P2"]
    assert study.by_split.distortion[0] == 0.5 and math.isnan(study.by_split.distortion[1])
    assert len([a for a in study.grid.axes if a.images]) == (3 + 3) * 3 * 3
    assert len(lines) == 3 and all(": made, success" in line for line in lines)

    lines.clear()
    again = transfer_study(zoo, *examples, LBFGS, **common)
    assert all(": from the cache, success" in line for line in lines) and len(lines) == 3
    assert again.matrix.records() == study.matrix.records()


def test_transfer_study_leaves_out_matched_noise_when_no_attack_succeeded(zoo, examples):
    weak = {"name": "fgsm", "epsilon": 0.0}  # changes nothing: no adversarial example
    study = transfer_study(
        {"mlp": zoo["mlp"]}, *examples, weak, table=2, noise=[("matched", None)], clean_row=False
    )
    assert [row.kind for row in study.matrix.rows] == ["adversarial"]
    assert any("Matched noise: left out" in note for note in study.matrix.notes)
