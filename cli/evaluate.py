"""``intriguing evaluate``: robust error at fixed budgets, per attack and their union, with
the gradient-masking checks (the parser is in :mod:`intriguing.cli.parsers`).

::

    intriguing evaluate --checkpoint A.ckpt --checkpoint B.ckpt --attack autoattack \\
        --norm linf --epsilon 0.1 0.3 --subset 1000 --out outputs/eval
    intriguing evaluate --checkpoint run.ckpt --target my_pkg.models:Net --attack apgd-ce pgd
    intriguing evaluate --model nets.py:build --state-dict w.pt --data cifar10 --epsilon 0.03

Writes ``DIR/results.json`` (per model and budget: ``clean_error``, ``robust_error`` per attack
and ``union``, ``examples``, ``seconds``; the masking checks), ``DIR/results.md`` and
``DIR/robust_error.png``; logs the same to W&B with ``--wandb``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from intriguing.analysis.evaluation import (
    ATTACKS,
    NORMS,
    UNION,
    AttackSettings,
    RobustnessEvaluation,
    evaluate_robustness,
    evaluation_header,
    evaluation_rows,
    robust_error_figure,
)
from intriguing.analysis.plots import save_figure
from intriguing.analysis.tables import markdown_table
from intriguing.analysis.transfer import checkpoint_names
from intriguing.attacks.peers import import_torchattacks
from intriguing.cli.arguments import torch_device, wandb_tracking
from intriguing.cli.spectral import build_model, load_weights
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.data import split_examples
from intriguing.pipelines.runs import new_run_dir
from intriguing.pipelines.tracking import analysis_run
from intriguing.pipelines.transfer import data_settings
from intriguing.trainers import CheckpointError, load_classifier
from intriguing.trainers.checkpoints import load_lightning_module

PEERS = ("autoattack", "autoattack-fast", "apgd-ce", "apgd-t", "fab", "square")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, in one line each (:class:`ConfigError`), what cannot run: before any model or
    data is loaded."""
    unknown = [name for name in args.attack if name not in ATTACKS]
    if unknown:
        raise ConfigError(f"--attack {unknown[0]}: unknown attack (known: {', '.join(ATTACKS)})")
    if len(set(args.attack)) != len(args.attack):
        raise ConfigError(f"--attack {' '.join(args.attack)}: each attack at most once")
    if args.norm not in NORMS:
        raise ConfigError(f"--norm {args.norm}: expected one of {', '.join(NORMS)}")
    bad = [e for e in args.epsilon if not e > 0 or e != e or e == float("inf")]
    if bad:
        raise ConfigError(f"--epsilon {bad[0]}: budgets must be positive and finite")
    if args.peer_dtype not in ("float32", "float64"):
        raise ConfigError(f"--peer-dtype {args.peer_dtype}: expected float32 or float64")
    if (args.mean is None) != (args.std is None):
        raise ConfigError("--mean and --std go together")
    if args.checkpoint:
        if args.state_dict:
            raise ConfigError("--state-dict goes with --model, not --checkpoint")
        for path in args.checkpoint:
            if not Path(path).is_file():
                raise ConfigError(f"--checkpoint {path}: no such file")
    elif args.target:
        raise ConfigError("--target goes with --checkpoint (the class the checkpoints hold)")
    if any(name in PEERS for name in args.attack):
        try:
            import_torchattacks()
        except ImportError as error:
            raise ConfigError(f"--attack {' '.join(args.attack)}: {error}") from None


