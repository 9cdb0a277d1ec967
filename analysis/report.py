"""The reproduction report: every measured figure beside the paper's, as markdown and HTML.

:func:`build_report` turns :class:`~analysis.reproduction.StudyResults` into a
:class:`Report`, a list of sections of paragraphs, tables, bullet lists and figures; the
report then renders itself as markdown (figures as PNG files linked beside it) and as one
self-contained HTML page (figures embedded as base64 PNG, inline CSS, no scripts, fonts or
other external resources). A table cell that compares a measured figure with the paper's
(:class:`Compared`) shows both and their difference; where the paper has no counterpart,
the cell says so. :func:`draw_figures` draws the plots the report shows.

The paper's figures come from :mod:`analysis.paper`.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from intriguing.analysis import paper
from intriguing.analysis.plots import heatmap, histograms, save_figure
from intriguing.analysis.reproduction import (
    ModelMeasurement,
    SeedComparison,
    SpectralModel,
    Spread,
    StudyResults,
)
from intriguing.analysis.robustness import Figure
from intriguing.analysis.tables import markdown_lines
from intriguing.analysis.transfer import TransferStudy, label_margin
from intriguing.analysis.units import UnitAnalysis

NO_COUNTERPART = "n/a"

# --------------------------------------------------------------------------- formatting


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def format_percent(value: float | None, *, paper_style: bool = False) -> str:
    """``1.73%`` below 10%, ``13.1%`` above; the paper's own figures with its digits."""
    if not _finite(value):
        return "-"
    assert value is not None
    if paper_style:
        return f"{100 * value:.2f}".rstrip("0").rstrip(".") + "%"
    return f"{100 * value:.2f}%" if abs(value) < 0.1 else f"{100 * value:.1f}%"


