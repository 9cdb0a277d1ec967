"""``intriguing transfer``: how adversarial examples transfer between models (Tables 2-4).

Szegedy et al. (2013), Table 2: adversarial examples made for one MNIST model are evaluated
on every other; Gaussian-noise rows (stddev 0.1 and 0.3) show that noise of that size barely
matters. Tables 3 and 4 (``--table 4``): models trained on the disjoint halves P1 and P2 of the
training set, each one's error on P1, P2 and the test set, the transfer matrix, noise at the
adversarial examples' distortion and at 0.1, and the "magnified" rows.

Adversarial sets are made once per source model and cached (``--cache-dir``), keyed by the
checkpoint's contents, the attack settings and the examples; ``--zoo table2`` (or
``table4``) first trains whichever of the paper's models has no finished run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from intriguing.analysis.plots import save_figure
from intriguing.analysis.transfer import (
    AdversarialCache,
    PerturbedSet,
    SplitErrors,
    TransferTable,
    checkpoint_names,
    transfer_study,
)
from intriguing.attacks.registry import attack_entry
from intriguing.cli.arguments import torch_device
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.tracking import analysis_run
from intriguing.trainers import CheckpointError, load_classifier
from intriguing.trainers.checkpoints import read_checkpoint

DATA_KEYS_KEPT = ("name", "split", "val_size", "split_seed")  # what picks the same examples


# ------------------------------------------------------------------------ arguments


def attack_spec(name: str, options: Sequence[str]) -> dict[str, Any]:
    """The attack settings from ``--attack`` and ``--attack-option KEY=VALUE`` words."""
    spec: dict[str, Any] = {"name": name}
    try:
        known = [key for key in attack_entry(name).keys if key != "layer"]
    except ValueError as error:
        raise ConfigError(f"--attack {error}") from None
    for word in options:
        key, sep, raw = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--attack-option {word!r}: expected KEY=VALUE")
        if key not in known:
            raise ConfigError(
                f"--attack-option {key}: unknown setting of {name} (known: {', '.join(known)})"
            )
        spec[key] = _option_value(word, raw)
    return spec


def _option_value(word: str, raw: str) -> Any:
    """A setting's value read as an override's is (``5``, ``0.1``, ``linf``, ``null``,
    ``[0, 1]``), by OmegaConf's parser like every ``key=value`` word of the project."""
    try:
        value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
    except Exception:  # the parser's own error types
        raise ConfigError(f"--attack-option {word!r}: cannot parse the value") from None
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def noise_rows(words: Sequence[str]) -> list[tuple[str, float | None]]:
    """``[("stddev", 0.1), ("distortion", 0.05), ("matched", None)]`` from ``--noise`` words."""
    rows: list[tuple[str, float | None]] = []
    for word in words:
        kind, sep, raw = word.partition("=")
        if word == "matched":
            rows.append(("matched", None))
            continue
        if not sep:
            kind, raw = "stddev", word
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if kind not in ("stddev", "distortion") or not value >= 0 or not math.isfinite(value):
            raise ConfigError(f"--noise {word!r}: expected a stddev (0.1), distortion=D or matched")
        rows.append((kind, value))
    return rows


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


