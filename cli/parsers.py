"""The console script's argument parsers, one function per subcommand.

Everything here is light to import (argparse and the YAML config layer, no torch, Lightning or
wandb), so that ``intriguing --help`` and ``intriguing COMMAND --help`` answer at once. Each
parser names its handler as ``"module:function"``; :func:`intriguing.cli.main.main` imports that
module only when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from intriguing.analysis.evaluation_attacks import ATTACKS as ATTACKS_OF_EVALUATE
from intriguing.attacks.registry import ATTACKS, attack_entry, declared_attacks
from intriguing.callbacks.registry import switchable_callbacks
from intriguing.configs import available
from intriguing.configs.budget import available_budgets

#: Splits of a data module's tensors that analysis commands can read
#: (:data:`intriguing.datamodules.datamodule.TENSOR_SPLITS`; a test keeps the two equal).
TENSOR_SPLITS: tuple[str, ...] = ("train", "val", "test", "p1", "p2", "full_train")
#: Attacks that analysis commands can run are the registry's (:mod:`attacks.registry`;
#: :data:`ATTACKS` lists them): ``--attack`` values are checked by :func:`attack_name`, which
#: imports the attacks only for a name not declared in the registry itself, and help lists
#: those declared, so that ``--help`` stays light.
#: Attacks of ``intriguing evaluate`` (torch-free, shared with analysis.evaluation).
EVALUATE_ATTACKS = ATTACKS_OF_EVALUATE
#: Where ``intriguing reproduce`` caches adversarial sets.
DEFAULT_CACHE = "outputs/transfer-cache"  # shared with `intriguing transfer`


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def attack_name(text: str) -> str:
    """An argparse type: the name of a registered attack (:mod:`attacks.registry`)."""
    try:
        return attack_entry(text).name
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: no such attack (registered: {', '.join(ATTACKS)})"
        ) from None


def adversarial_attack_name(text: str) -> str:
    """An argparse type: a registered attack that is not a control (not noise)."""
    if attack_entry(attack_name(text)).control:
        raise argparse.ArgumentTypeError(f"{text!r}: a control, not an adversarial attack")
    return text


def add_wandb_arguments(parser: Any) -> None:
    """``--wandb``, ``--wandb-project`` and ``--wandb-group`` for commands that are not
    training runs (attack, transfer, units, spectral)."""
    parser.add_argument("--wandb", action="store_true", help="log results to a W&B run")
    parser.add_argument(
        "--wandb-project", default=None, help="W&B project ($WANDB_PROJECT, else intriguing)"
    )
    parser.add_argument("--wandb-group", default=None, help="W&B group of the run")


def _train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and test a model from a configuration",
        description=(
            "Train and test a model. Words are key=value overrides: GROUP=NAME selects a "
            "YAML file of configs/GROUP (experiment, model, optim, data, trainer, logger), "
            f"a.b=VALUE sets one key. Experiments: {', '.join(available('experiment'))}. Callbacks "
            "switched on by a section under callbacks (callbacks.NAME.KEY=VALUE, "
            f"callbacks.NAME={{}} for its defaults): {', '.join(switchable_callbacks())}. "
            "Your own attacks, model families, data sets and callbacks: imports=[my_module.py] "
            "(or a module name), imported before the config is checked."
        ),
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument(
        "--print-config", action="store_true", help="print the composed config and exit"
    )
    parser.set_defaults(handler="intriguing.cli.train:run")


def _attack(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="mean minimum distortion and adversarial error of a checkpoint (Table 1)",
        description=(
            "Attack every example of a split of a trained model's data set with a "
            "minimum-distortion attack and report the mean minimum distortion "
            "sqrt(sum((x' - x)^2) / n), the success rate and the adversarial error."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="an ImageClassifier checkpoint")
    parser.add_argument("--split", default="test", choices=TENSOR_SPLITS, help="image set (test)")
    parser.add_argument("--subset", type=positive_int, help="attack only the first SUBSET images")
    parser.add_argument(
        "--attack",
        default="lbfgs",
        type=attack_name,
        metavar="NAME",
        help=f"{', '.join(declared_attacks())} or another registered attack (lbfgs)",
    )
    parser.add_argument("--layer", help="perturb this layer's activation (default: the input)")
    parser.add_argument(
        "--target-shift",
        type=int,
        help="targeted attack at (label + K) mod classes (default: untargeted)",
    )
    parser.add_argument("--save", metavar="PATH", help="save the adversarial set (torch.save)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the summary here")
    parser.add_argument(
        "--batch-size", type=positive_int, default=1000, help="examples per attack batch (1000)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto (cpu)")
    parser.add_argument("--dataset", help="data set name (default: the checkpoint's, else mnist)")
    parser.add_argument("--data-dir", help="data folder (default: the checkpoint's, else data)")
    options = parser.add_argument_group("attack settings (default: each attack's own)")
    options.add_argument("--epsilon", type=float, help="FGSM/PGD starting budget")
    options.add_argument("--norm", choices=("linf", "l2"), help="FGSM/PGD norm")
    options.add_argument("--steps", type=positive_int, help="PGD steps")
    options.add_argument("--stddev", type=float, help="noise starting stddev")
    options.add_argument("--search-steps", type=positive_int, help="L-BFGS solves per example")
    options.add_argument("--max-iterations", type=positive_int, help="L-BFGS iterations per solve")
    add_wandb_arguments(parser)
    parser.set_defaults(handler="intriguing.cli.attack:run")


def _transfer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transfer",
        help="transfer of adversarial examples between models (Tables 2, 3 and 4)",
        description=(
            "Make adversarial examples for each model and measure every model's error on "
            "them, beside Gaussian-noise rows (the layout of Szegedy et al. 2013, Table 2; "
            "--table 4: Tables 3 and 4, with matched-noise and magnified rows). Give "
            "checkpoints, or --zoo table2|table4 to train the paper's models first (words "
            "key=value are overrides for every training run, e.g. trainer.max_epochs=2)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", metavar="CKPT", help="ImageClassifier files")
    source.add_argument("--zoo", metavar="NAME", help="a zoo preset of configs/zoo (or a file)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of every --zoo training run (write them right after --zoo NAME)",
    )
    parser.add_argument("--names", nargs="+", help="row/column names, one per checkpoint")
    parser.add_argument(
        "--table",
        type=int,
        choices=(2, 4),
        default=None,
        help="2: cross-model layout; 4: cross-training-set layout with Table 3 (default: 2, "
        "or the zoo's)",
    )
    parser.add_argument(
        "--split",
        choices=TENSOR_SPLITS,
        default=None,
        help="examples the adversarial sets are made from (default: test)",
    )
    parser.add_argument("--subset", type=int, default=None, help="the first N examples only")
    parser.add_argument(
        "--attack",
        type=adversarial_attack_name,
        default="lbfgs",
        metavar="NAME",
        help=f"{', '.join(declared_attacks(controls=False))} or another registered attack "
        "but a control (lbfgs)",
    )
    parser.add_argument(
        "--attack-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attack setting, e.g. search_steps=5 or epsilon=0.1 (repeatable)",
    )
    parser.add_argument(
        "--noise",
        nargs="*",
        default=None,
        metavar="SIZE",
        help="noise rows: a stddev (0.1), 'distortion=D', or 'matched' (noise whose distortion "
        "is the adversarial rows' average); default 0.1 0.3 (table 2), matched 0.1 (table 4)",
    )
    parser.add_argument(
        "--magnify",
        nargs="*",
        type=float,
        default=None,
        metavar="D",
        help="magnified rows: perturbations rescaled to distortion D (default: 0.1 for table 4)",
    )
    parser.add_argument("--no-clean-row", action="store_true", help="omit the clean-error row")
    parser.add_argument("--examples", type=int, default=8, help="examples per set in the grid")
    parser.add_argument(
        "--cache-dir",
        default="outputs/transfer-cache",
        help="where adversarial sets are cached (default outputs/transfer-cache)",
    )
    parser.add_argument("--out", default=None, help="output folder (default outputs/transfer/TIME)")
    parser.add_argument("--data", default=None, help="data set (default: the checkpoints')")
    parser.add_argument(
        "--data-dir", default=None, help="data folder (default $INTRIGUING_DATA_DIR or data)"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="examples per attack batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and random attacks")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_wandb_arguments(parser)
    parser.set_defaults(handler="intriguing.cli.transfer:run")


def _units(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "units",
        help="top images of single units versus random directions of a layer (Section 3)",
        description=(
            "For a trained model and a layer, find the held-out images that maximise single "
            "units and random directions of the layer; save labelled grids and the label purity "
            "of the top-k images (mean, spread, bootstrap CI, permutation tests, chance level)."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="an ImageClassifier checkpoint")
    parser.add_argument("--layer", required=True, help="a layer of the network, e.g. conv2")
    parser.add_argument("--split", default="test", choices=TENSOR_SPLITS, help="image set (test)")
    parser.add_argument(
        "--directions", type=positive_int, default=100, help="units and random (100)"
    )
    parser.add_argument("--top-k", type=positive_int, default=8, help="images per direction (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
    parser.add_argument(
        "--rows", type=positive_int, default=8, help="directions shown per grid (8)"
    )
    parser.add_argument(
        "--limit", type=positive_int, help="use only the first LIMIT images of the split"
    )
    parser.add_argument("--out", help="output folder (outputs/units/<checkpoint>-<layer>)")
    parser.add_argument("--dataset", help="data set name (default: the checkpoint's, else mnist)")
    parser.add_argument("--data-dir", help="data folder (default: the checkpoint's, else data)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=500, help="images per forward (500)"
    )
    add_wandb_arguments(parser)
    parser.set_defaults(handler="intriguing.cli.units:run")


def _reproduce(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="the paper's MNIST study end to end, with a report beside the paper's figures",
        description=(
            "Train the paper's MNIST models (reusing finished runs), measure Tables 1-5, the "
            "adversarial-training comparison and the unit analysis, and write report.md and "
            "a self-contained report.html where each figure stands beside the paper's. "
            "Words key=value are overrides for every training run (e.g. "
            "trainer.accelerator=cpu)."
        ),
    )
    parser.add_argument(
        "--budget",
        default="quick",
        metavar="NAME",
        help=f"a budget of configs/reproduce ({', '.join(available_budgets())}) or a YAML "
        "file (default quick)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="training overrides")
    parser.add_argument("--out", help="report folder (default outputs/reproduce/BUDGET)")
    parser.add_argument("--wandb-group", help="W&B group of every run (default reproduce-BUDGET)")
    parser.add_argument(
        "--cache-dir", default=DEFAULT_CACHE, help=f"adversarial-set cache ({DEFAULT_CACHE})"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler="intriguing.cli.reproduce:run")


class _IntermixedParser(argparse.ArgumentParser):
    """A parser that takes options between the sweep file and the ``key=value`` words
    (``sweep FILE --dry-run output_dir=...``), which plain argparse refuses."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing:  # the inner calls of parse_known_intermixed_args
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _sweep(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a W&B sweep file here on W&B's engine (grid, random, bayes; hyperband)",
        description=(
            "Run the points of a W&B sweep file one after another on this machine, drawn "
            "(grid, random, bayes) and stopped (early_terminate) by W&B's own engine, each by "
            "the command line a `wandb agent` would run for it. Finished points are reused; "
            "a summary table is written at the end. The same file works with `wandb sweep "
            "FILE` and `wandb agent` on many machines. Needs the extra: intriguing[sweep]."
        ),
    )
    parser.__class__ = _IntermixedParser
    parser.add_argument("sweep_file", metavar="SWEEP.yaml", help="a W&B sweep file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="words added to every point's training command (output_dir=..., data.*, ...)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the points and their commands, run nothing"
    )
    parser.add_argument(
        "--max-runs",
        type=positive_int,
        metavar="N",
        help="start at most N trainings this time (reused points do not count)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the engine's draws (default 0)"
    )
    parser.set_defaults(handler="intriguing.cli.sweep:run")


