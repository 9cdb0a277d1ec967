"""Plain-text tables: markdown (GitHub's pipe tables) and CSV, for every table the project
writes (transfer tables, Table 5's bounds, the report, sweep summaries). No torch here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def markdown_lines(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: Sequence[bool] | None = None,
) -> list[str]:
    """A pipe table's lines: header, separator (``---:`` where ``right_aligned``), rows."""
    aligned = right_aligned or [False] * len(header)
    separator = "|" + "".join("---:|" if right else "---|" for right in aligned)
    return [
        "| " + " | ".join(header) + " |",
        separator,
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: Sequence[bool] | None = None,
) -> str:
    """:func:`markdown_lines` as text ending in a newline."""
    return "\n".join(markdown_lines(header, rows, right_aligned=right_aligned)) + "\n"


def csv_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text with a header row (``None`` cells come out empty, as :mod:`csv` writes them)."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue()