# ------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    progress = not args.no_progress
    table, split, names, paths = _sources(args)
    if args.subset is not None and args.subset < 1:
        raise ConfigError(f"--subset {args.subset}: must be at least 1")
    attack = attack_spec(args.attack, args.attack_option)
    noise = noise_rows(args.noise) if args.noise is not None else None
    magnify = list(args.magnify) if args.magnify is not None else None
    if magnify is not None and any(not value > 0 for value in magnify):
        raise ConfigError(f"--magnify {magnify}: distortions must be positive")
    device = torch_device(args.device)

    settings = data_settings(paths, args.data)
    settings["data_dir"] = args.data_dir or os.environ.get("INTRIGUING_DATA_DIR", "data")
    datamodule = build_datamodule({**settings, "on_device": False})
    models = load_models(paths, names, datamodule.input_shape, datamodule.num_classes)
    models = {name: model.to(device) for name, model in models.items()}
    datamodule.prepare_data()
    datamodule.setup("test")
    images, labels = datamodule.tensors(split)
    if args.subset is not None:
        images, labels = images[: args.subset], labels[: args.subset]
    described = f"{settings['name']} {split}, {len(labels)} examples"
    print(f"transfer: {len(models)} models, {described}, attack {attack}", flush=True)

    study = transfer_study(
        models,
        images,
        labels,
        attack,
        table=table,
        checkpoints=dict(zip(names, paths, strict=True)),
        cache=AdversarialCache(args.cache_dir),
        noise=noise,
        magnify=magnify,
        clean_row=not args.no_clean_row,
        splits=(
            {
                "P1": datamodule.tensors("p1"),
                "P2": datamodule.tensors("p2"),
                "test": datamodule.tensors("test"),
            }
            if table == 4
            else None
        ),
        described=described,
        grid_examples=args.examples,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=progress,
        report=lambda line: print(line, flush=True),
    )
    matrix, by_split, sources = study.matrix, study.by_split, study.sources
    seconds = time.perf_counter() - started
    out = Path(args.out) if args.out else _new_folder(Path("outputs") / "transfer")
    files = _write(out, table, matrix, by_split, study.grid, sources, args, seconds, described)
    if by_split is not None:
        print(by_split.to_markdown())
    print(matrix.to_markdown())
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    print(f"wall time {seconds:.0f} s")
    _log_to_wandb(args, table, matrix, by_split, files, sources, described, seconds)
    return 0


def _sources(args: argparse.Namespace) -> tuple[int, str, list[str], list[Path]]:
    """(table, split, names, checkpoint paths) from --checkpoints or --zoo."""
    if args.zoo:
        from intriguing.cli.zoo import ensure_trained, load_zoo

        zoo = load_zoo(args.zoo)
        trained = ensure_trained(zoo.experiments, args.overrides)
        paths = [trained[experiment] for experiment in zoo.experiments]
        names = args.names or zoo.names
        table = args.table or zoo.table
        split = args.split or zoo.split
    else:
        # argparse gives --checkpoints the words after it: a key=value there is an override.
        stray = [w for w in args.checkpoints if "=" in w and not Path(w).exists()]
        if args.overrides or stray:
            raise ConfigError(
                f"{[*args.overrides, *stray][0]!r}: key=value overrides are for --zoo training runs"
            )
        paths = [Path(p) for p in args.checkpoints]
        names = args.names or checkpoint_names(paths)
        table, split = args.table or 2, args.split or "test"
    if len(names) != len(paths):
        raise ConfigError(f"--names: {len(names)} names for {len(paths)} checkpoints")
    if len(set(names)) != len(names):
        raise ConfigError(f"--names: names must differ ({names})")
    return table, split, list(names), paths


def _new_folder(base: Path) -> Path:
    from intriguing.cli.experiment import new_run_dir

    return new_run_dir(str(base.parent), base.name)


def _write(
    out: Path,
    table: int,
    matrix: TransferTable,
    by_split: SplitErrors | None,
    grid: Any,
    sources: list[PerturbedSet],
    args: argparse.Namespace,
    seconds: float,
    described: str,
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table{table}"
    files = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv"}
    command = "intriguing " + " ".join(shlex.quote(word) for word in sys.argv[1:])
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


def _log_to_wandb(
    args: argparse.Namespace,
    table: int,
    matrix: TransferTable,
    by_split: SplitErrors | None,
    files: dict[str, Path],
    sources: list[PerturbedSet],
    described: str,
    seconds: float,
) -> None:
    """The tables, the heatmap and example grid as images, the adversarial sets as versioned
    dataset artifacts (``wandb artifact get`` puts ``KEY.pt`` into a cache folder, where this
    command finds it on another machine)."""
    config = {
        "table": table,
        "examples": described,
        "sources": [s.name for s in sources],
        "attack": sources[0].settings.get("attack") if sources else None,
        "cache_dir": args.cache_dir,
    }
    with analysis_run(args, job_type="transfer", config=config, name=f"table{table}") as run:
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
