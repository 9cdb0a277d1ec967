"""``intriguing attack --checkpoint CKPT``: minimum distortion over a data split (Table 1).

Runs a minimum-distortion attack (the paper's box-constrained L-BFGS by default; FGSM, PGD
or Gaussian noise bisected over their budget) on every example of a split, with a progress
bar, and prints the mean minimum distortion, the success rate and the adversarial error
(Szegedy et al. 2013, Table 1's last column). ``--save`` keeps the adversarial set for
transfer studies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from intriguing.attacks import build_attack, minimum_distortion
from intriguing.cli.arguments import torch_device, wandb_tracking
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.pipelines.data import checkpoint_data, split_examples
from intriguing.pipelines.tracking import analysis_run
from intriguing.trainers import CheckpointError, load_classifier


def attack_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The attack's specification (see :func:`attacks.build_attack`) from the options."""
    spec: dict[str, Any] = {"name": args.attack, "layer": args.layer}
    for key in ("epsilon", "norm", "steps", "stddev", "search_steps", "max_iterations"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    return spec


def run(args: argparse.Namespace) -> int:
    module = build_datamodule(
        checkpoint_data(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir)
    )
    model = load_classifier(args.checkpoint, input_shape=module.input_shape)
    network = model.network
    if args.layer is not None and args.layer not in network.layer_names:
        raise CheckpointError(
            f"checkpoint {args.checkpoint}: no layer {args.layer!r}; its layers are "
            f"{', '.join(network.layer_names)}"
        )
    device = torch_device(args.device)
    network.to(device)
    images, labels = split_examples(module, args.split, args.subset)
    size = args.batch_size
    batches = [(images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size)]
    spec = attack_spec(args)
    try:
        attack = build_attack(network, spec)
    except ValueError as error:
        raise ConfigError(f"--attack {args.attack}: {error}") from None
    classes = module.num_classes
    shift = args.target_shift
    if shift is not None and shift % classes == 0:
        raise ConfigError(f"--target-shift {shift}: the target would equal the label")
    target = None if shift is None else (lambda y: (y + shift) % classes)
    summary = minimum_distortion(
        network, batches, attack=attack, target=target, save=args.save, description=args.attack
    )
    where = "input" if args.layer is None else f"layer {args.layer}"
    kind = "untargeted" if shift is None else f"targeted at (label + {shift}) mod {classes}"
    print(
        f"{args.attack} ({kind}, {where}) on {summary.examples} {module.name} {args.split} "
        f"images of {args.checkpoint}:\n"
        f"  mean minimum distortion  {summary.mean_distortion:.4f}\n"
        f"  success rate             {summary.success_rate:.2%}\n"
        f"  adversarial error        {summary.adversarial_error:.2%}\n"
        f"  clean error              {summary.clean_error:.2%}"
        f" ({summary.already_adversarial} already adversarial, counted with distortion 0)\n"
        f"  gradient evaluations     {summary.gradient_evaluations}"
        f" ({summary.seconds:.1f} s on {device})"
    )
    if summary.saved:
        print(f"adversarial set saved to {summary.saved}")
    record = {
        "checkpoint": str(args.checkpoint),
        "dataset": module.name,
        "split": args.split,
        "attack": spec,
        "target_shift": shift,
        "device": str(device),
        **{f"attack/{key}": value for key, value in vars(summary).items()},
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    with analysis_run(wandb_tracking(args), job_type="attack", config=record) as wandb_run:
        if wandb_run is not None:
            wandb_run.summary.update(
                {key: value for key, value in record.items() if key.startswith("attack/")}
            )
    return 0
