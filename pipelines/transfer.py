"""The transfer study of ``intriguing transfer`` (Tables 2-4 of Szegedy et al. 2013) on
given checkpoints: their data, the study (:func:`analysis.transfer.transfer_study`), its files
and its W&B run.

:func:`run_transfer` loads the checkpoints and their examples and runs the study;
:func:`write_transfer` writes the tables (markdown, CSV, JSON) and figures;
:func:`log_transfer` logs them, and the adversarial sets as artifacts, to W&B.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intriguing.analysis.plots import save_figure
from intriguing.analysis.transfer import AdversarialCache, TransferStudy, transfer_study
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.data import split_examples
from intriguing.pipelines.tracking import AnalysisTracking, analysis_run
from intriguing.trainers import CheckpointError, load_classifier
from intriguing.trainers.checkpoints import read_checkpoint

DATA_KEYS_KEPT = ("name", "split", "val_size", "split_seed")  # what picks the same examples


# ------------------------------------------------------------------------------ data


def data_settings(paths: Sequence[Path], dataset: str | None) -> dict[str, Any]:
    """The data module settings that select the checkpoints' examples.

    Every checkpoint is read (with ``weights_only=True``) first, so a missing or unsafe file
    fails here, by name, before anything is computed. The data set is ``dataset`` or the one
    the checkpoints were trained on (they must agree); the validation hold-out and the P1/P2
    halves are those of the first checkpoint's run.
    """
    found: dict[str, Any] | None = None
    for path in paths:
        hparams = read_checkpoint(path).get("datamodule_hyper_parameters") or {}
        name = hparams.get("name")
        if name is None:
            continue
        if dataset is None and found is not None and name != found["name"]:
            raise CheckpointError(
                f"checkpoint {path}: trained on {name}, but {paths[0]} on {found['name']} "
                "(give --data to evaluate them on one data set)"
            )
        if found is None:
            found = {key: hparams[key] for key in DATA_KEYS_KEPT if key in hparams}
    settings = dict(found or {})
    if dataset is not None:
        settings["name"] = dataset
    settings.setdefault("name", "mnist")
    settings.setdefault("val_size", 0)
    return settings


def load_models(
    paths: Sequence[Path], names: Sequence[str], input_shape: Sequence[int], num_classes: int
) -> dict[str, nn.Module]:
    """Each checkpoint's network, in eval mode; one for other inputs or classes is refused."""
    models: dict[str, nn.Module] = {}
    for path, name in zip(paths, names, strict=True):
        classifier = load_classifier(path, input_shape=input_shape)
        if classifier.network.num_classes != num_classes:
            raise CheckpointError(
                f"checkpoint {path}: predicts {classifier.network.num_classes} classes, "
                f"the data have {num_classes}"
            )
        models[name] = classifier.network.eval()
    return models


@dataclass
class TransferResult:
    """A transfer study run on checkpoints: the study, what its examples are, and its wall
    time in seconds (loading, attacks and tables)."""

    study: TransferStudy
    described: str
    seconds: float


