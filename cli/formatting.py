"""A run's summary and the demo's comparison as text for the terminal (the CLI's part of
``intriguing train``; the comparison's data is :func:`pipelines.train.comparison_table`)."""

from __future__ import annotations

from intriguing.analysis.robustness import (
    headline_figures,
    robust_attacks_text,
)
from intriguing.pipelines.runs import RunSummary
from intriguing.pipelines.train import comparison_table, figure_text


def robust_note(summary: RunSummary) -> str | None:
    """How a run's robust errors were measured, in one line (``None`` without them)."""
    metrics = summary.metrics
    attacks = robust_attacks_text(metrics)
    if not attacks:
        return None
    robust = int(metrics.get("eval/robust_examples", 0))
    examples = int(metrics.get("eval/examples", 0))
    text = (
        f"robust error: an image counts as wrong when misclassified clean or fooled by any of "
        f"{attacks} within the budget, on the first {robust} test images"
    )
    if examples and examples != robust:
        text += f" (a subset, for time); minimum distortion on the first {examples}"
    return text


def masking_note(summary: RunSummary) -> str | None:
    """The gradient-masking checks a run violated, by name (``None`` without robust error)."""
    prefix = "eval/masking/"
    checks = {k[len(prefix) :]: v for k, v in summary.metrics.items() if k.startswith(prefix)}
    if not checks:
        return None
    violated = sorted(name for name, value in checks.items() if value)
    if not violated:
        return f"gradient-masking checks: {len(checks)} passed, none violated"
    return f"gradient-masking checks VIOLATED: {', '.join(violated)}"


def format_comparison(run: RunSummary, baseline: RunSummary, reused: bool) -> str:
    """The demo's closing table (:func:`comparison_table`): the run against its baseline,
    side by side, then how the robust errors were measured and where the baseline is."""
    header, rows = comparison_table(run, baseline)
    first = max([len(row[0]) for row in rows] + [26])
    width = max(len(run.name), len(baseline.name), 12)
    lines = [f"{'':<{first}} {header[1]:>{width}} {header[2]:>{width}}"]
    lines += [f"{row[0]:<{first}} {row[1]:>{width}} {row[2]:>{width}}" for row in rows]
    note = robust_note(run)
    examples = int(run.metrics.get("eval/examples", 0))
    if note:
        lines.append(f"({note})")
    elif examples:
        lines.append(f"(adversarial figures on the first {examples} test images)")
    for summary in (baseline, run):
        masking = masking_note(summary)
        if masking and "VIOLATED" in masking:
            lines.append(f"{summary.name}: {masking}")
    lines.append(f"baseline: {'reused from ' if reused else ''}{baseline.run_dir}")
    return "\n".join(lines)


def format_summary(summary: RunSummary) -> str:
    """A few lines for the terminal: errors in percent, then where the run lives."""
    lines = [f"{summary.name}: {summary.epochs} epochs in {summary.seconds:.0f} s"]
    for key in ("train/error", "val/error", "test/error"):
        if key in summary.metrics:
            lines.append(f"  {key:<12} {100 * summary.metrics[key]:6.2f}%")
    figures = headline_figures(summary.metrics)
    width = max([len(figure.label) for figure in figures] + [12])
    for figure in figures:
        lines.append(
            f"  {figure.label:<{width}} {figure_text(summary.metrics[figure.key], figure.percent)}"
        )
    for note in (robust_note(summary), masking_note(summary)):
        if note:
            lines.append(f"  ({note})")
    if summary.checkpoint:
        lines.append(f"  checkpoint   {summary.checkpoint}")
    if summary.best_checkpoint:
        lines.append(f"  best         {summary.best_checkpoint}")
    if summary.logs:
        lines.append(f"  run logs     {summary.logs}")
    return "\n".join(lines)
