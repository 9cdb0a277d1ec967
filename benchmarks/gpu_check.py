"""GPU check, run by hand on a machine with a CUDA GPU: presets in bf16-mixed, L-BFGS speed.

1. One training epoch of the conv net on MNIST and of PreAct ResNet-18 on CIFAR-10-shaped
   data, in ``bf16-mixed``, each without and with adversarial backfeeding (the presets
   ``conv`` / ``backfeed-conv-fgsm`` and ``preact-resnet18-cifar10`` /
   ``backfeed-preact-resnet18-cifar10``), through ``intriguing train``: seconds per epoch.
   CIFAR-10 cannot be downloaded on an offline machine: ``--synthetic-cifar N`` writes N
   random images in CIFAR-10's file layout instead (timings only; errors mean nothing).
2. The L-BFGS attack's examples per second on the GPU, on the trained conv net, for the
   model in fp32 and in bf16.

    python benchmarks/gpu_check.py --data-dir data --out outputs/gpu-check
    python benchmarks/gpu_check.py --smoke   # a tiny CPU run of the same code paths
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

import intriguing.pipelines.train as experiment
from intriguing.attacks import LBFGSAttack
from intriguing.cli.main import main as cli
from intriguing.datamodules import build_datamodule, sources
from intriguing.trainers import load_classifier

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer(Callback):
    """Wall time of each training epoch (CUDA synchronised), in seconds."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._started)


def timed_training(words: list[str]) -> tuple[list[float], dict]:
    """``intriguing train WORDS`` in this process, with an epoch timer added."""
    timer = EpochTimer()
    original = experiment.training_callbacks

    def with_timer(config):
        return [*original(config), timer]

    experiment.training_callbacks = with_timer
    try:
        code = cli(["train", *words])
    finally:
        experiment.training_callbacks = original
    return timer.seconds, {"exit": code}


def synthetic_cifar(data_dir: Path, train: int, test: int) -> None:
    """Random CIFAR-10 batch files through the project's reader (tests/datamodules)."""
    path = ROOT / "tests" / "datamodules" / "cifar_files.py"
    spec = importlib.util.spec_from_file_location("cifar_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sources.SPECS["cifar10"] = module.write_cifar(data_dir, train=train, test=test)


def lbfgs_speed(checkpoint: Path, data_dir: str, count: int, device: torch.device) -> dict:
    """Examples per second of the L-BFGS attack on ``count`` MNIST test images."""
    module = build_datamodule({"name": "mnist", "data_dir": data_dir})
    module.prepare_data()
    module.setup("test")
    images, labels = module.tensors("test")
    x, y = images[:count].to(device), labels[:count].to(device)
    model = load_classifier(checkpoint, input_shape=module.input_shape).network.to(device)
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        attack = LBFGSAttack(model.to(dtype))
        attack(x[:64].to(dtype), y[:64])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = attack(x.to(dtype), y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        results[name] = {
            "examples": count,
            "seconds": round(seconds, 2),
            "examples_per_second": round(count / seconds, 1),
            "success_rate": round(result.success_rate, 4),
            "mean_distortion": round(result.mean_distortion, 5),
        }
        print(f"L-BFGS {name}: {results[name]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="outputs/gpu-check")
    parser.add_argument("--synthetic-cifar", type=int, default=50_000)
    parser.add_argument("--attack-examples", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of the same paths")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cifar_dir = out / "cifar"
    smoke = args.smoke
    synthetic_cifar(cifar_dir, 256 if smoke else args.synthetic_cifar, 64 if smoke else 1_000)
    common = [
        "logger=none",
        "trainer.max_epochs=1",
        "evaluation.subset=0",
        "trainer.enable_progress_bar=false",
        f"output_dir={out / 'runs'}",
    ]
    common += (
        ["trainer.accelerator=cpu", "data.train_subset=256", "data.test_subset=64"]
        if smoke
        else ["trainer.precision=bf16-mixed"]
    )
    report: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    for experiment_name, data_dir in (
        ("conv", args.data_dir),
        ("backfeed-conv-fgsm", args.data_dir),
        ("preact-resnet18-cifar10", cifar_dir),
        ("backfeed-preact-resnet18-cifar10", cifar_dir),
    ):
        words = [f"experiment={experiment_name}", f"data.data_dir={data_dir}", *common]
        if smoke and "preact" in experiment_name:
            words += ["model.resnet.widths=[8,8,8,8]", "backfeed.pool_size=64", "data.val_size=32"]
        seconds, status = timed_training(words)
        report[experiment_name] = {"epoch_seconds": [round(s, 2) for s in seconds], **status}
        print(f"{experiment_name}: {report[experiment_name]}", flush=True)
    checkpoint = next((out / "runs" / "conv").glob("*/checkpoints/last.ckpt"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report["lbfgs"] = lbfgs_speed(
        checkpoint, args.data_dir, 256 if smoke else args.attack_examples, device
    )
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