def format_number(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "-"


@dataclass(frozen=True)
class Compared:
    """A measured figure beside the paper's: ``ours``, ``paper`` (``None``: the paper has
    no counterpart) and their difference (percentage points for error rates)."""

    ours: float | None
    paper: paper.Reported | None
    percent: bool = True
    note: str = ""  # e.g. "< 1.2%" where the paper gives a bound, not a value
    bound: bool = False  # the paper's figure is an upper bound ("below 1.2%")

    def ours_text(self) -> str:
        return format_percent(self.ours) if self.percent else format_number(self.ours)

    def paper_text(self) -> str:
        if self.paper is None:
            return NO_COUNTERPART
        value = self.paper.value
        text = (
            format_percent(value, paper_style=True)
            if self.percent
            else f"{value:.3f}".rstrip("0").rstrip(".")
        )
        text = f"< {text}" if self.bound else text
        return text + ("†" if self.paper.checked else "")

    def difference(self) -> float | None:
        if self.paper is None or not _finite(self.ours):
            return None
        assert self.ours is not None
        return self.ours - self.paper.value

    def difference_text(self) -> str:
        difference = self.difference()
        if difference is None:
            return ""
        if self.percent:
            assert self.ours is not None and self.paper is not None
            digits = 2 if max(abs(self.ours), abs(self.paper.value)) < 0.1 else 1
            return f"{round(100 * difference, digits) + 0.0:+.{digits}f} pp"  # no "-0.0"
        return f"{round(difference, 3) + 0.0:+.3f}"


Cell = str | Compared


@dataclass
class Table:
    """A table whose cells are text or :class:`Compared` figures."""

    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Image:
    """A PNG figure (a file) with its caption."""

    path: Path
    caption: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str


Block = Paragraph | Table | Image | Bullets | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


LEGEND = (
    "Each compared cell reads **ours / paper (ours - paper)**; differences of error rates "
    "are in percentage points (pp). † marks the paper's figures that were cross-checked "
    f"against an independent reproduction; {NO_COUNTERPART} means the paper has no "
    "counterpart for that cell."
)


@dataclass
class Report:
    """A titled list of sections that renders as markdown and as a self-contained page."""

    title: str
    summary: list[Block]
    sections: list[Section]

    # ------------------------------------------------------------------- markdown

    def to_markdown(self, folder: Path) -> str:
        """Markdown; figures are linked relative to ``folder`` (where the file is written)."""
        lines = [f"# {self.title}", ""]
        for block in self.summary:
            lines += [*_markdown_block(block, folder), ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                lines += [*_markdown_block(block, folder), ""]
        return "\n".join(lines).rstrip() + "\n"

    # ------------------------------------------------------------------------ html

    def to_html(self) -> str:
        """One page: inline CSS, figures as base64 PNG, a table of contents."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(self.title)}</title>",
            f"<style>{CSS}</style></head><body><main>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        parts += [_html_block(block) for block in self.summary]
        parts.append('<nav><p class="toc-title">Contents</p><ol>')
        parts += [
            f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in self.sections
        ]
        parts.append("</ol></nav>")
        for section in self.sections:
            parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>')
            parts += [_html_block(block) for block in section.blocks]
            parts.append("</section>")
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"

    def tables(self) -> dict[str, Table]:
        """Every table by its section and position (for W&B)."""
        found: dict[str, Table] = {}
        for section in self.sections:
            tables = [b for b in section.blocks if isinstance(b, Table)]
            for index, table in enumerate(tables, start=1):
                suffix = f"-{index}" if len(tables) > 1 else ""
                found[f"{section.anchor}{suffix}"] = table
        return found


def table_records(table: Table) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of plain text (a compared cell becomes ours, paper, difference)."""
    columns: list[str] = []
    compared = [
        any(isinstance(row[i], Compared) for row in table.rows) for i in range(len(table.header))
    ]
    for name, is_compared in zip(table.header, compared, strict=True):
        columns += [name, f"{name} (paper)", f"{name} (diff)"] if is_compared else [name]
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell, is_compared in zip(row, compared, strict=True):
            if isinstance(cell, Compared):
                cells += [cell.ours_text(), cell.paper_text(), cell.difference_text()]
            else:
                cells += [_plain(cell), "", ""] if is_compared else [_plain(cell)]
        rows.append(cells)
    return columns, rows


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def _markdown_cell(cell: Cell) -> str:
    if isinstance(cell, Compared):
        difference = cell.difference_text()
        text = f"{cell.ours_text()} / {cell.paper_text()}"
        return f"{text} ({difference})" if difference else text
    return cell.replace("|", "\\|").replace("\n", " ")


def _markdown_block(block: Block, folder: Path) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Code):
        return ["```", block.text.rstrip(), "```"]
    if isinstance(block, Image):
        try:
            link = block.path.resolve().relative_to(folder.resolve())
        except ValueError:
            link = block.path.resolve()
        return [f"![{block.caption}]({link.as_posix()})", "", f"*{block.caption}*"]
    lines = [f"**{block.caption}**", ""] if block.caption else []
    return [
        *lines,
        *markdown_lines(block.header, [[_markdown_cell(c) for c in row] for row in block.rows]),
    ]


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in escaped HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html_cell(cell: Cell, tag: str = "td") -> str:
    if isinstance(cell, Compared):
        difference = cell.difference_text()
        paper_class = "paper none" if cell.paper is None else "paper"
        return (
            f'<{tag} class="cmp"><span class="ours">{html.escape(cell.ours_text())}</span>'
            f'<span class="{paper_class}">{html.escape(cell.paper_text())}</span>'
            + (f'<span class="diff">{html.escape(difference)}</span>' if difference else "")
            + f"</{tag}>"
        )
    numeric = bool(_NUMERIC.match(cell.replace("*", "")))
    return (
        f"<{tag}>{_inline(cell)}</{tag}>"
        if numeric
        else f'<{tag} class="text">{_inline(cell)}</{tag}>'
    )


_NUMERIC = re.compile(r"^\s*[-+<]?\s*\d")  # right-aligned: cells that start with a number


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text.rstrip())}</pre>"
    if isinstance(block, Image):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        caption = html.escape(block.caption)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    head = "".join(f"<th>{_inline(name)}</th>" for name in block.header)
    body = "".join(
        "<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in block.rows
    )
    caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
    return (
        f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


CSS = """
body { margin: 0; background: #f6f7f9; color: #1d2330;
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 16px; }
h2 { font-size: 21px; margin: 36px 0 12px; padding-top: 12px; border-top: 2px solid #dfe3ea; }
p, li { max-width: 980px; }
code { background: #eef1f5; padding: 1px 4px; border-radius: 3px; font-size: 13px; }
pre { background: #f1f3f6; padding: 10px 14px; border-radius: 4px; font-size: 12.5px;
  line-height: 1.4; white-space: pre-wrap; overflow-wrap: anywhere; }
nav { background: #f1f3f6; padding: 8px 16px; border-radius: 4px; margin: 16px 0; }
nav ol { margin: 4px 0; columns: 2; } .toc-title { font-weight: 600; margin: 4px 0; }
a { color: #1f5fbf; }
.table-wrap { overflow-x: auto; margin: 12px 0 18px; }
table { border-collapse: collapse; font-size: 13.5px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0 8px; }
th, td { border: 1px solid #d5dae2; padding: 5px 9px; text-align: right; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; text-align: center; }
td:first-child, th:first-child, td.text { text-align: left; }
td.cmp span { display: block; white-space: nowrap; }
td.cmp .ours { font-weight: 600; }
td.cmp .paper { color: #5b6575; font-size: 12px; }
td.cmp .paper::before { content: "paper "; }
td.cmp .paper.none { color: #9aa3b0; font-style: italic; }
td.cmp .diff { color: #7a4b00; font-size: 12px; }
figure { margin: 14px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e5eb; }
figcaption { color: #4a5262; font-size: 13px; margin-top: 4px; }
"""


# ------------------------------------------------------------------------------ figures


def draw_figures(results: StudyResults, folder: Path) -> dict[str, Path]:
    """The plots of the report, saved as PNG below ``folder``: transfer heatmaps (ours and
    ours - paper), example grids, distortion histograms. Returns them by name."""
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    for key, study, reported in (
        ("table2", results.table2, paper.TABLE2),
        ("table4", results.table4, paper.TABLE4),
    ):
        figures[f"{key}_heatmap"] = save_figure(
            study.matrix.heatmap(title=f"Table {study.table}: ours"),
            folder / f"{key}_heatmap.png",
        )
        difference = _difference_matrix(study, reported)
        if difference is not None:
            labels, matrix = difference
            figures[f"{key}_difference"] = save_figure(
                heatmap(
                    matrix,
                    row_labels=labels,
                    col_labels=study.matrix.targets,
                    title=f"Table {study.table}: ours - paper (percentage points)",
                    value_format="{:+.1%}",
                    value_range=(-0.5, 0.5),
                    cmap="RdBu_r",
                    colorbar_label="ours - paper",
                    margins=(label_margin(labels), 1.1),
                ),
                folder / f"{key}_difference.png",
            )
        figures[f"{key}_examples"] = save_figure(study.grid, folder / f"{key}_examples.png")
    for key, models in (("table1", results.table1), ("table3", results.table3)):
        samples = {m.name: m.distortions for m in models if len(m.distortions)}
        if samples:
            largest = max(float(v.max()) for v in samples.values())
            figures[f"{key}_distortions"] = save_figure(
                histograms(
                    samples,
                    bins=torch.linspace(0, max(largest, 1e-3), 31).tolist(),
                    xlabel="minimum distortion sqrt(sum r^2 / n) (legend: mean)",
                    title=f"Minimum distortion per training image, Table {key[-1]}",
                    size=(8.0, 4.5),
                ),
                folder / f"{key}_distortions.png",
            )
    return figures


def _paper_row(study: TransferStudy, name: str, kind: str) -> str | None:
    """The paper's row matching one of ours (the matched-noise row is its 'stddev 0.06')."""
    if name.endswith("(matched)") and kind == "noise":
        return paper.TABLE4_MATCHED_NOISE
    reported = paper.TABLE2 if study.table == 2 else paper.TABLE4
    return name if name in reported else None


def _difference_matrix(
    study: TransferStudy, reported: dict[str, paper.TransferRow]
) -> tuple[list[str], list[list[float]]] | None:
    labels, matrix = [], []
    for row in study.matrix.rows:
        match = _paper_row(study, row.name, row.kind)
        if match is None:
            continue
        cells = reported[match].errors
        labels.append(row.name)
        matrix.append(
            [
                error - cells[target].value if target in cells else math.nan
                for target, error in zip(study.matrix.targets, row.errors, strict=True)
            ]
        )
    return (labels, matrix) if labels else None


# ------------------------------------------------------------------------------ report


def build_report(results: StudyResults) -> Report:
    """The whole report (see the module's docstring)."""
    sections = [
        _headline_section(results),
        _setup_section(results),
        _table1_section(results),
        _transfer_section(results, results.table2, "Table 2: cross-model generalisation"),
        _table3_section(results),
        _transfer_section(results, results.table4, "Table 4: cross-training-set generalisation"),
        _spectral_section(results),
        _adversarial_training_section(results),
        _units_section(results),
        _runs_section(results),
        _budget_section(results),
    ]
    return Report(
        title=f"Reproduction of Szegedy et al. (2013) on MNIST — budget `{results.budget}`",
        summary=_summary(results),
        sections=sections,
    )


def _summary(results: StudyResults) -> list[Block]:
    blocks: list[Block] = [
        Paragraph(
            f"What `intriguing reproduce --budget {results.budget}` measured, beside the "
            f"figures of {paper.SOURCE}. Wall time {_duration(results.seconds)} on "
            f"{results.machine.get('summary', 'this machine')}" + _reused_note(results) + "."
        )
    ]
    if results.departures:
        blocks.append(
            Paragraph(
                f"**This budget (`{results.budget}`) uses smaller budgets and subsets than the "
                "paper**, so its figures are not the paper-scale result "
                "(`--budget full` is):"
            )
        )
        blocks.append(Bullets(results.departures))
    else:
        blocks.append(Paragraph("This budget runs the study at the paper's scale."))
    blocks.append(Paragraph(LEGEND))
    return blocks


def _reused_note(results: StudyResults) -> str:
    reused = [run for run in results.runs if run.reused]
    if not reused:
        return ""
    seconds = sum(run.seconds for run in reused)
    return (
        f"; {len(reused)} of its {len(results.runs)} training runs were reused from earlier "
        f"(they took {_duration(seconds)} to train)"
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _by_name(models: Sequence[ModelMeasurement], name: str) -> ModelMeasurement | None:
    return next((m for m in models if m.name == name), None)


def _off_diagonal(study: TransferStudy) -> tuple[float, float]:
    """Mean error of the other models on each model's adversarial examples: ours, paper."""
    reported = paper.TABLE2 if study.table == 2 else paper.TABLE4
    ours, theirs = [], []
    for row in study.matrix.rows:
        if row.kind != "adversarial" or row.name not in reported:
            continue
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            cell = reported[row.name].errors.get(target)
            if target != row.name and cell is not None:
                ours.append(error)
                theirs.append(cell.value)
    return _mean(ours), _mean(theirs)


def _row_mean(study: TransferStudy, kind: str, name: str | None = None) -> tuple[float, float]:
    """Mean over the columns (off the source's own) of the rows of ``kind`` (and ``name``)."""
    ours, theirs = [], []
    for row in study.matrix.rows:
        if row.kind != kind or (name is not None and row.name != name):
            continue
        match = _paper_row(study, row.name, row.kind)
        reported = (paper.TABLE2 if study.table == 2 else paper.TABLE4).get(match or "")
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            if row.source == target or reported is None or target not in reported.errors:
                continue
            ours.append(error)
            theirs.append(reported.errors[target].value)
    return _mean(ours), _mean(theirs)


def _mean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def _headline_section(results: StudyResults) -> Section:
    rows: list[list[Cell]] = []
    fc100 = _by_name(results.table1, "FC100-100-10")
    if fc100 is not None:
        reported = paper.TABLE1["FC100-100-10"]
        rows.append(
            [
                "FC100-100-10 test error (Table 1)",
                Compared(fc100.test_error, reported.errors["test"]),
            ]
        )
        rows.append(
            [
                "FC100-100-10 average minimum distortion on training images (Table 1)",
                Compared(fc100.distortion, reported.distortion, percent=False),
            ]
        )
    ours, theirs = _off_diagonal(results.table2)
    rows.append(
        [
            "Cross-model transfer: mean error of the other five models on a model's "
            "adversarial examples (Table 2, off the diagonal)",
            Compared(ours, paper.Reported(theirs)),
        ]
    )
    ours, theirs = _row_mean(results.table2, "noise", "Gaussian noise, stddev 0.1")
    rows.append(
        [
            "Gaussian noise, stddev 0.1: mean error of the six models (Table 2)",
            Compared(ours, paper.Reported(theirs)),
        ]
    )
    ours, theirs = _off_diagonal(results.table4)
    rows.append(
        [
            "Cross-training-set transfer: mean error of the other models trained on other "
            "data or with other widths (Table 4, off the diagonal)",
            Compared(ours, paper.Reported(theirs)),
        ]
    )
    ours, theirs = _row_mean(results.table4, "magnified")
    rows.append(
        [
            "Magnified perturbations (distortion 0.1): mean error of the other models (Table 4)",
            Compared(ours, paper.Reported(theirs)),
        ]
    )
    claim = paper.ADVERSARIAL_TRAINING
    for comparison in results.adversarial_training:
        rows.append(
            [
                f"Adversarial training, `{comparison.experiment}` ({comparison.description}): "
                f"clean test error (mean of {len(comparison.seeds)} seeds)",
                Compared(
                    comparison.spread("backfeed", "test_error").mean,
                    paper.Reported(claim.backfeed_test_error_below),
                    bound=True,
                ),
            ]
        )
    if results.adversarial_training:
        first = results.adversarial_training[0]
        rows.append(
            [
                "Same network without backfeeding, weight decay only "
                f"(mean of {len(first.seeds)} seeds)",
                Compared(
                    first.spread("baseline", "test_error").mean,
                    paper.Reported(claim.weight_decay_test_error),
                ),
            ]
        )
        rows += _robust_headline_rows(results.adversarial_training)
    units = results.units
    rows.append(
        [
            f"Label purity of the top {units.top_k} images: single units / random directions "
            f"of `{units.layer}` (chance {units.stats['baseline'].mean:.2f})",
            f"{units.stats['unit'].mean:.2f} / {units.stats['random'].mean:.2f} "
            f"(p = {units.p_values['unit_vs_random']:.2g})",
        ]
    )
    table = Table(
        ["Finding", "Ours", "Paper", "Ours - paper"],
        [
            [row[0], *_split(row[1])]
            if isinstance(row[1], Compared)
            else [row[0], row[1], *(row[2:] or ["no difference (qualitative)"]), ""]
            for row in rows
        ],
        caption="Headline figures",
    )
    return Section(
        "At a glance",
        [
            table,
            Paragraph(
                "Means of table cells are taken over the cells that both the paper and we "
                "report. The sections below give every cell."
            ),
        ],
    )


def _robust_headline_rows(comparisons: Sequence[SeedComparison]) -> list[list[Cell]]:
    """Headline rows of the adversarial-training comparison's robust figures: per arm (the
    shared baseline, then each variant) its robust error at each budget and the FGSM error,
    means over seeds; the paper reports none."""
    figures = [
        f for f in _compared_figures(comparisons)[1:] if f.percent and "clean error" not in f.label
    ]
    if not figures:
        return []
    first = comparisons[0]
    arms = [("baseline", first, "without backfeeding")]
    arms += [("backfeed", c, f"`{c.experiment}`") for c in comparisons]
    rows: list[list[Cell]] = []
    for arm, comparison, name in arms:
        values = "; ".join(
            f"{f.label}: {format_percent(comparison.spread(arm, f.key).mean)}" for f in figures
        )
        clean = comparison.spread(arm, "eval/robust_clean_error").mean
        same = f"; clean error on the same images {format_percent(clean)}" if _finite(clean) else ""
        rows.append(
            [
                f"Adversarial training, {name}: robust error on the first "
                f"{comparison.robust_examples or comparison.examples:,} test images "
                f"(mean of {len(comparison.seeds)} seeds)",
                values + same,
                "not reported",
            ]
        )
    return rows


def _split(cell: Compared) -> list[Cell]:
    return [cell.ours_text(), cell.paper_text(), cell.difference_text()]


def _setup_section(results: StudyResults) -> Section:
    steps = Table(
        ["Step", "Wall time"],
        [[name, _duration(seconds)] for name, seconds in results.steps.items()]
        + [["**Total**", f"**{_duration(results.seconds)}**"]],
        caption="Wall time per step",
    )
    machine = Table(
        ["Property", "Value"],
        [[key, value] for key, value in results.machine.items() if key != "summary"],
        caption="Machine",
    )
    blocks: list[Block] = [
        Paragraph("Commands that produced this report:"),
        Code("\n".join(results.commands)),
        steps,
        machine,
        Paragraph(
            "The training runs (each folder holds the run's `config.yaml` and "
            "`summary.json`) and the budget file are listed at the end."
        ),
    ]
    return Section("How this was run", blocks)


def _budget_section(results: StudyResults) -> Section:
    return Section(
        "Budget",
        [Paragraph(f"The budget `{results.budget}` as written:"), Code(results.budget_text)],
    )


def _table1_section(results: StudyResults) -> Section:
    rows: list[list[Cell]] = []
    for model in results.table1:
        reported = paper.TABLE1.get(model.name)
        errors = reported.errors if reported else {}
        rows.append(
            [
                model.name,
                paper.TABLE1_WEIGHT_DECAY.get(model.name, ""),
                Compared(model.train_error, errors.get("train")),
                Compared(model.test_error, errors.get("test")),
                Compared(model.distortion, reported.distortion if reported else None, False),
            ]
        )
    noise_model = paper.TABLE1_MODELS[0]
    for row in results.table2.matrix.rows:
        if (
            row.kind == "noise"
            and row.name in paper.TABLE1
            and noise_model in results.table2.matrix.targets
        ):
            reported = paper.TABLE1[row.name]
            rows.append(
                [
                    row.name,
                    "",
                    "",
                    Compared(
                        results.table2.matrix.error(row.name, noise_model), reported.errors["test"]
                    ),
                    Compared(row.distortion, reported.distortion, False),
                ]
            )
    first = results.table1[0] if results.table1 else None
    blocks: list[Block] = [
        Table(
            ["Model", "Weight decay", "Train error", "Test error", "Av. min. distortion"],
            rows,
            caption="Table 1: MNIST models",
        )
    ]
    if first is not None:
        blocks.append(
            Bullets(
                [
                    "Train error: each model in eval mode on the whole part of the training set "
                    f"it was trained on ({_counts(m.train_examples for m in results.table1)} "
                    "images); test error on the "
                    f"{_counts(m.test_examples for m in results.table1)} test images.",
                    "Av. min. distortion (the paper's definition: the average distortion that "
                    "brings the accuracy on the training set to 0%): L-BFGS on the first "
                    f"{_counts(m.distortion_examples for m in results.table1)} training images "
                    "each model was trained on; images it already misclassifies count with 0. "
                    "Success: "
                    + ", ".join(f"{m.name} {m.distortion_success:.1%}" for m in results.table1)
                    + ".",
                    "Gaussian-noise rows: the test error of "
                    f"{noise_model} under noise (the paper does not say of which model; its "
                    "figures are Table 2's FC10(1e-4) column), on Table 2's test images; the "
                    "distortion is measured after clipping to [0, 1].",
                ]
            )
        )
    if "table1_distortions" in results.figures:
        blocks.append(
            Image(
                results.figures["table1_distortions"],
                "Minimum distortion of each attacked training image, per model (legend: mean)",
            )
        )
    return Section("Table 1: MNIST models", blocks)


def _counts(values: object) -> str:
    distinct = sorted(set(values))  # type: ignore[call-overload]
    return " / ".join(f"{v:,}" for v in distinct)


def _transfer_section(results: StudyResults, study: TransferStudy, title: str) -> Section:
    reported = paper.TABLE2 if study.table == 2 else paper.TABLE4
    rows: list[list[Cell]] = []
    for row in study.matrix.rows:
        match = _paper_row(study, row.name, row.kind)
        paper_row = reported.get(match) if match else None
        label = row.name + (f" ↔ paper's “{match}”" if match and match != row.name else "")
        cells: list[Cell] = [label]
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            cells.append(Compared(error, paper_row.errors.get(target) if paper_row else None))
        cells.append(
            Compared(row.distortion, paper_row.distortion if paper_row else None, percent=False)
        )
        rows.append(cells)
    blocks: list[Block] = [
        Table(
            ["Made for", *study.matrix.targets, "Av. distortion"],
            rows,
            caption=f"{title}: error of each column model on the examples made for each row "
            f"({study.described})",
        ),
        Bullets(study.matrix.notes),
    ]
    if study.table == 4:
        blocks.append(
            Paragraph(
                "The paper gives no distortion column for Table 4: its matched-noise row is "
                "stated as stddev 0.06 and its magnified rows as 0.1. The clean row is ours "
                "alone."
            )
        )
    else:
        blocks.append(
            Paragraph(
                "The clean row (each model's error on the same examples unperturbed) is ours alone."
            )
        )
    key = f"table{study.table}"
    for name, caption in (
        (f"{key}_heatmap", "Our transfer matrix (row labels: the row's average distortion)"),
        (f"{key}_difference", "Ours - paper, cell by cell (blank: no counterpart)"),
        (
            f"{key}_examples",
            "Examples: original, perturbation (magnified to be visible) and perturbed image, "
            "with the class the source model predicts (red: wrong)",
        ),
    ):
        if name in results.figures:
            blocks.append(Image(results.figures[name], caption))
    return Section(title, blocks)


def _table3_section(results: StudyResults) -> Section:
    by_split = results.table4.by_split
    rows: list[list[Cell]] = []
    if by_split is not None:
        for name, errors in zip(by_split.models, by_split.errors, strict=True):
            reported = paper.TABLE3.get(name)
            measured = _by_name(results.table3, name)
            cells: list[Cell] = [reported.label if reported and reported.label else name]
            for split, error in zip(by_split.splits, errors, strict=True):
                cells.append(Compared(error, reported.errors.get(split) if reported else None))
            cells.append(
                Compared(
                    measured.distortion if measured else math.nan,
                    reported.distortion if reported else None,
                    percent=False,
                )
            )
            rows.append(cells)
        header = ["Model", *(f"Error on {s}" for s in by_split.splits), "Av. min. distortion"]
    else:
        header = ["Model"]
    blocks: list[Block] = [
        Table(header, rows, caption="Table 3: models of the cross-training-set experiment"),
        Bullets(
            [
                "P1 and P2: the two disjoint halves (30,000 images each) of MNIST's training "
                "set; errors in eval mode on the whole halves and the whole test set.",
                "Av. min. distortion as in Table 1: L-BFGS on the first "
                f"{_counts(m.distortion_examples for m in results.table3)} training images of "
                "the half each model was trained on.",
            ]
        ),
    ]
    if "table3_distortions" in results.figures:
        blocks.append(
            Image(results.figures["table3_distortions"], "Minimum distortion per training image")
        )
    return Section("Table 3: models trained on P1 and P2", blocks)


def _spectral_section(results: StudyResults) -> Section:
    blocks: list[Block] = [
        Paragraph(
            "The paper's Table 5 lists the upper Lipschitz bounds of AlexNet's layers "
            "(ImageNet); our MNIST networks have no counterpart in it, so their bounds are "
            "shown on their own, in the same layout, with AlexNet's for scale. "
            + paper.SPECTRAL_CLAIM.text
        ),
        Table(
            ["Layer", *paper.TABLE5_ALEXNET, "Product"],
            [
                [
                    "AlexNet (paper)",
                    *(f"{v:g}" for v in paper.TABLE5_ALEXNET.values()),
                    f"{math.prod(paper.TABLE5_ALEXNET.values()):.3g}",
                ]
            ],
            caption="Table 5 (paper): upper bounds of AlexNet's layers",
        ),
    ]
    families: dict[tuple[str, ...], list[SpectralModel]] = {}
    for model in results.spectral:
        families.setdefault(tuple(s.name for s in model.bounds.stages), []).append(model)
    for layers, models in families.items():
        blocks.append(
            Table(
                ["Network", *layers, "Product"],
                [
                    [
                        f"`{model.name}` ({model.description})",
                        *(f"{s.bound:.4g}" for s in model.bounds.stages),
                        f"{model.bounds.product:.4g}",
                    ]
                    for model in models
                ],
                caption=f"Upper bounds of the layers {', '.join(layers)} of our networks "
                f"({NO_COUNTERPART} in the paper)",
            )
        )
    blocks.append(
        Paragraph(
            "Each layer's bound is its exact L2 operator norm (fully connected and "
            "convolutional layers at the input shape they see), times 1 for ReLU and the "
            "pooling overlap factor for max pooling, as in `intriguing spectral`."
        )
    )
    return Section("Table 5: upper Lipschitz bounds", blocks)


def _spread_text(spread: Spread, percent: bool) -> str:
    """``1.73% ± 0.13 pp``: mean and sample standard deviation over seeds; ``(2 of 3 seeds)``
    follows where some seeds lack the figure."""
    if spread.count == 0:
        return "-"
    std = spread.std
    if percent:
        text = format_percent(spread.mean) + (f" ± {100 * std:.2f} pp" if _finite(std) else "")
    else:
        text = format_number(spread.mean, 4) + (f" ± {std:.4f}" if _finite(std) else "")
    missing = spread.count < len(spread.values)
    return text + (f" ({spread.count} of {len(spread.values)} seeds)" if missing else "")


def _pp(value: float) -> str:
    """A difference of error rates in percentage points (``-0.35 pp``)."""
    return f"{round(100 * value, 2) + 0.0:+.2f} pp" if _finite(value) else "-"


def _compared_figures(comparisons: Sequence[SeedComparison]) -> list[Figure]:
    """The figures of every comparison's table, in order (the first comparison's first)."""
    figures: list[Figure] = []
    for comparison in comparisons:
        figures += [f for f in comparison.figures() if f not in figures]
    return figures


def _adversarial_training_section(results: StudyResults) -> Section:
    comparisons = results.adversarial_training
    claim = paper.ADVERSARIAL_TRAINING
    below = paper.Reported(claim.backfeed_test_error_below)
    blocks: list[Block] = [
        Paragraph(
            "Section 4.2: FC100-100-10 trained with a pool of adversarial examples, "
            "continually refreshed and mixed into training, against the same training "
            "without it. The paper's pools hold adversarial examples for the input and for "
            "each hidden layer's output; each variant below (its preset and pool) is compared "
            "with the same runs without backfeeding, seed for seed. The paper reports a test "
            f"error below {format_percent(claim.backfeed_test_error_below, paper_style=True)}, "
            f"against {format_percent(claim.weight_decay_test_error, paper_style=True)} with "
            "weight decay alone and about "
            f"{format_percent(claim.dropout_test_error, paper_style=True)} with dropout; it "
            "gives no adversarial error or distortion for these networks. Beside the clean "
            "error we give the robust error as the field reports it: the fraction of test "
            "images misclassified clean or fooled by any of several strong attacks within the "
            "stated budget (the worst case per image); the FGSM error is an extra column, a "
            "weak attack's figure that understates the robust error."
        )
    ]
    if not comparisons:
        blocks.append(Paragraph("No backfeed variant was trained."))
        return Section("Adversarial training (Section 4.2)", blocks)
    first = comparisons[0]
    figures = _compared_figures(comparisons)
    clean, others = figures[0], figures[1:]
    baseline_error = first.spread("baseline", clean.key).mean
    rows: list[list[Cell]] = [
        [
            "Without backfeeding (weight decay only)",
            _spread_text(first.spread("baseline", clean.key), True),
            Compared(baseline_error, paper.Reported(claim.weight_decay_test_error)),
            "",
            *(_spread_text(first.spread("baseline", f.key), f.percent) for f in others),
        ]
    ]
    for comparison in comparisons:
        error = comparison.spread("backfeed", clean.key).mean
        rows.append(
            [
                f"`{comparison.experiment}`: {comparison.description}",
                _spread_text(comparison.spread("backfeed", clean.key), True),
                Compared(error, below, bound=True),
                _pp(error - baseline_error),
                *(_spread_text(comparison.spread("backfeed", f.key), f.percent) for f in others),
            ]
        )
    label = clean.label.capitalize()
    robust = first.robust_examples
    blocks += [
        Table(
            [
                "Training",
                f"{label}: mean ± std",
                f"{label} vs paper",
                f"{label} minus without backfeeding",
                *(f"{f.label[0].upper()}{f.label[1:]}: mean ± std" for f in others),
            ],
            rows,
            caption="Adversarial training: each backfeed variant beside the same training "
            "without it, mean and spread over seeds " + ", ".join(map(str, first.seeds)),
        ),
        Bullets(
            [
                "Clean test error: eval mode, the whole test set; minus without "
                "backfeeding: the difference of the means.",
                f"Measured by each run's `evaluation` section on the first {first.examples:,} "
                "test images"
                + (
                    f" (robust error and the clean error beside it on the first {robust:,}, "
                    "a subset for time)"
                    if robust and robust != first.examples
                    else ""
                )
                + f": {first.attack}.",
                *(f"`{c.experiment}`: {c.settings}." for c in comparisons),
            ]
        ),
    ]
    per_seed: list[list[Cell]] = []
    for arm, comparison_rows in (
        ("baseline", [(first, "without backfeeding")]),
        ("backfeed", [(c, f"`{c.experiment}`") for c in comparisons]),
    ):
        for comparison, name in comparison_rows:
            for seed, run in zip(comparison.seeds, comparison.runs[arm], strict=True):
                per_seed.append(
                    [
                        name,
                        str(seed),
                        *(
                            format_percent(run.get(f.key, math.nan))
                            if f.percent
                            else format_number(run.get(f.key, math.nan), 4)
                            for f in figures
                        ),
                    ]
                )
    blocks.append(
        Table(
            ["Training", "Seed", *(f"{f.label[0].upper()}{f.label[1:]}" for f in figures)],
            per_seed,
            caption="Per seed",
        )
    )
    return Section("Adversarial training (Section 4.2)", blocks)


def _units_section(results: StudyResults) -> Section:
    units = results.units
    blocks: list[Block] = [
        Paragraph(
            paper.UNITS_CLAIM.text + " The paper gives no number; ours is the label "
            "purity of the top images (the share of the most common label)."
        ),
        Paragraph(
            f"Network: {results.units_model}, layer `{units.layer}` "
            f"(shape {'x'.join(map(str, units.layer_shape))}), {units.num_images:,} test images."
        ),
        _purity_table(units),
        Paragraph(
            "Permutation tests of equal means (two-sided p): "
            + ", ".join(f"{name.replace('_', ' ')} {p:.3g}" for name, p in units.p_values.items())
            + f". Units skipped (no maximising images, ties at their minimum): "
            f"{units.skipped_units}."
        ),
    ]
    for name, caption in (
        ("units_unit", "Top images of single units (natural basis)"),
        ("units_random", "Top images of random directions"),
        ("units_purity", "Label purity of units, random directions and random images (chance)"),
    ):
        if name in results.figures:
            blocks.append(Image(results.figures[name], caption))
    return Section("Units versus random directions (Section 3)", blocks)


def _purity_table(units: UnitAnalysis) -> Table:
    titles = {
        "unit": "Single units (natural basis)",
        "random": "Random directions",
        "baseline": f"{units.top_k} random images (chance)",
    }
    level = round(100 * units.level)
    rows: list[list[Cell]] = []
    for kind, title in titles.items():
        stats = units.stats[kind]
        rows.append(
            [
                title,
                str(stats.count),
                f"{stats.mean:.3f}",
                f"{stats.std:.3f}",
                f"[{stats.ci_low:.3f}, {stats.ci_high:.3f}]",
            ]
        )
    return Table(
        ["Directions", "Count", "Mean purity", "Std", f"{level}% CI of the mean"],
        rows,
        caption=f"Label purity of the top {units.top_k} images of `{units.layer}`",
    )


def _runs_section(results: StudyResults) -> Section:
    rows: list[list[Cell]] = [
        [
            run.key,
            run.experiment,
            "reused" if run.reused else "trained",
            _duration(run.seconds),
            f"`{run.run_dir}`",
            f"`{run.logs}`" if run.logs else "",
        ]
        for run in results.runs
    ]
    return Section(
        "Training runs",
        [
            Paragraph(
                "Every model of the study; a run is reused when a finished one has the same "
                "configuration fingerprint (its own training time is shown)."
            ),
            Table(["Model", "Experiment", "Status", "Training time", "Run folder", "Logs"], rows),
        ],
    )
