"""The ``intriguing`` console script: one subcommand per job.

Each subcommand lives in a module of this package that defines ``register(subparsers)``; the
parser it adds sets ``handler`` to a function that takes the parsed arguments and returns an
exit code. Errors a user can fix (a bad config key, a missing file, an unusable checkpoint or
data set) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

SUBCOMMANDS: tuple[str, ...] = (
    "train",
    "attack",
    "transfer",
    "units",
    "spectral",
    "reproduce",
    "sweep",
)
USAGE_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "bad input", reported in one line with exit status 2."""
    from intriguing.configs import ConfigError
    from intriguing.trainers import CheckpointError

    errors: list[type[BaseException]] = [ConfigError, CheckpointError, FileNotFoundError]
    try:
        from intriguing.datamodules import DataSourceError

        errors.append(DataSourceError)
    except ImportError:  # pragma: no cover - while datamodules is being written
        pass
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intriguing",
        description=(
            "Adversarial augmentation research on PyTorch Lightning: a reproduction of "
            "Szegedy et al. (2013), 'Intriguing properties of neural networks'."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"intriguing.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"intriguing.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_SILENT", "true")
    # Lightning 2.6 on torch 2.14 warns about its own use of torch's pytree API at every step.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except user_errors() as error:
        print(f"intriguing {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"intriguing {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Tear down the process group a DDP run set up (Lightning leaves it): gloo threads still
    alive at interpreter exit can abort a finished process ("terminate called without an
    active exception"), turning a completed run into a failed exit status."""
    distributed = sys.modules.get("torch.distributed")  # not imported: nothing to tear down
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