def _spectral(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spectral",
        help="per-layer upper bounds on the Lipschitz constant of a trained model (Table 5)",
        description=(
            "Print each layer's upper bound on its Lipschitz constant (L2 operator norm) at the "
            "input shape it sees, and the model's: for the project's checkpoints, the layout of "
            "Szegedy et al. (2013)'s Table 5 (the product over stages); for any other module, "
            "the bound composed over its traced graph (residual branches add). Exact norms for "
            "fully connected and convolutional layers (the paper's Fourier-domain bound beside "
            "the latter), sqrt of the window overlap for max pooling, 1 for ReLU, 1/4 for the "
            "sigmoid. A layer without a known bound is named, with how to register one."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an ImageClassifier checkpoint")
    source.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="any nn.Module: FACTORY() from an importable module or a .py file "
        "(e.g. torchvision.models:resnet18); needs --input-shape",
    )
    parser.add_argument(
        "--state-dict",
        metavar="PATH",
        help="with --model: weights to load (a state dict, or a Lightning checkpoint's)",
    )
    parser.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="with --model: the shape of one example at the bounded module's input",
    )
    parser.add_argument(
        "--module",
        metavar="NAME",
        help="with --model: bound this submodule (dotted name) instead of the whole model",
    )
    parser.add_argument(
        "--fourier",
        action="store_true",
        help="with --model: also the Fourier-domain bound of 2-d convolutions (slow for wide "
        "layers; always computed for --checkpoint)",
    )
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the tables here")
    parser.add_argument("--json", metavar="OUT.json", help="also write every layer's record here")
    add_wandb_arguments(parser)
    parser.add_argument(
        "--dense-limit",
        type=int,
        default=1024,
        help="exact Gram eigenvalues when an operator's smaller side is at most this long, "
        "else Lanczos iteration (default 1024)",
    )
    parser.add_argument(
        "--tol", type=float, default=1e-7, help="Lanczos relative tolerance (default 1e-7)"
    )
    parser.set_defaults(handler="intriguing.cli.spectral:run")


