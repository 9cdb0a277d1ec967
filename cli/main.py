"""The ``intriguing`` console script: one subcommand per job.

The parsers live in :mod:`intriguing.cli.parsers` (light: ``--help`` imports no torch); each
names its handler, a function of a subcommand module of this package that takes the parsed
arguments and returns an exit code, imported only when the command runs.

Errors a user can fix (a bad config key, a missing file, an unusable checkpoint or data set)
print one line and exit with status 2, never a traceback.

How a user's mistake is told from a bug: library code raises a plain ``ValueError`` or
``TypeError`` naming the parameter and the value; the config and CLI layer turns the ones it
provoked with what the user gave into a :class:`~intriguing.configs.ConfigError` naming the
config key or option, where it builds objects from the config or the options
(:func:`intriguing.configs.config_error`, :func:`intriguing.configs.building`) and in
:func:`intriguing.pipelines.validate.validate_run_config`, which ``train`` runs before anything
trains. Only those, and the error types that mean bad input by themselves (an unusable
checkpoint or data file, a missing file, a model without spectral bounds), are reported in one
line (:func:`user_errors`). A bare ``ValueError`` or ``TypeError`` that reaches this module
was raised where no user input was being turned into objects (deep in training, say): a bug,
shown with its traceback. A new command maps its library errors at the site that passes the
user's values, not here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from intriguing import __version__
from intriguing.cli.parsers import SUBCOMMANDS
from intriguing.errors import first_line

USAGE_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "bad input", reported in one line with exit status 2 (see the
    module's docstring: plain ValueError and TypeError are not among them)."""
    from intriguing.analysis.spectral import LipschitzBoundError
    from intriguing.configs import ConfigError
    from intriguing.datamodules import DataSourceError
    from intriguing.trainers import CheckpointError

    return (ConfigError, CheckpointError, DataSourceError, LipschitzBoundError, FileNotFoundError)


def run_errors() -> tuple[type[BaseException], ...]:
    """Failures after a run trained and wrote its summary: one line, exit status 1."""
    from intriguing.pipelines.runs import RunError

    return (RunError,)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; light to build (see :mod:`intriguing.cli.parsers`)."""
    parser = argparse.ArgumentParser(
        prog="intriguing",
        description=(
            "Adversarial augmentation research on PyTorch Lightning: a reproduction of "
            "Szegedy et al. (2013), 'Intriguing properties of neural networks'."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in SUBCOMMANDS.values():
        add_parser(subparsers)
    return parser


def resolve_handler(reference: str) -> Callable[[argparse.Namespace], int | None]:
    """The function a parser names as ``"module:function"``, imported now: the command's heavy
    imports (torch, Lightning, wandb) happen only when it runs."""
    module_name, _, function = reference.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_SILENT", "true")
    # Lightning 2.6 on torch 2.14 warns about its own use of torch's pytree API at every step.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(resolve_handler(args.handler)(args) or 0)
    except user_errors() as error:
        print(f"intriguing {args.command}: error: {first_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    except run_errors() as error:  # trained, summary written, a later step failed
        print(f"intriguing {args.command}: error: {first_line(error)}", file=sys.stderr)
        return 1
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
