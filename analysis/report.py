"""The reproduction report: every measured figure beside the paper's, as markdown and HTML.

:func:`build_report` turns :class:`~analysis.reproduction.StudyResults` into a
:class:`~analysis.report_model.Report` (sections of paragraphs, tables, bullet lists, code and
figures: plain data), which :mod:`analysis.report_render` renders with Jinja2 templates as
markdown (figures as PNG files linked beside it) and as one self-contained HTML page.

What the report says is data, not code: ``templates/report.yaml`` holds the title, the
summary and each section's blocks (texts, captions, headers, the headline's rows), as
Jinja2 templates of values; this module computes those values from the study (one function
per section, :data:`VALUES`), the tables' cells that compare a measured figure with the
paper's (:class:`~analysis.report_model.Compared`) among them, and fills the blocks in.
:func:`draw_figures` draws the plots the report shows. The paper's figures come from
:mod:`analysis.paper`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import torch
import yaml

from intriguing.analysis import paper
from intriguing.analysis.plots import heatmap, histograms, save_figure
from intriguing.analysis.report_model import (
    NO_COUNTERPART,
    Block,
    Bullets,
    Cell,
    Code,
    Compared,
    Image,
    Paragraph,
    Report,
    Section,
    Table,
    finite,
    format_number,
    format_percent,
    table_records,
)
from intriguing.analysis.reproduction import (
    ModelMeasurement,
    SeedComparison,
    Spread,
    StudyResults,
)
from intriguing.analysis.robustness import Figure
from intriguing.analysis.transfer import TransferStudy, label_margin

__all__ = [
    "NO_COUNTERPART",
    "Block",
    "Bullets",
    "Cell",
    "Code",
    "Compared",
    "Image",
    "Paragraph",
    "Report",
    "Section",
    "Table",
    "build_report",
    "draw_figures",
    "format_number",
    "format_percent",
    "table_records",
]

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
    return name if name in _reported(study) else None


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
    """The whole report: ``templates/report.yaml``'s title, summary and sections, filled in
    with the values :data:`VALUES` computes from ``results``."""
    spec = report_spec()
    summary = spec["summary"]
    context = _context(results, summary)
    return Report(
        title=_text(spec["title"], context),
        summary=_blocks(summary["blocks"], context, results),
        sections=[section(results, entry) for entry in spec["sections"]],
    )


@cache
def report_spec() -> dict[str, Any]:
    """``templates/report.yaml``, read once (package data of ``intriguing.analysis``)."""
    text = resources.files("intriguing.analysis").joinpath("templates", "report.yaml")
    return yaml.safe_load(text.read_text(encoding="utf-8"))


def section(results: StudyResults, spec: Mapping[str, Any]) -> Section:
    """One section of ``templates/report.yaml`` (its ``title``, ``values``, ``labels`` and
    ``blocks``) filled in with ``results``."""
    context = _context(results, spec)
    return Section(spec["title"], _blocks(spec["blocks"], context, results))


def _adversarial_training_section(results: StudyResults) -> Section:
    """Section 4.2's comparison alone (it reads only ``results.adversarial_training``)."""
    (spec,) = (s for s in report_spec()["sections"] if s["values"] == "adversarial_training")
    return section(results, spec)


# --------------------------------------------------------------- filling in the templates


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _counts(values: Iterable[int]) -> str:
    """The distinct values, ``1,000 / 30,000``."""
    return " / ".join(f"{v:,}" for v in sorted(set(values)))


_TEXTS = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_TEXTS.filters.update(
    percent=format_percent,
    paper_percent=lambda value: format_percent(value, paper_style=True),
    number=format_number,
    fmt=format,
    duration=_duration,
    counts=_counts,
    thousands=lambda value: f"{value:,}",
    capfirst=lambda text: text[:1].upper() + text[1:],
)
_EACH = re.compile(r"^\s*([A-Za-z_]\w*)\s+in\s+(.+)$")


@cache
def _template(text: str) -> jinja2.Template:
    return _TEXTS.from_string(text)


@cache
def _expression(source: str) -> Callable[..., Any]:
    return _TEXTS.compile_expression(source, undefined_to_none=False)


def _text(text: str, context: Mapping[str, Any]) -> str:
    return _template(str(text)).render(context)


def _value(source: str, context: Mapping[str, Any]) -> Any:
    return _expression(source)(**context)