def load_models(args: argparse.Namespace) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The models by name, in eval mode, and the data settings that select their examples."""
    if args.checkpoint:
        paths = [Path(p) for p in args.checkpoint]
        names = checkpoint_names(paths)
        models: dict[str, nn.Module] = {}
        for name, path in zip(names, paths, strict=True):
            if args.target:
                models[name] = load_lightning_module(args.target, path)
            else:
                models[name] = load_classifier(path).network.eval()
        return models, _data_settings(paths, args.data)
    model = build_model(args.model)  # ConfigError naming the option
    if args.state_dict:
        load_weights(model, Path(args.state_dict))
    return {args.model: model.eval()}, {"name": args.data or "mnist", "val_size": 0}


def _data_settings(paths: list[Path], dataset: str | None) -> dict[str, Any]:
    """The data set the checkpoints were trained on (their saved data module settings; the
    first one's), or ``dataset``."""
    return data_settings(paths, dataset)


def load_examples(settings: dict[str, Any], args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    """The ``--split`` images ``(N, C, H, W)`` in ``[0, 1]`` and labels, ``--subset`` first."""
    data_dir = args.data_dir or os.environ.get("INTRIGUING_DATA_DIR", "data")
    module = build_datamodule({**settings, "data_dir": data_dir, "on_device": False})
    return split_examples(module, args.split, args.subset)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    device = torch_device(args.device)
    models, settings = load_models(args)
    images, labels = load_examples(settings, args)
    attack_settings = AttackSettings(
        steps=args.steps,
        pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts,
        square_queries=args.square_queries,
        peer_dtype=torch.float64 if args.peer_dtype == "float64" else torch.float32,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    described = f"{settings['name']} {args.split}, {len(labels)} examples"
    print(
        f"evaluate: {len(models)} model(s), {described}, {args.norm} epsilon "
        f"{' '.join(f'{e:g}' for e in sorted(args.epsilon))}, attacks {' '.join(args.attack)}",
        flush=True,
    )
    evaluations: dict[str, RobustnessEvaluation] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        started = time.perf_counter()
        try:
            evaluations[name] = evaluate_robustness(
                model.to(device),
                images,
                labels,
                attacks=args.attack,
                epsilons=args.epsilon,
                norm=args.norm,
                settings=attack_settings,
                mean=args.mean,
                std=args.std,
                large=args.large_epsilon,
                progress=not args.no_progress,
                description=name,
            )
        except ValueError as error:  # examples the model cannot take, mean/std that do not fit
            raise CheckpointError(f"{name}: {error}") from None
        seconds[name] = time.perf_counter() - started
    out = Path(args.out) if args.out else _new_folder()
    record = results_record(evaluations, seconds, args, described)
    table = results_markdown(evaluations, args.attack)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "results.md").write_text(table)
    figure = robust_error_figure(evaluations, title=described)
    plot = save_figure(figure, out / "robust_error.png")
    print(table, end="")  # the results and every model's gradient-masking checks
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {plot}")
    _log(args, record, table, plot, evaluations)
    return 0


def results_record(
    evaluations: dict[str, RobustnessEvaluation],
    seconds: dict[str, float],
    args: argparse.Namespace,
    described: str,
) -> dict[str, Any]:
    """``results.json``: the settings, and per model its budgets and masking checks."""
    return {
        "data": described,
        "split": args.split,
        "subset": args.subset,
        "norm": args.norm,
        "epsilons": sorted(args.epsilon),
        "attacks": list(args.attack),
        "settings": {
            "steps": args.steps,
            "pgd_steps": args.pgd_steps,
            "pgd_restarts": args.pgd_restarts,
            "square_queries": args.square_queries,
            "peer_dtype": args.peer_dtype,
            "seed": args.seed,
        },
        "models": {
            name: {
                "source": _source(args, name),
                **evaluation.to_dict(),
                "seconds": seconds[name],
                "masking_violations": [c.name for c in evaluation.masking if c.violated],
            }
            for name, evaluation in evaluations.items()
        },
    }


def results_markdown(evaluations: dict[str, RobustnessEvaluation], attacks: list[str]) -> str:
    """The results table (robust error per attack and the union, per model and budget) and
    each model's masking checks, as markdown."""
    rows = [row for name, ev in evaluations.items() for row in evaluation_rows(name, ev)]
    header = evaluation_header(attacks)
    text = markdown_table(header, rows, right_aligned=[False] + [True] * (len(header) - 1))
    for name, evaluation in evaluations.items():
        text += f"\nGradient-masking checks, {name}:\n\n"
        text += "".join(f"- {check.line()}\n" for check in evaluation.masking)
    return text


def _source(args: argparse.Namespace, name: str) -> dict[str, Any]:
    if args.checkpoint:
        paths = [Path(p) for p in args.checkpoint]
        path = dict(zip(checkpoint_names(paths), paths, strict=True))[name]
        return {"checkpoint": str(path), "target": args.target}
    return {"model": args.model, "state_dict": args.state_dict}


def _new_folder() -> Path:
    return new_run_dir("outputs", "evaluate")


def _log(
    args: argparse.Namespace,
    record: dict[str, Any],
    table: str,
    plot: Path,
    evaluations: dict[str, RobustnessEvaluation],
) -> None:
    """The table, the plot and each model's union error per budget, to W&B."""
    config = {key: value for key, value in record.items() if key != "models"}
    with analysis_run(wandb_tracking(args), job_type="evaluate", config=config) as wandb_run:
        if wandb_run is None:
            return
        import wandb

        columns = ["model", "epsilon", "clean_error", *args.attack, UNION, "examples", "seconds"]
        data = [
            [
                name,
                b.epsilon,
                b.clean_error,
                *(b.robust_error[a] for a in args.attack),
                b.robust_error[UNION],
                b.examples,
                b.seconds,
            ]
            for name, ev in evaluations.items()
            for b in ev.budgets
        ]
        wandb_run.log(
            {
                "evaluate/results": wandb.Table(columns=columns, data=data),
                "evaluate/robust_error": wandb.Image(str(plot)),
            }
        )
        for name, ev in evaluations.items():
            for b in ev.budgets:
                wandb_run.summary[f"{name}/robust_error@{b.epsilon:g}"] = b.robust_error[UNION]
                wandb_run.summary[f"{name}/clean_error"] = b.clean_error
            wandb_run.summary[f"{name}/masking_violations"] = [
                c.name for c in ev.masking if c.violated
            ]
