"""``intriguing attack --checkpoint CKPT``: minimum distortion over a data split (Table 1).

Runs a minimum-distortion attack (the paper's box-constrained L-BFGS by default; FGSM, PGD
or Gaussian noise bisected over their budget) on every example of a split, with a progress
bar, and prints the mean minimum distortion, the success rate and the adversarial error
(Szegedy et al. 2013, Table 1's last column). ``--save`` keeps the adversarial set for
transfer studies. The computation is :func:`intriguing.pipelines.attack.attack_checkpoint`.
"""

from __future__ import annotations

import argparse

from intriguing.cli.arguments import settings_from, torch_device, wandb_tracking
from intriguing.pipelines.attack import (
    AttackRecord,
    CheckpointAttackSettings,
    attack_checkpoint,
    log_record,
    save_record,
)


def settings(args: argparse.Namespace) -> CheckpointAttackSettings:
    """The pipeline's settings from the options (``--device`` resolved)."""
    return settings_from(
        CheckpointAttackSettings, args, device=torch_device(args.device), progress=True
    )


def run(args: argparse.Namespace) -> int:
    record = attack_checkpoint(settings(args))
    print(format_record(record))
    if record.summary.saved:
        print(f"adversarial set saved to {record.summary.saved}")
    if args.json:
        save_record(record, args.json)
    log_record(record, wandb_tracking(args))
    return 0


def format_record(record: AttackRecord) -> str:
    """The printed summary: the attack, what it ran on, and its numbers."""
    summary, shift, layer = record.summary, record.target_shift, record.attack["layer"]
    where = "input" if layer is None else f"layer {layer}"
    kind = (
        "untargeted" if shift is None else f"targeted at (label + {shift}) mod {record.num_classes}"
    )
    return (
        f"{record.attack['name']} ({kind}, {where}) on {summary.examples} {record.dataset} "
        f"{record.split} images of {record.checkpoint}:\n"
        f"  mean minimum distortion  {summary.mean_distortion:.4f}\n"
        f"  success rate             {summary.success_rate:.2%}\n"
        f"  adversarial error        {summary.adversarial_error:.2%}\n"
        f"  clean error              {summary.clean_error:.2%}"
        f" ({summary.already_adversarial} already adversarial, counted with distortion 0)\n"
        f"  gradient evaluations     {summary.gradient_evaluations}"
        f" ({summary.seconds:.1f} s on {record.device})"
    )
