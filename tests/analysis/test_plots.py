"""Labelled image grids and histograms: layout, sizes, refusals."""

from __future__ import annotations

import itertools

import matplotlib.image
import pytest
import torch

from intriguing.analysis.plots import GridLayout, histograms, image_grid, save_figure


@pytest.mark.parametrize(("rows", "cols", "channels"), [(2, 5, 1), (4, 3, 3), (1, 1, 1)])
def test_grid_is_rows_by_cols_tiles_and_the_png_has_the_laid_out_size(
    rows: int, cols: int, channels: int, tmp_path
) -> None:
    images = torch.rand(rows, cols, channels, 6, 6)
    captions = [[f"{r},{c}" for c in range(cols)] for r in range(rows)]
    figure = image_grid(
        images, captions=captions, row_titles=[f"row {r}" for r in range(rows)], title="t"
    )
    tiles = [axes for axes in figure.axes if axes.images]
    assert len(tiles) == rows * cols
    # Row-major order: x grows along a row, y falls from one row to the next.
    boxes = [axes.get_position() for axes in tiles]
    for r in range(rows):
        row = boxes[r * cols : (r + 1) * cols]
        assert all(a.x0 < b.x0 for a, b in itertools.pairwise(row))
        assert len({round(box.y0, 9) for box in row}) == 1
        if r:
            assert row[0].y0 < boxes[(r - 1) * cols].y0
    assert [axes.get_xlabel() for axes in tiles] == [c for row in captions for c in row]
    path = save_figure(figure, tmp_path / "grid.png", dpi=40)
    height, width = matplotlib.image.imread(path).shape[:2]
    layout = GridLayout()
    assert width == pytest.approx(40 * (layout.row_title + cols * layout.tile), abs=1)
    expected_height = 40 * (layout.title + rows * (layout.tile + layout.caption))
    assert height == pytest.approx(expected_height, abs=1)


def test_grid_without_titles_is_only_tiles(tmp_path) -> None:
    layout = GridLayout(tile=0.5, caption=0.0, gap=0.0)
    figure = image_grid(torch.rand(3, 2, 1, 4, 4), layout=layout)
    height, width = matplotlib.image.imread(save_figure(figure, tmp_path / "g.png")).shape[:2]
    assert (height, width) == (150, 100)


def test_grid_shows_signed_images_over_their_range() -> None:
    figure = image_grid(torch.randn(1, 2, 1, 4, 4), value_range=(-1, 1), cmap="RdBu")
    low, high = figure.axes[0].images[0].get_clim()
    assert (low, high) == (-1, 1)


def test_grid_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="rows, cols, C, H, W"):
        image_grid(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(1\|3, H, W\)"):
        image_grid(torch.rand(1, 1, 2, 4, 4))
    with pytest.raises(ValueError, match="captions must be 1 rows of 2"):
        image_grid(torch.rand(1, 2, 1, 4, 4), captions=[["a"]])
    with pytest.raises(ValueError, match="row_titles"):
        image_grid(torch.rand(1, 2, 1, 4, 4), row_titles=["a", "b"])


def test_histograms_name_each_sample_with_its_mean() -> None:
    figure = histograms({"a": [0.0, 1.0], "b": torch.tensor([0.5, 0.5])}, bins=4)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["a (0.5)", "b (0.5)"]
