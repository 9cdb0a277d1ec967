"""The report's model: sections of paragraphs, tables, bullet lists, code and figures.

Plain dataclasses, built from :class:`~analysis.reproduction.StudyResults` by
:func:`analysis.report.build_report` and rendered by :mod:`analysis.report_render` (Jinja2
templates for markdown and HTML). A table cell is text (markdown's ``**bold**`` and
```code``` allowed) or a :class:`Compared` figure: a measured value beside the paper's and
their difference. Each block names its ``kind`` for the templates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from intriguing.analysis import paper
from intriguing.analysis.report_render import render_html, render_markdown

#: What a compared cell shows where the paper has no counterpart.
NO_COUNTERPART = "n/a"


def finite(value: float | None) -> bool:
    """Whether ``value`` is a number (not ``None``, not ``nan``)."""
    return value is not None and not math.isnan(value)


def format_percent(value: float | None, *, paper_style: bool = False) -> str:
    """An error rate (a fraction) as a percentage: ``1.73%`` below 10%, ``13.1%`` above,
    ``-`` for ``None`` or ``nan``; ``paper_style``: the paper's own figures with its digits
    (``1.6%``, ``0.15%``)."""
    if not finite(value):
        return "-"
    assert value is not None
    if paper_style:
        return f"{100 * value:.2f}".rstrip("0").rstrip(".") + "%"
    return f"{100 * value:.2f}%" if abs(value) < 0.1 else f"{100 * value:.1f}%"


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; ``-`` for ``None`` or ``nan``."""
    return f"{value:.{digits}f}" if finite(value) else "-"


@dataclass(frozen=True)
class Compared:
    """A measured figure beside the paper's: ``ours``, ``paper`` (``None``: the paper has
    no counterpart) and their difference (percentage points for error rates).

    Attributes:
        ours: our figure (a fraction if ``percent``, else a distortion), ``nan``: missing.
        paper: the paper's figure, or ``None``.
        percent: whether the figures are error rates (shown as percentages).
        note: free text (e.g. ``"< 1.2%"`` where the paper gives a bound).
        bound: the paper's figure is an upper bound ("below 1.2%").
    """

    ours: float | None
    paper: paper.Reported | None
    percent: bool = True
    note: str = ""
    bound: bool = False

    def ours_text(self) -> str:
        return format_percent(self.ours) if self.percent else format_number(self.ours)

    def paper_text(self) -> str:
        """The paper's figure (``< `` before a bound, ``†`` after a cross-checked one)."""
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
        """Ours minus the paper's (a fraction for error rates); ``None`` where either lacks."""
        if self.paper is None or not finite(self.ours):
            return None
        assert self.ours is not None
        return self.ours - self.paper.value

    def difference_text(self) -> str:
        """``+0.35 pp`` for error rates, ``-0.012`` for distortions, empty where none."""
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
    """A table whose cells are text or :class:`Compared` figures (``rows[i][j]`` under
    ``header[j]``)."""

    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    kind: ClassVar[str] = "table"


@dataclass
class Image:
    """A PNG figure (a file) with its caption."""

    path: Path
    caption: str
    kind: ClassVar[str] = "image"


@dataclass
class Paragraph:
    text: str
    kind: ClassVar[str] = "paragraph"


@dataclass
class Bullets:
    items: list[str]
    kind: ClassVar[str] = "bullets"


@dataclass
class Code:
    text: str
    kind: ClassVar[str] = "code"


Block = Paragraph | Table | Image | Bullets | Code


@dataclass
class Section:
    """A titled list of blocks; ``anchor`` is its id in the HTML page."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Report:
    """A titled list of sections (after summary blocks) that renders as markdown and as a
    self-contained HTML page (:mod:`analysis.report_render`)."""

    title: str
    summary: list[Block]
    sections: list[Section]

    def to_markdown(self, folder: Path) -> str:
        """Markdown; figures are linked relative to ``folder`` (where the file is written)."""
        return render_markdown(self, folder)

    def to_html(self) -> str:
        """One page: inline CSS, figures as base64 PNG, a table of contents, no scripts."""
        return render_html(self)

    def tables(self) -> dict[str, Table]:
        """Every table by its section's anchor and position (for W&B)."""
        found: dict[str, Table] = {}
        for section in self.sections:
            tables = [b for b in section.blocks if isinstance(b, Table)]
            for index, table in enumerate(tables, start=1):
                suffix = f"-{index}" if len(tables) > 1 else ""
                found[f"{section.anchor}{suffix}"] = table
        return found


def plain(text: str) -> str:
    """A cell's text without markdown's ``**`` and backticks."""
    return text.replace("**", "").replace("`", "")


def table_records(table: Table) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of plain text (a compared column becomes three: ours, ``NAME
    (paper)``, ``NAME (diff)``), for W&B tables."""
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
                cells += [plain(cell), "", ""] if is_compared else [plain(cell)]
        rows.append(cells)
    return columns, rows
