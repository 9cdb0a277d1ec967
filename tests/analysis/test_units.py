"""Units versus random directions: purity, top-k selection, determinism, grids."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from intriguing.analysis.plots import GridLayout, save_figure
from intriguing.analysis.units import (
    analyse_units,
    bootstrap_ci,
    direction_grid,
    label_purity,
    permutation_test,
    random_directions,
)
from intriguing.trainers import StagedNetwork


def test_label_purity_on_a_constructed_example() -> None:
    labels = torch.tensor([[0, 0, 1, 2], [3, 3, 3, 3], [1, 2, 3, 0], [5, 1, 5, 1]])
    assert label_purity(labels).tolist() == [0.5, 1.0, 0.25, 0.5]
    with pytest.raises(ValueError, match="directions, k"):
        label_purity(torch.tensor([1, 2, 3]))


def test_random_directions_are_unit_vectors_and_seeded() -> None:
    first = random_directions(50, 7, generator=torch.Generator().manual_seed(3))
    again = random_directions(50, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert torch.allclose(first.norm(dim=1), torch.ones(7, dtype=torch.float64))


def test_permutation_test_and_bootstrap() -> None:
    generator = torch.Generator().manual_seed(0)
    same = torch.rand(200, generator=generator)
    other = torch.rand(200, generator=generator)
    assert permutation_test(same, other, permutations=2000, generator=generator) > 0.05
    shifted = other + 0.5
    p = permutation_test(same, shifted, permutations=2000, generator=generator)
    assert p == pytest.approx(1 / 2001)
    low, high = bootstrap_ci(same, resamples=1000, level=0.95, generator=generator)
    assert low < float(same.mean()) < high
    assert high - low == pytest.approx(2 * 1.96 * float(same.std()) / math.sqrt(200), rel=0.2)


def test_top_images_are_the_maximisers(trained_conv, image_set) -> None:
    images, labels = image_set
    analysis = analyse_units(
        trained_conv, "conv2", images, labels, directions=12, top_k=5, seed=1, batch_size=64
    )
    with torch.no_grad():
        h = trained_conv.activations(images, ["conv2"])["conv2"].flatten(1).double()
    for row, unit in enumerate(analysis.units.tolist()):
        expected = h[:, unit].topk(5).values
        assert torch.equal(h[analysis.unit_top[row], unit], expected)
    scores = h @ analysis.random_vectors.T
    for row in range(12):
        expected = scores[:, row].topk(5).values
        assert torch.allclose(scores[analysis.random_top[row], row], expected)
    assert analysis.unit_purity.tolist() == label_purity(labels[analysis.unit_top]).tolist()


def test_analysis_is_deterministic_for_a_fixed_seed(trained_conv, image_set) -> None:
    images, labels = image_set
    runs = [
        analyse_units(trained_conv, "fc1", images, labels, directions=10, seed=4, batch_size=b)
        for b in (400, 400, 37)
    ]
    for other in runs[1:]:
        assert torch.equal(runs[0].units, other.units)
        assert torch.equal(runs[0].unit_top, other.unit_top)
        assert torch.equal(runs[0].random_top, other.random_top)
        assert torch.equal(runs[0].baseline_purity, other.baseline_purity)
        assert runs[0].summary() == other.summary()
    different = analyse_units(trained_conv, "fc1", images, labels, directions=10, seed=5)
    assert not torch.equal(runs[0].random_vectors, different.random_vectors)


def test_trained_directions_are_far_purer_than_chance(trained_conv, image_set) -> None:
    images, labels = image_set
    analysis = analyse_units(trained_conv, "fc1", images, labels, directions=16, top_k=8)
    stats = analysis.stats
    assert stats["unit"].mean > stats["baseline"].mean + 0.2
    assert stats["random"].mean > stats["baseline"].mean + 0.2
    assert analysis.p_values["random_vs_baseline"] < 0.01
    summary = analysis.summary()
    assert summary["units/unit_count"] == len(analysis.units)
    table = analysis.to_markdown()
    assert "| Random directions | 16 |" in table
    assert "unit vs random" in table


def test_dead_units_are_skipped_and_counted() -> None:
    hidden = nn.Linear(4, 6)
    with torch.no_grad():
        hidden.weight[:2] = 0.0
        hidden.bias[:2] = -1.0  # units 0 and 1: always zero after the ReLU
    network = StagedNetwork(
        [("h", nn.Sequential(nn.Flatten(), hidden, nn.ReLU())), ("logits", nn.Linear(6, 3))],
        input_shape=(4,),
    )
    images = torch.rand(50, 4)
    labels = torch.arange(50) % 3
    analysis = analyse_units(network, "h", images, labels, directions=10, top_k=3)
    assert analysis.skipped_units >= 2
    assert not set(analysis.units.tolist()) & {0, 1}
    assert len(analysis.units) == 6 - analysis.skipped_units


def test_bad_inputs_are_refused(trained_conv, image_set) -> None:
    images, labels = image_set
    with pytest.raises(ValueError, match="unknown layer"):
        analyse_units(trained_conv, "conv9", images, labels)
    with pytest.raises(ValueError, match="network takes"):
        analyse_units(trained_conv, "fc1", images[:, :, :10], labels)
    with pytest.raises(ValueError, match="top_k=500"):
        analyse_units(trained_conv, "fc1", images, labels, top_k=500)
    with pytest.raises(ValueError, match="labels must be"):
        analyse_units(trained_conv, "fc1", images, labels.float())


def test_direction_grid_has_one_row_per_direction_and_k_labelled_columns(
    trained_conv, image_set, tmp_path
) -> None:
    images, labels = image_set
    analysis = analyse_units(trained_conv, "conv1", images, labels, directions=6, top_k=4)
    figure = direction_grid(analysis, images, labels, "random", rows=3)
    tiles = [axes for axes in figure.axes if axes.images]
    assert len(tiles) == 3 * 4
    captions = [axes.get_xlabel() for axes in tiles]
    assert captions == [str(int(labels[i])) for i in analysis.random_top[:3].flatten()]
    path = save_figure(figure, tmp_path / "random.png", dpi=50)
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    layout = GridLayout()
    assert width == pytest.approx(50 * (layout.row_title + 4 * layout.tile), abs=1)
    assert height == pytest.approx(50 * (layout.title + 3 * (layout.tile + layout.caption)), abs=1)
    unit_figure = direction_grid(analysis, images, labels, "unit", rows=10)
    assert len([a for a in unit_figure.axes if a.images]) == len(analysis.units[:10]) * 4
    assert analysis.unit_name(int(analysis.units[0])).startswith("unit c")
