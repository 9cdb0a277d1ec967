"""The report's model and its Jinja2 templates: a study rebuilt from a small
``results.json`` renders byte for byte as the hand-written renderer it replaced did
(``golden/report.md`` and ``golden/report.html`` were written by that renderer from the same
study); the templates ship as package data; a section without data still renders."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest

from intriguing.analysis.report import build_report, report_spec, section
from intriguing.analysis.report_model import Compared, Image, Paragraph, Report, Section, Table
from intriguing.analysis.report_render import environment, render_html, render_markdown

from .report_study import study_from_record

GOLDEN = Path(__file__).with_name("golden")
FIGURES = ("table1_distortions", "table2_heatmap", "table4_difference", "units_purity")


@pytest.fixture(scope="module")
def report() -> Report:
    figures = {name: GOLDEN / "figure.png" for name in FIGURES}
    return build_report(study_from_record(GOLDEN / "results.json", figures))


def test_markdown_is_byte_for_byte_the_previous_renderers(report: Report):
    assert report.to_markdown(GOLDEN) == (GOLDEN / "report.md").read_text()


def test_html_is_byte_for_byte_the_previous_renderers(report: Report):
    assert report.to_html() == (GOLDEN / "report.html").read_text()


def test_every_section_of_the_spec_is_built_in_order(report: Report):
    titles = [spec["title"] for spec in report_spec()["sections"]]
    assert [s.title for s in report.sections] == titles
    assert len(titles) == 11


def test_templates_are_package_data():
    folder = resources.files("intriguing.analysis").joinpath("templates")
    for name in ("report.md.j2", "report.html.j2", "report.css", "report.yaml"):
        assert folder.joinpath(name).is_file(), name
    assert environment("html").get_template("report.html.j2").filename.endswith("report.html.j2")


def test_html_escapes_text_as_html_escape_does_and_marks_compared_cells():
    table = Table(
        ["A <b>", "Ours"],
        [["it's **bold** & `code`", Compared(0.05, None)], ["12 s", Compared(0.2, None)]],
        caption="x",
    )
    page = render_html(Report("T 'q'", [Paragraph("a < b")], [Section("S", [table])]))
    assert "<title>T &#x27;q&#x27;</title>" in page
    assert "<p>a &lt; b</p>" in page
    assert "<th>A &lt;b&gt;</th>" in page
    assert '<td class="text">it&#x27;s <strong>bold</strong> &amp; <code>code</code></td>' in page
    assert "<td>12 s</td>" in page  # numeric cells right-aligned (no class)
    assert '<span class="paper none">n/a</span></td>' in page  # no difference span
    assert re.search(r"<script|https?://", page) is None


def test_markdown_escapes_pipes_and_links_figures_beside_the_file(tmp_path: Path):
    figure = tmp_path / "figures" / "a.png"
    report = Report(
        "T",
        [],
        [Section("S", [Table(["a"], [["x | y"]]), Image(figure, "cap")])],
    )
    text = render_markdown(report, tmp_path)
    assert "| x \\| y |" in text
    assert "![cap](figures/a.png)\n\n*cap*\n" in text
    assert text.endswith("*cap*\n")


def test_a_study_without_backfeed_variants_says_so():
    spec = next(s for s in report_spec()["sections"] if s["values"] == "adversarial_training")
    built = section(SimpleNamespace(adversarial_training=[], figures={}), spec)  # type: ignore[arg-type]
    assert [b.text for b in built.blocks if isinstance(b, Paragraph)][-1] == (
        "No backfeed variant was trained."
    )
    assert not any(isinstance(b, Table) for b in built.blocks)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        environment("latex")
