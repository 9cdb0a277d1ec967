"""Markdown and CSV text of tables: the shape every written table shares."""

from __future__ import annotations

import csv
import io

from intriguing.analysis.tables import csv_table, markdown_table


def test_markdown_table_aligns_the_marked_columns_right() -> None:
    text = markdown_table(["run", "error"], [["a", "1.5%"], ["b", ""]], right_aligned=[False, True])
    assert text == "| run | error |\n|---|---:|\n| a | 1.5% |\n| b |  |\n"
    assert markdown_table(["x"], []) == "| x |\n|---|\n"


def test_csv_table_leaves_missing_values_empty_and_quotes_commas() -> None:
    text = csv_table(["point", "layers"], [[1, "input, fc1"], [2, None]])
    assert list(csv.reader(io.StringIO(text))) == [
        ["point", "layers"],
        ["1", "input, fc1"],
        ["2", ""],
    ]
