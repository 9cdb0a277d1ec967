"""Reading an offline W&B run back from its own files, as W&B would sync it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

WANDB = Path(sys.executable).with_name("wandb")


def run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of an offline W&B run (its run record with group and job type, history,
    artifacts, ...), read back with ``wandb leet inspect --json``."""
    done = subprocess.run(
        [str(WANDB), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def run_record(run_dir: str | Path) -> dict[str, Any]:
    """The run's 'run' record: ``run_group``, ``job_type``, ``display_name``, ``config``."""
    return next(r["run"] for r in run_records(run_dir) if r["type"] == "run")


def logged_table(records: list[dict[str, Any]], key: str) -> tuple[dict[str, Any], set[str]]:
    """The last table logged under ``key``: its JSON (``columns``, ``data``; images as
    ``{"_type": "image-file", "path": ...}``), as staged for upload with the run's table
    artifact, and the paths of that artifact's files (the images among them)."""
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    name = key.replace("/", "")
    tables = [a for a in artifacts if a["type"] == "run_table" and f"-{name}" in a["name"]]
    files = {entry["path"]: entry["local_path"] for entry in tables[-1]["manifest"]["contents"]}
    (table,) = [path for path in files if path.endswith(".table.json")]
    return json.loads(Path(files[table]).read_text()), set(files)
