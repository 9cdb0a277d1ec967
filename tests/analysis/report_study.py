"""A :class:`StudyResults` rebuilt from a reproduction's ``results.json`` (what
``cli.reproduce.results_record`` writes), for the report's rendering tests.

The JSON keeps every figure the report shows but not a few descriptions (transfer notes and
what the examples were, the unit analysis' layer, the spectral models' descriptions): those
are filled in with fixed texts. Figures are read from ``figures`` (name to PNG path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from intriguing.analysis.reproduction import (
    ModelMeasurement,
    SeedComparison,
    SpectralModel,
    StudyResults,
    TrainedRun,
)
from intriguing.analysis.spectral import SpectralBounds, StageBound
from intriguing.analysis.transfer import SplitErrors, TransferRow, TransferStudy, TransferTable
from intriguing.analysis.units import PurityStats, UnitAnalysis


def _model(record: dict[str, Any]) -> ModelMeasurement:
    return ModelMeasurement(
        name=record["model"],
        experiment=record["experiment"],
        train_error=record["train_error"],
        train_examples=record["train_examples"],
        test_error=record["test_error"],
        test_examples=record["test_examples"],
        distortion=_float(record["min_distortion"]),
        distortion_success=_float(record["min_distortion_success"]),
        distortion_examples=record["distortion_examples"],
        distortions=torch.empty(0),
        cached=record["cached"],
        seconds=record["seconds"],
    )


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _transfer(table: int, records: list[dict[str, Any]], by_split: Any) -> TransferStudy:
    fixed = {"row", "kind", "av_distortion", "examples", "success_rate"}
    targets = [key for key in records[0] if key not in fixed]
    rows = []
    for record in records:
        name, kind = record["row"], record["kind"]
        source = name if kind == "adversarial" else None
        if kind == "magnified":
            source = name.removeprefix("Magnified, made for ")
        rows.append(
            TransferRow(
                name=name,
                kind=kind,
                errors=[_float(record[t]) for t in targets],
                distortion=_float(record["av_distortion"]),
                examples=record["examples"],
                source=source,
                success_rate=record["success_rate"],
            )
        )
    notes = [f"Table {table}'s note: rows made on the test images.", "A second note | with a pipe."]
    split = None
    if by_split:
        splits = [key for key in by_split[0] if key not in ("model", "av_distortion")]
        split = SplitErrors(
            models=[r["model"] for r in by_split],
            splits=splits,
            errors=[[_float(r[s]) for s in splits] for r in by_split],
            distortion=[_float(r["av_distortion"]) for r in by_split],
        )
    return TransferStudy(
        table=table,
        matrix=TransferTable(targets=targets, rows=rows, notes=notes),
        by_split=split,
        sources=[],
        rows=[],
        grid=None,  # type: ignore[arg-type]
        described=f"mnist test, {records[0]['examples']:,} examples",
    )


def _units(summary: dict[str, float]) -> UnitAnalysis:
    stats = {
        kind: PurityStats(
            mean=summary[f"units/{kind}_purity_mean"],
            std=summary[f"units/{kind}_purity_std"],
            ci_low=summary[f"units/{kind}_purity_ci_low"],
            ci_high=summary[f"units/{kind}_purity_ci_high"],
            count=int(summary[f"units/{kind}_count"]),
        )
        for kind in ("unit", "random", "baseline")
    }
    empty = torch.empty(0)
    return UnitAnalysis(
        layer="fc1",
        layer_shape=(100,),
        top_k=int(summary["units/top_k"]),
        seed=0,
        num_images=int(summary["units/num_images"]),
        num_classes=10,
        units=empty,
        unit_top=empty,
        unit_purity=empty,
        random_vectors=empty,
        random_top=empty,
        random_purity=empty,
        baseline_purity=empty,
        skipped_units=int(summary["units/skipped_units"]),
        level=0.95,
        stats=stats,
        p_values={
            key.removeprefix("units/p_"): value
            for key, value in summary.items()
            if key.startswith("units/p_")
        },
    )


def _comparison(record: dict[str, Any]) -> SeedComparison:
    runs: dict[str, list[dict[str, float]]] = {"backfeed": [], "baseline": []}
    seeds: list[int] = []
    for run in record["runs"]:
        figures = {k: _float(v) for k, v in run.items() if k not in ("experiment", "arm", "seed")}
        runs[run["arm"]].append(figures)
        if run["arm"] == "backfeed":
            seeds.append(run["seed"])
    return SeedComparison(
        seeds=seeds,
        runs=runs,
        experiment=record["experiment"],
        description=record["description"],
        settings=record["settings"],
        attack=record["attack"],
        examples=record["examples"],
        robust_examples=record.get("robust_examples", 0),
    )


def _spectral(name: str, summary: dict[str, float]) -> SpectralModel:
    stages = tuple(
        StageBound(key.removeprefix("spectral/"), (), (), composed=value)
        for key, value in summary.items()
        if key != "spectral/product"
    )
    return SpectralModel(name, f"{name} network", SpectralBounds(stages))


def study_from_record(path: Path, figures: dict[str, Path]) -> StudyResults:
    """The study a ``results.json`` records, with ``figures`` as its PNG files."""
    record = json.loads(path.read_text())
    splits = record["table3"]["splits"]
    return StudyResults(
        budget=record["budget"],
        budget_text="# budget\nname: quick\ntable1: {epochs: 20}\n",
        departures=record["departures"],
        table1=[_model(m) for m in record["table1"]],
        table2=_transfer(2, record["table2"], None),
        table3=[_model(m) for m in record["table3"]["models"]],
        table4=_transfer(4, record["table4"], splits),
        adversarial_training=[_comparison(c) for c in record["adversarial_training"]],
        units=_units(record["units"]),
        units_model="conv (`conv`)",
        spectral=[_spectral(name, s) for name, s in record["spectral"].items()],
        runs=[TrainedRun(**run) for run in record["runs"]],
        steps=record["steps_seconds"],
        machine=record["machine"],
        commands=record["commands"],
        figures=figures,
    )
