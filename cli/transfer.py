"""``intriguing transfer``: how adversarial examples transfer between models (Tables 2-4).

Szegedy et al. (2013), Table 2: adversarial examples made for one MNIST model are evaluated
on every other; Gaussian-noise rows (stddev 0.1 and 0.3) show that noise of that size barely
matters. Tables 3 and 4 (``--table 4``): models trained on the disjoint halves P1 and P2 of the
training set, each one's error on P1, P2 and the test set, the transfer matrix, noise at the
adversarial examples' distortion and at 0.1, and the "magnified" rows.

Adversarial sets are made once per source model and cached (``--cache-dir``), keyed by the
checkpoint's contents, the attack settings and the examples; ``--zoo table2`` (or
``table4``) first trains whichever of the paper's models has no finished run. The study is
:func:`pipelines.transfer.run_transfer`; this module parses the options and prints.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from intriguing.analysis.transfer import checkpoint_names
from intriguing.attacks.registry import attack_entry
from intriguing.cli.arguments import torch_device, wandb_tracking
from intriguing.configs import ConfigError
from intriguing.pipelines.runs import new_run_dir
from intriguing.pipelines.transfer import log_transfer, run_transfer, write_transfer
from intriguing.pipelines.zoo import ensure_trained, load_zoo

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


# ------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    table, split, names, paths = _sources(args)
    if args.subset is not None and args.subset < 1:
        raise ConfigError(f"--subset {args.subset}: must be at least 1")
    attack = attack_spec(args.attack, args.attack_option)
    noise = noise_rows(args.noise) if args.noise is not None else None
    magnify = list(args.magnify) if args.magnify is not None else None
    if magnify is not None and any(not value > 0 for value in magnify):
        raise ConfigError(f"--magnify {magnify}: distortions must be positive")
    result = run_transfer(
        dict(zip(names, paths, strict=True)),
        attack,
        table=table,
        split=split,
        dataset=args.data,
        data_dir=args.data_dir or os.environ.get("INTRIGUING_DATA_DIR", "data"),
        subset=args.subset,
        noise=noise,
        magnify=magnify,
        clean_row=not args.no_clean_row,
        cache_dir=args.cache_dir,
        grid_examples=args.examples,
        batch_size=args.batch_size,
        seed=args.seed,
        device=torch_device(args.device),
        progress=not args.no_progress,
        report=lambda line: print(line, flush=True),
    )
    out = Path(args.out) if args.out else new_run_dir("outputs", "transfer")
    command = "intriguing " + " ".join(shlex.quote(word) for word in sys.argv[1:])
    files = write_transfer(out, result, command)
    if result.study.by_split is not None:
        print(result.study.by_split.to_markdown())
    print(result.study.matrix.to_markdown())
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    print(f"wall time {result.seconds:.0f} s")
    log_transfer(result, files, tracking=wandb_tracking(args), cache_dir=args.cache_dir)
    return 0


def _sources(args: argparse.Namespace) -> tuple[int, str, list[str], list[Path]]:
    """(table, split, names, checkpoint paths) from --checkpoints or --zoo."""
    if args.zoo:
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
