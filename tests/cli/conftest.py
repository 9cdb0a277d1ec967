"""Running the console script in-process (fast) or as a real process (exit codes, DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from intriguing.cli.main import main

SCRIPT = Path(sys.executable).with_name("intriguing")


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Call ``intriguing ARGS`` in this process."""

    def run(*args: str) -> Outcome:
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_process(tmp_path: Path) -> Callable[..., Outcome]:
    """Run ``intriguing ARGS`` as its own process (as a user does), in tmp_path."""

    def run(*args: str, timeout: float = 300) -> Outcome:
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run


def read_summary(output_dir: Path, name: str) -> dict:
    """The summary.json of the one run of ``name`` below ``output_dir``."""
    (path,) = (output_dir / name).glob("*/summary.json")
    return json.loads(path.read_text())


def wandb_summary(run_dir: str | Path) -> dict:
    """What the offline W&B run really holds, read back with ``wandb leet inspect``."""
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("wandb")),
            "leet",
            "inspect",
            "--summary",
            "--json",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)
