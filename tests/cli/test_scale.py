"""Training started by an external launcher, as on several machines (docs/scaling.md): torchrun,
and SLURM's srun (its environment given to two processes by hand, as srun would). Every
process must use the one run folder that ``run_dir=`` names, and the run must end with one
summary, one W&B run, and attacks and callbacks that ran on both processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from intriguing.configs import ConfigError, compose
from intriguing.pipelines.runs import RUN_DIR_VARIABLE, choose_run_dir

from .conftest import SCRIPT, wandb_summary

TORCHRUN = Path(sys.executable).with_name("torchrun")
# Two processes x 256 training images each / batch 64 = 4 steps in the one epoch.
TINY_RUN = (
    "train",
    "experiment=fc100-100-10",
    "trainer.strategy=ddp",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "data.train_subset=512",
    "data.test_subset=256",
    "backfeed.enabled=true",
    "backfeed.generator.name=fgsm",
    "backfeed.pool_size=64",
    "backfeed.refresh_fraction=0.5",
    "backfeed.val_subset=0",
    "evaluation.subset=32",
    "evaluation.robust_steps=2",
    "evaluation.pgd_steps=2",
    "evaluation.pgd_restarts=1",
)


def _environment() -> dict[str, str]:
    """This test's environment without any launcher variables of the machine running it."""
    launcher = ("SLURM_", "TORCHELASTIC_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    return {**environment, "PYTHONUNBUFFERED": "1"}


def _check_one_run(output_dir: Path, run_dir: Path, outcome: str) -> None:
    """One folder (run_dir), one summary, one W&B run; two processes took part."""
    assert [p.name for p in output_dir.iterdir()] == [run_dir.parent.name]
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]
    assert outcome.count("fc100-100-10: 1 epochs") == 1  # the summary, printed by rank 0
    summary = (run_dir / "summary.json").read_text()
    assert '"eval/min_distortion"' in summary and '"eval/adversarial_error"' in summary
    # W&B runs go to WANDB_DIR (tests/conftest.py: the test's tmp_path, above output_dir).
    (wandb_run,) = (output_dir.parent / "wandb").glob("offline-run-*")
    assert json.loads(summary)["logs"] == str(wandb_run)
    logged = wandb_summary(wandb_run)["summary"]
    assert "eval/min_distortion" in logged and "test/error" in logged
    assert logged["backfeed/input/pool_size"] == 64  # summed over both processes' pools
    content = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert content["global_step"] == 4  # 2 processes, each a half of the 512 images
    (state,) = [v for k, v in content["callbacks"].items() if "AdversarialBackfeed" in k]
    assert state["world_size"] == 2
    assert [rank["pools"]["input"]["size"] for rank in state["ranks"]] == [32, 32]


@pytest.mark.ddp
def test_torchrun_processes_share_the_run_folder_and_finish_one_run(tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    run_dir = output_dir / "fc100-100-10" / "torchrun"
    done = subprocess.run(
        [
            str(TORCHRUN),
            "--nproc_per_node=2",
            "--standalone",
            str(SCRIPT),
            *TINY_RUN,
            f"output_dir={output_dir}",
            f"run_dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_environment(),
    )
    outcome = done.stdout + done.stderr
    assert done.returncode == 0, outcome[-3000:]
    # Lightning took the world from torchrun (TorchElasticEnvironment): two ranks.
    assert outcome.count("Initializing distributed") == 2  # no process started more
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outcome
    _check_one_run(output_dir, run_dir, outcome)


@pytest.mark.parametrize(
    ("launcher", "refused"),
    [
        ({"TORCHELASTIC_RUN_ID": "job", "WORLD_SIZE": "2"}, True),  # torchrun, 2 processes
        ({"TORCHELASTIC_RUN_ID": "job", "WORLD_SIZE": "1"}, False),
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train"}, True),  # srun, 4 tasks
        ({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train"}, False),
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "interactive"}, False),  # Lightning's opt-out
        ({}, False),
    ],
)
def test_processes_of_an_external_launcher_need_run_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, launcher: dict[str, str], refused: bool
) -> None:
    for name in [*os.environ]:
        if name.startswith(("SLURM_", "TORCHELASTIC_")) or name == "WORLD_SIZE":
            monkeypatch.delenv(name)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(RUN_DIR_VARIABLE, "")  # choose_run_dir sets it: restored after the test
    config = compose([f"output_dir={tmp_path / 'out'}"])
    if refused:
        with pytest.raises(ConfigError, match=r"^run_dir: torchrun and srun start every process"):
            choose_run_dir(config, None)
        assert not (tmp_path / "out").exists()
    else:
        assert choose_run_dir(config, None).parent == tmp_path / "out" / "experiment"
    config.run_dir = str(tmp_path / "given")
    assert choose_run_dir(config, None) == tmp_path / "given"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.ddp
def test_srun_tasks_share_the_run_folder_and_finish_one_run(tmp_path: Path) -> None:
    """What ``srun`` does for ``--ntasks-per-node=2`` on one node: two processes with SLURM's
    variables, each running the whole command; Lightning's SLURMEnvironment reads them."""
    output_dir = tmp_path / "out"
    run_dir = output_dir / "fc100-100-10" / "slurm-4242"
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "intriguing",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    command = [str(SCRIPT), *TINY_RUN, f"output_dir={output_dir}", f"run_dir={run_dir}"]
    tasks = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **_environment(),
                **slurm,
                "SLURM_PROCID": str(rank),
                "SLURM_LOCALID": str(rank),
            },
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for task in tasks:
            outputs.append(task.communicate(timeout=300)[0])
    finally:
        for task in tasks:
            if task.poll() is None:
                task.kill()
    outcome = "".join(outputs)
    assert [task.returncode for task in tasks] == [0, 0], outcome[-3000:]
    assert outcome.count("Initializing distributed") == 2  # no process started more
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outcome
    _check_one_run(output_dir, run_dir, outcome)


REPO = Path(__file__).resolve().parents[2]


def test_the_sbatch_template_runs_train_with_slurms_world_and_one_run_folder(
    tmp_path: Path,
) -> None:
    """scripts/slurm/train.sbatch as sbatch runs it on a node, with a stand-in for srun that
    records the command its tasks would run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "command.txt"}\n')
    srun.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "77",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "8",
        "VENV": str(Path(sys.executable).parent.parent),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm" / "train.sbatch"), "experiment=conv", "seed=3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_environment(), **slurm},
    )
    assert done.returncode == 0, done.stderr
    words = (tmp_path / "command.txt").read_text().splitlines()
    assert words[:2] == ["intriguing", "train"]
    config = compose(words[2:])
    assert config.trainer.strategy == "ddp" and config.trainer.accelerator == "gpu"
    assert (config.trainer.devices, config.trainer.num_nodes) == (4, 2)
    assert config.run_dir == str(tmp_path / "out" / "conv" / "job-77")
    assert config.output_dir == str(tmp_path / "out") and config.seed == 3
    assert config.model.family == "conv"
    for script in ("train.sbatch", "sweep-agent.sbatch"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / "slurm" / script)], check=True)
