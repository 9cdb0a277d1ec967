"""``intriguing spectral``: each layer's upper Lipschitz bound (Table 5), of a checkpoint of
the project's classifiers or of any ``nn.Module`` a factory builds (the parser is in
:mod:`intriguing.cli.parsers`; the computation is :mod:`intriguing.pipelines.spectral`).

::

    intriguing spectral --checkpoint CKPT
    intriguing spectral --model torchvision.models:resnet18 --input-shape 3,32,32
    intriguing spectral --model my_project/nets.py:build --state-dict weights.pt \\
        --input-shape 3,32,32 [--module backbone]
"""

from __future__ import annotations

import argparse

from intriguing.cli.arguments import settings_from, wandb_tracking
from intriguing.configs import ConfigError
from intriguing.pipelines.spectral import (
    SpectralSettings,
    log_report,
    spectral_report,
    write_report,
)


def run(args: argparse.Namespace) -> int:
    """Bounds of a checkpoint's or a built model's layers. A bad option raises ConfigError, a
    model without bounds LipschitzBoundError: :func:`intriguing.cli.main.main` reports either
    in one line, exit status 2."""
    report = spectral_report(settings(args))
    print(report.text(), end="", flush=True)
    for path in write_report(report, markdown_path=args.markdown, json_path=args.json):
        print(f"wrote {path}")
    log_report(report, wandb_tracking(args))
    return 0


def settings(args: argparse.Namespace) -> SpectralSettings:
    """The pipeline's settings from the options (``--input-shape`` parsed)."""
    shape = parse_shape(args.input_shape) if args.input_shape else None
    return settings_from(SpectralSettings, args, input_shape=shape)


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