def run_transfer(
    checkpoints: Mapping[str, Path],
    attack: dict[str, Any],
    *,
    table: int = 2,
    split: str = "test",
    dataset: str | None = None,
    data_dir: str = "data",
    subset: int | None = None,
    noise: list[tuple[str, float | None]] | None = None,
    magnify: list[float] | None = None,
    clean_row: bool = True,
    cache_dir: Path | str,
    grid_examples: int = 8,
    batch_size: int = 500,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> TransferResult:
    """How adversarial examples made for each of ``checkpoints`` (``{name: path}``) transfer
    to the others: Table 2 (``table=2``) or Tables 3 and 4 (``table=4``, each model's error
    on P1, P2 and the test set too), on the first ``subset`` examples of ``split`` of the
    data set the checkpoints were trained on (or ``dataset``; :func:`data_settings`).

    ``attack`` is an attack spec (``{"name": "lbfgs", ...}``); ``noise`` and ``magnify`` the
    extra rows (:func:`analysis.transfer.transfer_study`). Adversarial sets are cached below
    ``cache_dir``.

    Raises:
        CheckpointError: an unreadable checkpoint, or checkpoints of other data or classes.
        ValueError: ``subset`` below 1.
    """
    started = time.perf_counter()
    if subset is not None and subset < 1:
        raise ValueError(f"run_transfer: subset={subset}: must be at least 1")
    names, paths = list(checkpoints), list(checkpoints.values())
    settings = data_settings(paths, dataset)
    settings["data_dir"] = data_dir
    datamodule = build_datamodule({**settings, "on_device": False})
    models = load_models(paths, names, datamodule.input_shape, datamodule.num_classes)
    models = {name: model.to(device or torch.device("cpu")) for name, model in models.items()}
    images, labels = split_examples(datamodule, split, subset)
    described = f"{settings['name']} {split}, {len(labels)} examples"
    report(f"transfer: {len(models)} models, {described}, attack {attack}")
    splits = None
    if table == 4:
        splits = {name: datamodule.tensors(name.lower()) for name in ("P1", "P2", "test")}
    study = transfer_study(
        models,
        images,
        labels,
        attack,
        table=table,
        checkpoints=dict(checkpoints),
        cache=AdversarialCache(cache_dir),
        noise=noise,
        magnify=magnify,
        clean_row=clean_row,
        splits=splits,
        described=described,
        grid_examples=grid_examples,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        report=report,
    )
    return TransferResult(study, described, time.perf_counter() - started)


def write_transfer(out: Path, result: TransferResult, command: str) -> dict[str, Path]:
    """Write ``tableN.md``/``.csv`` (and ``table3.md``/``.csv`` for layout 4), the heatmap and
    example grid as PNG, and ``transfer.json`` (tables, notes, adversarial sets) into
    ``out``; ``command`` (the command line) heads the markdown. Returns the paths by kind."""
    study, described, seconds = result.study, result.described, result.seconds
    table, matrix, by_split, grid = study.table, study.matrix, study.by_split, study.grid
    sources = study.sources
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table{table}"
    files = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv"}
    header = f"<!-- {command}; {seconds:.0f} s -->\n\n"
    text = matrix.to_markdown()
    if by_split is not None:
        files["table3_markdown"] = out / "table3.md"
        files["table3_csv"] = out / "table3.csv"
        files["table3_markdown"].write_text(header + by_split.to_markdown())
        files["table3_csv"].write_text(by_split.to_csv())
    files["markdown"].write_text(header + text)
    files["csv"].write_text(matrix.to_csv())
    files["heatmap"] = save_figure(matrix.heatmap(), out / f"{stem}_heatmap.png")
    files["examples"] = save_figure(grid, out / f"{stem}_examples.png")
    record = {
        "command": command,
        "seconds": seconds,
        "examples": described,
        "table": matrix.records(),
        "table3": by_split.records() if by_split is not None else None,
        "notes": matrix.notes,
        "sets": [
            {
                "name": s.name,
                "key": s.key,
                "path": str(s.path),
                "cached": s.cached,
                "success_rate": s.success_rate,
                "mean_distortion": s.mean_distortion,
                "attack": s.settings.get("attack"),
            }
            for s in sources
        ],
    }
    files["json"] = out / "transfer.json"
    files["json"].write_text(json.dumps(record, indent=2) + "\n")
    return files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def log_transfer(
    result: TransferResult,
    files: dict[str, Path],
    *,
    tracking: AnalysisTracking,
    cache_dir: Path | str,
) -> None:
    """The tables, the heatmap and example grid as images, the adversarial sets as versioned
    dataset artifacts (``wandb artifact get`` puts ``KEY.pt`` into a cache folder, where this
    command finds it on another machine). ``tracking`` says whether and where to log
    (:func:`pipelines.tracking.analysis_run`); ``files`` are :func:`write_transfer`'s."""
    study, described, seconds = result.study, result.described, result.seconds
    table, matrix, by_split, sources = study.table, study.matrix, study.by_split, study.sources
    config = {
        "table": table,
        "examples": described,
        "sources": [s.name for s in sources],
        "attack": sources[0].settings.get("attack") if sources else None,
        "cache_dir": str(cache_dir),
    }
    with analysis_run(tracking, job_type="transfer", config=config, name=f"table{table}") as run:
        if run is None:
            return
        import wandb

        records = matrix.records()
        columns = list(records[0])
        logged: dict[str, Any] = {
            f"transfer/table{table}": wandb.Table(
                columns=columns, data=[[r[c] for c in columns] for r in records]
            ),
            "transfer/heatmap": wandb.Image(str(files["heatmap"])),
            "transfer/examples": wandb.Image(str(files["examples"])),
        }
        if by_split is not None:
            rows = by_split.records()
            keys = list(rows[0])
            logged["transfer/table3"] = wandb.Table(
                columns=keys, data=[[r[k] for k in keys] for r in rows]
            )
        run.log(logged)
        for row in matrix.rows:
            for target, error in zip(matrix.targets, row.errors, strict=True):
                run.summary[f"transfer/error/{row.name}/{target}"] = error
            run.summary[f"transfer/distortion/{row.name}"] = row.distortion
        run.summary["transfer/seconds"] = seconds
        for source in sources:
            if source.path is None:
                continue
            artifact = wandb.Artifact(
                name=f"adversarial-{_slug(source.name)}",
                type="dataset",
                description=f"adversarial examples made for {source.name} ({described})",
                metadata={
                    "key": source.key,
                    "source": source.name,
                    "attack": source.settings.get("attack"),
                    "examples": described,
                    "success_rate": source.success_rate,
                    "mean_distortion": source.mean_distortion,
                },
            )
            artifact.add_file(str(source.path), name=source.path.name)
            run.log_artifact(artifact)