def _contexts(spec: Mapping[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    """The contexts an entry with optional ``each: "NAME in EXPRESSION"`` and ``when:
    EXPRESSION`` stands for (none, one, or one per item).

    Raises:
        ValueError: ``each`` is not of the form ``NAME in EXPRESSION``.
    """
    if "each" in spec:
        match = _EACH.match(spec["each"])
        if match is None:
            raise ValueError(f"each must read 'NAME in EXPRESSION', got {spec['each']!r}")
        name, source = match.groups()
        contexts = [{**context, name: item} for item in _value(source, context)]
    else:
        contexts = [context]
    return [c for c in contexts if "when" not in spec or _value(str(spec["when"]), c)]


def _items(specs: Sequence[Any], context: dict[str, Any]) -> list[Cell]:
    """Header names, bullet items or a row's cells: a text, ``{text, each, when}``, or
    ``{split: EXPRESSION}`` (a compared figure as ours, paper and difference)."""
    items: list[Cell] = []
    for spec in specs:
        if not isinstance(spec, Mapping):
            items.append(_text(spec, context))
            continue
        for inner in _contexts(spec, context):
            if "split" in spec:
                cell: Compared = _value(spec["split"], inner)
                items += [cell.ours_text(), cell.paper_text(), cell.difference_text()]
            else:
                items.append(_text(spec["text"], inner))
    return items


def _rows(spec: str | Sequence[Mapping[str, Any]], context: dict[str, Any]) -> list[list[Cell]]:
    if isinstance(spec, str):  # rows the section's values computed
        return list(context[spec])
    return [_items(row["cells"], inner) for row in spec for inner in _contexts(row, context)]


def _blocks(
    specs: Sequence[Mapping[str, Any]], context: dict[str, Any], results: StudyResults
) -> list[Block]:
    blocks: list[Block] = []
    for spec in specs:
        for inner in _contexts(spec, context):
            if "paragraph" in spec:
                blocks.append(Paragraph(_text(spec["paragraph"], inner)))
            elif "bullets" in spec:
                blocks.append(Bullets([str(item) for item in _items(spec["bullets"], inner)]))
            elif "code" in spec:
                blocks.append(Code(_text(spec["code"], inner)))
            elif "table" in spec:
                table = spec["table"]
                blocks.append(
                    Table(
                        [str(name) for name in _items(table["header"], inner)],
                        _rows(table["rows"], inner),
                        caption=_text(table.get("caption", ""), inner),
                    )
                )
            elif "figure" in spec:
                name = _text(spec["figure"], inner)
                if name in results.figures:
                    blocks.append(Image(results.figures[name], _text(spec["caption"], inner)))
            else:
                raise ValueError(f"a report block needs a known kind, got keys {sorted(spec)}")
    return blocks


def _context(results: StudyResults, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A section's values (:data:`VALUES`), its title and rendered ``labels``."""
    context: dict[str, Any] = {
        "no_counterpart": NO_COUNTERPART,
        "title": spec.get("title", ""),
        **VALUES[spec["values"]](results),
    }
    labels = spec.get("labels", {})
    context["labels"] = {key: _text(text, context) for key, text in labels.items()}
    return context


# ------------------------------------------------------------------- each section's values


def _summary_values(results: StudyResults) -> dict[str, Any]:
    reused = [run for run in results.runs if run.reused]
    return {
        "budget": results.budget,
        "source": paper.SOURCE,
        "seconds": results.seconds,
        "machine": results.machine.get("summary", "this machine"),
        "runs": results.runs,
        "reused": reused,
        "reused_seconds": sum(run.seconds for run in reused),
        "departures": results.departures,
    }


def _by_name(models: Sequence[ModelMeasurement], name: str) -> ModelMeasurement | None:
    return next((m for m in models if m.name == name), None)


def _reported(study: TransferStudy) -> dict[str, paper.TransferRow]:
    return paper.TABLE2 if study.table == 2 else paper.TABLE4


def _off_diagonal(study: TransferStudy) -> Compared:
    """Mean error of the other models on each model's adversarial examples, ours beside the
    paper's, over the cells both report."""
    reported = _reported(study)
    ours, theirs = [], []
    for row in study.matrix.rows:
        if row.kind != "adversarial" or row.name not in reported:
            continue
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            cell = reported[row.name].errors.get(target)
            if target != row.name and cell is not None:
                ours.append(error)
                theirs.append(cell.value)
    return Compared(_mean(ours), paper.Reported(_mean(theirs)))


def _row_mean(study: TransferStudy, kind: str, name: str | None = None) -> Compared:
    """Mean over the columns (off the source's own) of the rows of ``kind`` (and ``name``),
    ours beside the paper's."""
    ours, theirs = [], []
    for row in study.matrix.rows:
        if row.kind != kind or (name is not None and row.name != name):
            continue
        reported = _reported(study).get(_paper_row(study, row.name, row.kind) or "")
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            if row.source == target or reported is None or target not in reported.errors:
                continue
            ours.append(error)
            theirs.append(reported.errors[target].value)
    return Compared(_mean(ours), paper.Reported(_mean(theirs)))


def _mean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def _headline_values(results: StudyResults) -> dict[str, Any]:
    claim = paper.ADVERSARIAL_TRAINING
    values: dict[str, Any] = {
        "fc100": _by_name(results.table1, "FC100-100-10"),
        "table2_transfer": _off_diagonal(results.table2),
        "table2_noise": _row_mean(results.table2, "noise", "Gaussian noise, stddev 0.1"),
        "table4_transfer": _off_diagonal(results.table4),
        "table4_magnified": _row_mean(results.table4, "magnified"),
        "units": results.units,
        "variants": [
            {
                "experiment": c.experiment,
                "description": c.description,
                "seeds": len(c.seeds),
                "compared": Compared(
                    c.spread("backfeed", "test_error").mean,
                    paper.Reported(claim.backfeed_test_error_below),
                    bound=True,
                ),
            }
            for c in results.adversarial_training
        ],
        "baseline": None,
        "robust": _robust_headline(results.adversarial_training),
    }
    if values["fc100"] is not None:
        reported = paper.TABLE1["FC100-100-10"]
        values["fc100_test"] = Compared(values["fc100"].test_error, reported.errors["test"])
        values["fc100_distortion"] = Compared(
            values["fc100"].distortion, reported.distortion, percent=False
        )
    if results.adversarial_training:
        first = results.adversarial_training[0]
        values["baseline"] = {
            "seeds": len(first.seeds),
            "compared": Compared(
                first.spread("baseline", "test_error").mean,
                paper.Reported(claim.weight_decay_test_error),
            ),
        }
    return values


def _robust_headline(comparisons: Sequence[SeedComparison]) -> list[dict[str, Any]]:
    """The adversarial-training comparison's robust figures per arm (the shared baseline,
    then each variant): its robust error at each budget and the FGSM error, means over
    seeds, and the clean error on the same images; the paper reports none."""
    figures = [
        f for f in _compared_figures(comparisons)[1:] if f.percent and "clean error" not in f.label
    ]
    if not figures:
        return []
    first = comparisons[0]
    arms = [("baseline", first, "without backfeeding")]
    arms += [("backfeed", c, f"`{c.experiment}`") for c in comparisons]
    rows = []
    for arm, comparison, name in arms:
        values = "; ".join(
            f"{f.label}: {format_percent(comparison.spread(arm, f.key).mean)}" for f in figures
        )
        clean = comparison.spread(arm, "eval/robust_clean_error").mean
        same = f"; clean error on the same images {format_percent(clean)}" if finite(clean) else ""
        rows.append(
            {
                "name": name,
                "examples": comparison.robust_examples or comparison.examples,
                "seeds": len(comparison.seeds),
                "figures": values + same,
            }
        )
    return rows


def _setup_values(results: StudyResults) -> dict[str, Any]:
    return {
        "commands": results.commands,
        "steps": list(results.steps.items()),
        "seconds": results.seconds,
        "machine": [(key, value) for key, value in results.machine.items() if key != "summary"],
    }


def _table1_values(results: StudyResults) -> dict[str, Any]:
    """Table 1's rows: each model's errors and distortion beside the paper's, then the
    Gaussian-noise rows (Table 2's noise rows on the first Table 1 model)."""
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
    matrix = results.table2.matrix
    for row in matrix.rows:
        if row.kind == "noise" and row.name in paper.TABLE1 and noise_model in matrix.targets:
            reported = paper.TABLE1[row.name]
            rows.append(
                [
                    row.name,
                    "",
                    "",
                    Compared(matrix.error(row.name, noise_model), reported.errors["test"]),
                    Compared(row.distortion, reported.distortion, False),
                ]
            )
    return {"rows": rows, "models": results.table1, "noise_model": noise_model}


def _transfer_values(study: TransferStudy) -> dict[str, Any]:
    """A transfer table's rows: each cell and the row's distortion beside the paper's."""
    rows: list[list[Cell]] = []
    for row in study.matrix.rows:
        match = _paper_row(study, row.name, row.kind)
        paper_row = _reported(study).get(match) if match else None
        label = row.name + (f" ↔ paper's “{match}”" if match and match != row.name else "")
        cells: list[Cell] = [label]
        for target, error in zip(study.matrix.targets, row.errors, strict=True):
            cells.append(Compared(error, paper_row.errors.get(target) if paper_row else None))
        cells.append(
            Compared(row.distortion, paper_row.distortion if paper_row else None, percent=False)
        )
        rows.append(cells)
    return {
        "rows": rows,
        "table": study.table,
        "targets": study.matrix.targets,
        "notes": study.matrix.notes,
        "described": study.described,
    }


def _table3_values(results: StudyResults) -> dict[str, Any]:
    """Table 3's rows: each model's error per split and distortion beside the paper's."""
    by_split = results.table4.by_split
    rows: list[list[Cell]] = []
    for name, errors in zip(by_split.models, by_split.errors, strict=True) if by_split else ():
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
    splits = by_split.splits if by_split else []
    return {"rows": rows, "splits": splits, "models": results.table3}


def _spectral_values(results: StudyResults) -> dict[str, Any]:
    families: dict[tuple[str, ...], list[Any]] = {}
    for model in results.spectral:
        families.setdefault(tuple(s.name for s in model.bounds.stages), []).append(model)
    return {
        "claim": paper.SPECTRAL_CLAIM.text,
        "alexnet": paper.TABLE5_ALEXNET,
        "alexnet_product": math.prod(paper.TABLE5_ALEXNET.values()),
        "families": [{"layers": list(k), "models": v} for k, v in families.items()],
    }


def _spread_text(spread: Spread, percent: bool) -> str:
    """``1.73% ± 0.13 pp``: mean and sample standard deviation over seeds; ``(2 of 3 seeds)``
    follows where some seeds lack the figure."""
    if spread.count == 0:
        return "-"
    std = spread.std
    if percent:
        text = format_percent(spread.mean) + (f" ± {100 * std:.2f} pp" if finite(std) else "")
    else:
        text = format_number(spread.mean, 4) + (f" ± {std:.4f}" if finite(std) else "")
    missing = spread.count < len(spread.values)
    return text + (f" ({spread.count} of {len(spread.values)} seeds)" if missing else "")


def _pp(value: float) -> str:
    """A difference of error rates in percentage points (``-0.35 pp``)."""
    return f"{round(100 * value, 2) + 0.0:+.2f} pp" if finite(value) else "-"


def _compared_figures(comparisons: Sequence[SeedComparison]) -> list[Figure]:
    """The figures of every comparison's table, in order (the first comparison's first)."""
    figures: list[Figure] = []
    for comparison in comparisons:
        figures += [f for f in comparison.figures() if f not in figures]
    return figures


def _adversarial_training_values(results: StudyResults) -> dict[str, Any]:
    """Section 4.2's tables: each variant's mean ± std of every figure beside the shared
    baseline's (clean error beside the paper's), and every run's figures per seed."""
    comparisons = results.adversarial_training
    values: dict[str, Any] = {"claim": paper.ADVERSARIAL_TRAINING, "comparisons": comparisons}
    if not comparisons:
        return values
    first = comparisons[0]
    figures = _compared_figures(comparisons)
    clean, others = figures[0], figures[1:]
    baseline_error = first.spread("baseline", clean.key).mean
    rows: list[list[Cell]] = [
        [
            "Without backfeeding (weight decay only)",
            _spread_text(first.spread("baseline", clean.key), True),
            Compared(baseline_error, paper.Reported(values["claim"].weight_decay_test_error)),
            "",
            *(_spread_text(first.spread("baseline", f.key), f.percent) for f in others),
        ]
    ]
    below = paper.Reported(values["claim"].backfeed_test_error_below)
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
    per_seed: list[list[Cell]] = []
    for arm, named in (
        ("baseline", [(first, "without backfeeding")]),
        ("backfeed", [(c, f"`{c.experiment}`") for c in comparisons]),
    ):
        for comparison, name in named:
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
    return {
        **values,
        "first": first,
        "figures": figures,
        "clean": clean,
        "others": others,
        "rows": rows,
        "per_seed": per_seed,
    }


def _units_values(results: StudyResults) -> dict[str, Any]:
    units = results.units
    return {
        "claim": paper.UNITS_CLAIM.text,
        "units": units,
        "units_model": results.units_model,
        "level": round(100 * units.level),
        "directions": [
            {"kind": kind, "stats": units.stats[kind]} for kind in ("unit", "random", "baseline")
        ],
    }


#: Each section's values by the name ``templates/report.yaml`` gives them.
VALUES: dict[str, Callable[[StudyResults], dict[str, Any]]] = {
    "summary": _summary_values,
    "headline": _headline_values,
    "setup": _setup_values,
    "table1": _table1_values,
    "table2": lambda results: _transfer_values(results.table2),
    "table3": _table3_values,
    "table4": lambda results: _transfer_values(results.table4),
    "spectral": _spectral_values,
    "adversarial_training": _adversarial_training_values,
    "units": _units_values,
    "runs": lambda results: {"runs": results.runs},
    "budget": lambda results: {"budget": results.budget, "budget_text": results.budget_text},
}
