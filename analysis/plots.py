"""Figures for W&B and the report: labelled image grids and overlaid histograms.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, no display
needed). Grids are laid out on a fixed raster (:class:`GridLayout`, in inches): every tile is
``tile`` square with a caption strip below it, so a PNG saved at ``dpi`` is, to within a pixel,
``dpi * (row_title + cols * tile)`` wide and ``dpi * (title + rows * (tile + caption))`` high.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor


@dataclass(frozen=True)
class GridLayout:
    """Sizes of an image grid, in inches: each tile holds an image ``tile - gap`` square."""

    tile: float = 1.0
    gap: float = 0.06
    caption: float = 0.22
    row_title: float = 1.6
    title: float = 0.4

    def figure_size(self, rows: int, cols: int, *, row_titles: bool, title: bool) -> tuple:
        width = (self.row_title if row_titles else 0.0) + cols * self.tile
        height = (self.title if title else 0.0) + rows * (self.tile + self.caption)
        return width, height


def _as_image(tile: Tensor) -> Tensor:
    """``(C, H, W)`` with C 1 or 3 -> an ``(H, W)`` or ``(H, W, 3)`` array for ``imshow``."""
    if tile.ndim != 3 or tile.shape[0] not in (1, 3):
        raise ValueError(f"image tiles must have shape (1|3, H, W), got {tuple(tile.shape)}")
    tile = tile.detach().float().cpu()
    return tile[0] if tile.shape[0] == 1 else tile.permute(1, 2, 0)


def image_grid(
    images: Tensor,
    *,
    captions: Sequence[Sequence[str]] | None = None,
    caption_colors: Sequence[Sequence[str]] | None = None,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    cmap: str = "gray",
    layout: GridLayout = GridLayout(),
) -> Figure:
    """A grid of images, one row per entry of ``images`` (``rows x cols x C x H x W``).

    ``captions[r][c]`` is written under tile ``(r, c)`` (for example its label), in
    ``caption_colors[r][c]`` if given; ``row_titles[r]`` left of row ``r``. Grayscale tiles use
    ``cmap`` over ``value_range`` (a signed range with a diverging map shows perturbations);
    colour tiles are clipped to ``value_range`` and rescaled to ``[0, 1]``.
    """
    if images.ndim != 5:
        raise ValueError(f"images must have shape (rows, cols, C, H, W), got {tuple(images.shape)}")
    rows, cols = int(images.shape[0]), int(images.shape[1])
    for name, table in (("captions", captions), ("caption_colors", caption_colors)):
        if table is not None and (len(table) != rows or any(len(row) != cols for row in table)):
            raise ValueError(f"{name} must be {rows} rows of {cols} strings")
    if row_titles is not None and len(row_titles) != rows:
        raise ValueError(f"row_titles must have {rows} entries, got {len(row_titles)}")
    width, height = layout.figure_size(
        rows, cols, row_titles=row_titles is not None, title=title is not None
    )
    figure = Figure(figsize=(width, height))
    left = layout.row_title if row_titles is not None else 0.0
    top = layout.title if title is not None else 0.0
    low, high = value_range
    for r in range(rows):
        y = height - top - (r + 1) * (layout.tile + layout.caption) + layout.caption
        for c in range(cols):
            x = left + c * layout.tile
            side = layout.tile - layout.gap
            axes = figure.add_axes(
                ((x + layout.gap / 2) / width, y / height, side / width, side / height)
            )
            tile = _as_image(images[r, c])
            if tile.ndim == 2:
                axes.imshow(tile.numpy(), cmap=cmap, vmin=low, vmax=high)
            else:
                scaled = ((tile.clamp(low, high) - low) / max(high - low, 1e-12)).numpy()
                axes.imshow(scaled)
            axes.set_xticks([])
            axes.set_yticks([])
            if captions is not None:
                color = caption_colors[r][c] if caption_colors is not None else "black"
                axes.set_xlabel(captions[r][c], fontsize=8, color=color, labelpad=2)
        if row_titles is not None:
            figure.text(
                (left - 0.08) / width,
                (y + layout.tile / 2) / height,
                row_titles[r],
                ha="right",
                va="center",
                fontsize=8,
            )
    if title is not None:
        figure.text(0.5, 1 - (top / 2) / height, title, ha="center", va="center", fontsize=10)
    return figure


def histograms(
    samples: Mapping[str, Tensor | Sequence[float]],
    *,
    bins: int | Sequence[float] = 20,
    xlabel: str = "",
    title: str | None = None,
    size: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """Overlaid step histograms, one per named sample, with a legend giving each mean."""
    figure = Figure(figsize=size)
    axes = figure.add_subplot()
    for name, values in samples.items():
        data = torch.as_tensor(values, dtype=torch.float64).flatten()
        mean = float(data.mean()) if len(data) else float("nan")
        axes.hist(
            data.numpy(), bins=bins, histtype="step", linewidth=1.5, label=f"{name} ({mean:.3g})"
        )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("count")
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG at ``dpi`` (no tight cropping: sizes stay as laid out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png")
    return path


def heatmap(
    values: Tensor | Sequence[Sequence[float]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    value_format: str = "{:.1%}",
    value_range: tuple[float, float] = (0.0, 1.0),
    cmap: str = "viridis",
    colorbar_label: str = "",
    cell: tuple[float, float] = (1.1, 0.45),
    margins: tuple[float, float] = (2.8, 1.1),
) -> Figure:
    """A matrix as coloured cells with each value written in it (e.g. a transfer table).

    ``values[r][c]`` is drawn in row ``r`` (labelled ``row_labels[r]``, top to bottom) and
    column ``c``; NaN cells are left blank. The figure grows with the matrix: ``cell`` is one
    cell's size and ``margins`` the room for the row labels and the column labels, in inches.
    """
    matrix = torch.as_tensor(values, dtype=torch.float64)
    if matrix.ndim != 2 or matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"values have shape {tuple(matrix.shape)}; expected "
            f"({len(row_labels)}, {len(col_labels)}), one per row and column label"
        )
    rows, cols = matrix.shape
    width = margins[0] + cols * cell[0] + 1.2
    height = margins[1] + rows * cell[1] + (0.4 if title else 0.0)
    figure = Figure(figsize=(width, height))
    axes = figure.add_axes(
        (
            margins[0] / width,
            0.15 / height,
            cols * cell[0] / width,
            rows * cell[1] / height,
        )
    )
    low, high = value_range
    image = axes.imshow(
        matrix.numpy(), cmap=cmap, vmin=low, vmax=high, aspect="auto", interpolation="nearest"
    )
    axes.set_xticks(range(cols), labels=list(col_labels), rotation=35, ha="left", fontsize=8)
    axes.xaxis.tick_top()
    axes.set_yticks(range(rows), labels=list(row_labels), fontsize=8)
    for r in range(rows):
        for c in range(cols):
            value = float(matrix[r, c])
            if value != value:  # NaN
                continue
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # the cell's luminance
            color = "white" if dark else "black"
            text = value_format.format(value)
            axes.text(c, r, text, ha="center", va="center", fontsize=8, color=color)
    bar = figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    bar.set_label(colorbar_label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if title:
        figure.text(0.5, 1 - 0.2 / height, title, ha="center", va="center", fontsize=10)
    return figure


def perturbation_grid(
    originals: Tensor,
    perturbed: Tensor,
    *,
    labels: Tensor,
    original_predictions: Tensor,
    perturbed_predictions: Tensor,
    group_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Figure:
    """Original, perturbation and perturbed image side by side, as in the paper's Figure 5.

    ``originals`` and ``perturbed`` are ``(groups, K, C, H, W)``: K examples for each group
    (for example the model the adversarial examples were made for). Each group is three rows
    of the grid: the originals, the perturbations magnified to be visible (mid-grey is zero;
    each tile is scaled by its own factor, written under it), and the perturbed images.
    Captions give the class predicted for each original and perturbed image, in red where it
    differs from ``labels`` (``(groups, K)``).
    """
    if originals.shape != perturbed.shape or originals.ndim != 5:
        raise ValueError(
            f"originals {tuple(originals.shape)} and perturbed {tuple(perturbed.shape)} must "
            "have the same shape (groups, K, C, H, W)"
        )
    groups, count = int(originals.shape[0]), int(originals.shape[1])
    for name, table in (
        ("labels", labels),
        ("original_predictions", original_predictions),
        ("perturbed_predictions", perturbed_predictions),
    ):
        if tuple(table.shape) != (groups, count):
            raise ValueError(f"{name} has shape {tuple(table.shape)}; expected {(groups, count)}")
    if len(group_names) != groups:
        raise ValueError(f"group_names must have {groups} entries, got {len(group_names)}")
    low, high = value_range

    def named(index: int) -> str:
        return class_names[index] if class_names is not None else str(index)

    difference = (perturbed - originals).float()
    largest = difference.flatten(2).abs().amax(dim=2).clamp(min=1e-12)  # (groups, K)
    scale = 0.5 * (high - low) / largest
    shown = (low + high) / 2 + difference * scale[..., None, None, None]
    tiles, captions, colors, row_titles = [], [], [], []
    for g in range(groups):
        truth = labels[g].tolist()
        before = original_predictions[g].tolist()
        after = perturbed_predictions[g].tolist()
        tiles += [originals[g].float(), shown[g].clamp(low, high), perturbed[g].float()]
        captions += [
            [f"pred {named(p)}" for p in before],
            [f"x{s:.0f}" if s < 1e6 else "none" for s in scale[g].tolist()],
            [f"pred {named(p)}" for p in after],
        ]
        colors += [
            ["black" if p == t else "red" for p, t in zip(before, truth, strict=True)],
            ["dimgray"] * count,
            ["black" if p == t else "red" for p, t in zip(after, truth, strict=True)],
        ]
        row_titles += [f"{group_names[g]}\noriginal", "perturbation\n(magnified)", "perturbed"]
    return image_grid(
        torch.stack(tiles),
        captions=captions,
        caption_colors=colors,
        row_titles=row_titles,
        title=title,
        value_range=value_range,
    )


def figure_pixels(figure: Figure, *, dpi: int = 100) -> Tensor:
    """The figure rendered to an ``(H, W, 3)`` uint8 tensor (for ``wandb.Image``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8)
    width, height = canvas.get_width_height()
    return rgba.reshape(height, width, 4)[..., :3].clone()
