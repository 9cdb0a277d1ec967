"""One training epoch of FC100-100-10: the framework against a hand-written PyTorch loop.

Both run over the same in-memory MNIST tensors with the same batch size, optimizer (the
preset's SGD with per-layer weight decay) and network, side by side in one process,
alternating, so that a busy machine slows both alike. The framework's epoch is timed from
Lightning's ``on_train_epoch_start`` to ``on_train_epoch_end`` (no validation, no set-up),
with the progress bar and the preset's logging on, as a user runs it.

    .venv/bin/python benchmarks/epoch_overhead.py --batch-size 64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import framework_epoch

from intriguing.configs import compose, to_container
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.build import build_classifier
from intriguing.trainers.networks import decay_groups


def hand_epoch(overrides: list[str], tmp: str) -> float:
    config = compose(["experiment=fc100-100-10", *overrides])
    datamodule = build_datamodule(to_container(config)["data"])
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = datamodule.tensors("train")
    module = build_classifier(config, datamodule, Path(tmp), resuming=False)
    network = module.network.train()
    optim = config.optim
    optimizer = torch.optim.SGD(
        decay_groups(network, list(config.model.weight_decay)),
        lr=optim.lr,
        momentum=optim.momentum,
        nesterov=True,
    )
    batch_size = config.data.batch_size
    started = time.perf_counter()
    order = torch.randperm(len(labels))
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        loss = F.cross_entropy(network(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*", help="config overrides for both loops")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [f"data.batch_size={args.batch_size}", "logger=none", *args.overrides]
    framework, hand = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            hand.append(hand_epoch(overrides, tmp))
            framework.append(framework_epoch(overrides, tmp))
    ratios = [f / h for f, h in zip(framework, hand, strict=True)]
    print(
        f"batch size {args.batch_size}, {torch.get_num_threads()} threads, {args.repeats} repeats"
    )
    print(f"hand-written loop  median {statistics.median(hand):.3f} s  {hand}")
    print(f"framework          median {statistics.median(framework):.3f} s  {framework}")
    print(f"ratio framework / hand: median {statistics.median(ratios):.2f}x  {ratios}")


if __name__ == "__main__":
    main()
