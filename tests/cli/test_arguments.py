"""A pipeline's settings come from the parsed options of the same names
(cli.arguments.settings_from): every field of each command's settings has its option, so a
parser and its pipeline cannot drift apart unnoticed."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from intriguing.cli import attack, evaluate, spectral
from intriguing.cli.arguments import settings_from
from intriguing.cli.main import build_parser

COMMANDS = {
    "attack": (attack.settings, ["attack", "--checkpoint", "run.ckpt", "--epsilon", "0.2"]),
    "evaluate": (
        evaluate.settings,
        ["evaluate", "--checkpoint", "a.ckpt", "--epsilon", "0.1", "0.3", "--no-progress"],
    ),
    "spectral": (spectral.settings, ["spectral", "--checkpoint", "run.ckpt"]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_settings_field_comes_from_an_option(command: str) -> None:
    make, words = COMMANDS[command]
    made = make(build_parser().parse_args(words))
    assert made is not None


def test_the_options_reach_the_fields() -> None:
    made = evaluate.settings(build_parser().parse_args(COMMANDS["evaluate"][1]))
    assert (made.epsilons, made.checkpoints, made.progress) == ([0.1, 0.3], ["a.ckpt"], False)
    assert str(made.device) == "cpu" or made.device.type == "cuda"
    made = attack.settings(build_parser().parse_args(COMMANDS["attack"][1]))
    assert (made.epsilon, made.checkpoint) == (0.2, "run.ckpt")


@dataclass
class Settings:
    size: int
    rate: float = 0.5


def test_a_field_without_an_option_is_named() -> None:
    args = argparse.Namespace(size=3, command="demo")
    assert settings_from(Settings, args, rate=0.1) == Settings(3, 0.1)
    assert settings_from(Settings, argparse.Namespace(size=3, lr=0.2), options={"rate": "lr"}) == (
        Settings(3, 0.2)
    )
    with pytest.raises(TypeError, match=r"^Settings\.rate: no option 'rate' of demo"):
        settings_from(Settings, args)
