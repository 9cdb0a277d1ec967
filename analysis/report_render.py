"""Rendering the report's model (:mod:`analysis.report_model`) with Jinja2 templates.

``templates/report.md.j2`` writes markdown (figures linked beside the file),
``templates/report.html.j2`` one self-contained page (``templates/report.css`` inline,
figures as base64 PNG, no scripts, fonts or other external resources). The templates ship
as package data of ``intriguing.analysis`` and are found from an installed wheel as from the
repository. Blocks are told apart by their ``kind``; a table cell is text or a compared
figure (anything that is not a string, with ``ours_text``, ``paper_text`` and
``difference_text``).

HTML escapes as :func:`html.escape` does (``'`` as ``&#x27;``), through the ``esc`` and
``inline`` filters; markdown's ``**bold**`` and ```code``` become ``<strong>`` and
``<code>``.
"""

from __future__ import annotations

import base64
import html
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from intriguing.analysis.tables import markdown_table

if TYPE_CHECKING:
    from intriguing.analysis.report_model import Report

#: Text cells that start with a number are right-aligned in HTML.
NUMERIC = re.compile(r"^\s*[-+<]?\s*\d")


def esc(text: str) -> Markup:
    """``text`` escaped for HTML as :func:`html.escape` does (quotes included)."""
    return Markup(html.escape(str(text)))


def inline(text: str) -> Markup:
    """Markdown's ``**bold**`` and ```code``` in escaped HTML."""
    escaped = html.escape(str(text))
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", escaped))


def numeric(text: str) -> bool:
    """Whether a text cell reads as a number (``12.5%``, ``< 1.2%``, ``**3 s**``)."""
    return bool(NUMERIC.match(text.replace("*", "")))


def markdown_cell(cell: Any) -> str:
    """A table cell in a pipe table: ``ours / paper (difference)`` for a compared figure,
    else the text with ``|`` escaped and on one line."""
    if isinstance(cell, str):
        return cell.replace("|", "\\|").replace("\n", " ")
    difference = cell.difference_text()
    text = f"{cell.ours_text()} / {cell.paper_text()}"
    return f"{text} ({difference})" if difference else text


def link(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` where it lies below it, else absolute (POSIX)."""
    try:
        target = path.resolve().relative_to(folder.resolve())
    except ValueError:
        target = path.resolve()
    return target.as_posix()


def png_base64(path: Path) -> str:
    """The file's bytes as base64 text (for a ``data:image/png`` URL)."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


@cache
def environment(kind: str) -> jinja2.Environment:
    """The Jinja2 environment of the ``markdown`` or ``html`` templates (HTML autoescapes
    whatever a template does not pass through ``esc`` or ``inline``).

    Raises:
        ValueError: ``kind`` is neither.
    """
    if kind not in ("markdown", "html"):
        raise ValueError(f"kind must be 'markdown' or 'html', got {kind!r}")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("intriguing.analysis", "templates"),
        autoescape=kind == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        esc=esc,
        inline=inline,
        md_cell=markdown_cell,
        markdown_table=markdown_table,
        link=link,
        base64=png_base64,
    )
    env.tests["numeric"] = numeric
    return env


def render_markdown(report: Report, folder: Path) -> str:
    """``report`` as markdown; figures are linked relative to ``folder`` (where the file is
    written). Ends with exactly one newline."""
    text = environment("markdown").get_template("report.md.j2").render(report=report, folder=folder)
    return text.rstrip() + "\n"


def render_html(report: Report) -> str:
    """``report`` as one self-contained HTML page (reads the figures' PNG files)."""
    return environment("html").get_template("report.html.j2").render(report=report)
