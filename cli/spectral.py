"""``intriguing spectral``: each layer's upper Lipschitz bound (Table 5), of a checkpoint of
the project's classifiers or of any ``nn.Module`` a factory builds (the parser is in
:mod:`intriguing.cli.parsers`).

::

    intriguing spectral --checkpoint CKPT
    intriguing spectral --model torchvision.models:resnet18 --input-shape 3,32,32
    intriguing spectral --model my_project/nets.py:build --state-dict weights.pt \\
        --input-shape 3,32,32 [--module backbone]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intriguing.analysis.spectral import (
    ModelBounds,
    SpectralBounds,
    network_bounds,
    spectral_bounds,
)
from intriguing.cli.arguments import wandb_tracking
from intriguing.configs import ConfigError
from intriguing.pipelines.tracking import analysis_run
from intriguing.trainers import load_classifier
from intriguing.trainers.stages import StagedNetwork


def run(args: argparse.Namespace) -> int:
    """Bounds of a checkpoint's or a built model's layers. A bad option raises ConfigError, a
    model without bounds LipschitzBoundError: :func:`intriguing.cli.main.main` reports either
    in one line, exit status 2."""
    if args.checkpoint:
        bounds, title, config = _checkpoint_bounds(args)
    else:
        bounds, title, config = _model_bounds(args)
    text = f"{title}:\n\n{bounds.to_markdown()}"
    print(text, end="", flush=True)
    if args.markdown:
        _write(Path(args.markdown), text)
    if args.json:
        source = {"checkpoint": str(args.checkpoint)} if args.checkpoint else config
        record = {**source, **bounds.summary(), "layers": bounds.rows()}
        _write(Path(args.json), json.dumps(record, indent=2) + "\n")
    with analysis_run(wandb_tracking(args), job_type="spectral", config=config) as wandb_run:
        if wandb_run is not None:
            _log(wandb_run, bounds)
    return 0


def _checkpoint_bounds(args: argparse.Namespace) -> tuple[SpectralBounds, str, dict[str, Any]]:

    for option in ("state_dict", "input_shape", "module"):
        if getattr(args, option):
            raise ConfigError(f"--{option.replace('_', '-')} goes with --model, not --checkpoint")
    model = load_classifier(args.checkpoint)
    bounds = network_bounds(model.network, dense_limit=args.dense_limit, tol=args.tol)
    shape = "x".join(str(d) for d in model.network.input_shape)
    family = model.model_config.get("family", "?")
    title = (
        f"Upper Lipschitz bounds (L2) of {Path(args.checkpoint).name} "
        f"({family} network, inputs {shape})"
    )
    config = {"checkpoint": str(args.checkpoint), "family": family, "tol": args.tol}
    return bounds, title, config


def _model_bounds(
    args: argparse.Namespace,
) -> tuple[SpectralBounds | ModelBounds, str, dict[str, Any]]:

    model = build_model(args.model)
    if args.state_dict:
        load_weights(model, Path(args.state_dict))
    target = model
    if args.module:
        try:
            target = model.get_submodule(args.module)
        except AttributeError as error:
            raise ConfigError(f"--module {args.module}: {error}") from error
    shape = parse_shape(args.input_shape) if args.input_shape else None
    if shape is None and not isinstance(target, StagedNetwork):
        raise ConfigError("--input-shape C,H,W is needed with --model (one example's shape)")
    try:
        bounds = spectral_bounds(
            target, shape, dense_limit=args.dense_limit, tol=args.tol, fourier=args.fourier
        )
    except ValueError as error:  # an input shape the model cannot take, no bound, ...
        raise ConfigError(str(error)) from error
    name = f"{args.model}" + (f" ({args.module})" if args.module else "")
    inputs = "x".join(str(d) for d in (shape or target.input_shape))  # type: ignore[union-attr]
    config = {
        "model": args.model,
        "state_dict": args.state_dict,
        "module": args.module,
        "input_shape": inputs,
        "tol": args.tol,
    }
    return bounds, f"Upper Lipschitz bounds (L2) of {name}, inputs {inputs}", config


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,32,32"`` (or ``"3x32x32"``) as ``(3, 32, 32)``; ``ConfigError`` if it is not."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ConfigError(f"--input-shape {text}: expected positive sizes such as 3,32,32")
    return shape


def build_model(spec: str) -> nn.Module:
    """``FACTORY()`` for ``spec`` = ``MODULE:FACTORY``, ``MODULE`` importable or a ``.py``
    file. Raises ``ConfigError`` when it cannot be found or does not return an ``nn.Module``."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConfigError(
            f"--model {spec}: expected MODULE:FACTORY, e.g. torchvision.models:resnet18"
        )
    folder = None
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ConfigError(f"--model {spec}: no such file {path}")
        # As `python FILE.py` does: the file's folder first on sys.path, so that its imports
        # of sibling modules work (while it is imported and its factory runs).
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)
    try:
        if module_name.endswith(".py"):
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            if loaded is None or loaded.loader is None:
                raise ConfigError(f"--model {spec}: cannot load {path}")
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise ConfigError(f"--model {spec}: {module_name} has no callable {factory_name!r}")
        model = factory()
    except ImportError as error:
        raise ConfigError(f"--model {spec}: {error}") from error
    finally:
        if folder is not None and folder in sys.path:
            sys.path.remove(folder)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"--model {spec}: {factory_name}() returned {type(model).__name__}, not an nn.Module"
        )
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict (or a Lightning checkpoint's ``state_dict``) into ``model``
    (``weights_only``, strict).

    A LightningModule's checkpoint names its network's tensors after the attribute that holds
    it (``model.conv.weight``): when the keys share a dotted prefix and, without it, name
    exactly the model's tensors, the prefix is stripped (and said on stderr). Raises
    ``ConfigError`` when it does not fit, naming the keys' common prefix when they have one.
    """

    if not path.is_file():
        raise ConfigError(f"--state-dict {path}: no such file")
    content = torch.load(path, map_location="cpu", weights_only=True)
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--state-dict {path}: not a state dict ({type(content).__name__})")
    wanted = set(model.state_dict())
    prefixes = _common_prefixes(list(state))
    for prefix in prefixes:
        stripped = {key.removeprefix(prefix): value for key, value in state.items()}
        if set(state) != wanted and set(stripped) == wanted:
            print(f"--state-dict {path}: stripped the keys' prefix {prefix!r}", file=sys.stderr)
            state = stripped
            break
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        hint = ""
        if prefixes:
            hint = (
                f" (all its keys start with {prefixes[-1]!r}: the weights of a LightningModule "
                "holding the network as that attribute? Let the factory build that module "
                f"and bound its network with --module {prefixes[0].rstrip('.')})"
            )
        raise ConfigError(f"--state-dict {path}: does not fit the model{hint}: {error}") from error


def _common_prefixes(keys: list[str]) -> list[str]:
    """The dotted prefixes every key shares, shortest first: ``["model."]`` for
    ``["model.conv.weight", "model.fc.bias"]`` (a key's last part is never one)."""
    if not keys:
        return []
    parts = [key.split(".")[:-1] for key in keys]
    shared: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        shared.append(level[0])
    return [".".join(shared[: depth + 1]) + "." for depth in range(len(shared))]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")


def _log(run: Any, bounds: SpectralBounds | ModelBounds) -> None:
    """The per-layer table and the per-stage (or per-layer) and network values, to W&B."""
    import wandb

    rows = bounds.rows()
    columns = list(rows[0])
    table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
    run.log({"spectral/layers": table})
    run.summary.update(bounds.summary())