def _evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="robust error at fixed budgets under AutoAttack and other attacks, with "
        "gradient-masking checks",
        description=(
            "Clean and robust error of checkpoints (or of a module:factory with a state dict) "
            "at each --epsilon of an L-inf or L2 ball, per attack and for their union (an "
            "example counts as wrong when it is misclassified clean or any attack fools it "
            "within the budget), with the gradient-masking checks of Carlini et al. (2019) "
            "printed and stored. Writes DIR/results.json, DIR/results.md and "
            "DIR/robust_error.png. Attacks: autoattack (standard version, original settings: "
            "APGD-CE, APGD-T, FAB-T, Square), autoattack-fast (APGD-CE then APGD-T on the 3 "
            "most likely other classes), apgd-ce, apgd-t, fab, square (torchattacks: pip "
            "install intriguing[eval]; run in float64, see --peer-dtype), pgd (ours, with "
            "restarts), fgsm, lbfgs (ours; its minimum-distortion adversarials count where "
            "they lie within the budget)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        action="append",
        metavar="CKPT",
        help="a checkpoint to evaluate (repeatable): this project's classifiers, or any "
        "LightningModule's with --target",
    )
    source.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="any nn.Module: FACTORY() from an importable module or a .py file; weights from "
        "--state-dict",
    )
    parser.add_argument(
        "--target",
        metavar="PKG.MOD:CLASS",
        help="with --checkpoint: the LightningModule class the checkpoints were saved from",
    )
    parser.add_argument("--state-dict", metavar="PATH", help="with --model: the weights to load")
    parser.add_argument(
        "--attack",
        nargs="+",
        default=["autoattack"],
        metavar="NAME",
        help=f"attacks, several allowed: {', '.join(EVALUATE_ATTACKS)} (default autoattack)",
    )
    parser.add_argument("--norm", default="linf", help="linf or l2 (default linf)")
    parser.add_argument(
        "--epsilon",
        nargs="+",
        type=float,
        required=True,
        metavar="EPS",
        help="budgets, radius of the ball in pixel units of [0, 1] images (e.g. 0.1 0.3)",
    )
    parser.add_argument(
        "--subset", type=positive_int, default=None, help="the first N examples only"
    )
    parser.add_argument("--split", choices=TENSOR_SPLITS, default="test", help="(test)")
    parser.add_argument(
        "--data", default=None, help="data set (default: the checkpoints', or mnist)"
    )
    parser.add_argument(
        "--data-dir", default=None, help="data folder (default $INTRIGUING_DATA_DIR or data)"
    )
    parser.add_argument(
        "--mean",
        nargs="+",
        type=float,
        default=None,
        help="normalisation the model expects, per channel (inputs stay [0, 1] pixels)",
    )
    parser.add_argument("--std", nargs="+", type=float, default=None, help="with --mean")
    parser.add_argument(
        "--steps", type=positive_int, default=100, help="APGD and FAB iterations (100)"
    )
    parser.add_argument("--pgd-steps", type=positive_int, default=40, help="our PGD's steps (40)")
    parser.add_argument(
        "--pgd-restarts", type=positive_int, default=5, help="our PGD's random restarts (5)"
    )
    parser.add_argument(
        "--square-queries", type=positive_int, default=5000, help="Square's queries (5000)"
    )
    parser.add_argument(
        "--peer-dtype",
        default="float64",
        help="compute dtype of the torchattacks attacks: float64 (default; keeps the "
        "cross-entropy gradient of overconfident models) or float32",
    )
    parser.add_argument(
        "--large-epsilon",
        type=float,
        default=None,
        help="budget at which (nearly) 100%% error is expected (default 0.5 L-inf, "
        "0.5*sqrt(pixels) L2)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=500, help="(500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random attacks (0)")
    parser.add_argument("--out", default=None, help="output folder (default outputs/evaluate/TIME)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_wandb_arguments(parser)
    parser.set_defaults(handler="intriguing.cli.evaluate:run")


#: The subcommands in the order ``--help`` lists them, each with the function adding its parser.
SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "train": _train,
    "attack": _attack,
    "transfer": _transfer,
    "units": _units,
    "spectral": _spectral,
    "evaluate": _evaluate,
    "reproduce": _reproduce,
    "sweep": _sweep,
}
