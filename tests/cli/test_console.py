"""The console script's start: ``--help`` and ``--version`` import no torch, Lightning or wandb."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from intriguing import __version__
from intriguing.cli import parsers
from intriguing.cli.main import resolve_handler
from intriguing.datamodules.datamodule import TENSOR_SPLITS

HEAVY = ("torch", "lightning", "wandb")
PROBE = f"""
import json, sys
from intriguing.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def probe(*argv: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


@pytest.mark.parametrize("command", [None, *parsers.SUBCOMMANDS])
def test_help_imports_nothing_heavy(command):
    argv = ["--help"] if command is None else [command, "--help"]
    result, output = probe(*argv)
    assert result == {"code": 0, "heavy": []}
    assert "usage: intriguing" in output


def test_version():
    result, output = probe("--version")
    assert result["code"] == 0 and result["heavy"] == []
    assert output.strip() == f"intriguing {__version__}"


def test_parser_choices_match_the_library():
    assert parsers.TENSOR_SPLITS == TENSOR_SPLITS


def test_handlers_resolve():
    """Every parser names a handler that exists (imported here, as the command would)."""
    for name, add_parser in parsers.SUBCOMMANDS.items():
        subparsers = argparse.ArgumentParser().add_subparsers()
        add_parser(subparsers)
        assert callable(resolve_handler(subparsers.choices[name].get_default("handler"))), name


def test_no_bare_top_level_packages(tmp_path):
    """Outside the repository, only ``intriguing`` is importable, not ``configs`` or ``cli``."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print([n for n in "
            "('configs', 'callbacks', 'cli', 'attacks', 'analysis', 'storage', 'trainers', "
            "'datamodules', 'intriguing') if u.find_spec(n)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "['intriguing']"
