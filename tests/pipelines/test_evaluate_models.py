"""``pipelines.evaluate_models``: robust error at fixed budgets of a factory's model from
Python, its files, and the settings refused before anything loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from intriguing.analysis.evaluation import UNION
from intriguing.cli.main import main
from intriguing.configs import ConfigError
from intriguing.pipelines.evaluate_models import (
    EvaluateModelsSettings,
    evaluate_models,
    write_results,
)

FACTORY = """
import torch
from torch import nn


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
"""


def test_a_factory_model_is_evaluated_and_written(mnist_dir: Path, tmp_path: Path) -> None:
    factory = tmp_path / "evaluated_nets.py"
    factory.write_text(FACTORY)
    namespace: dict = {}
    exec(compile(FACTORY, "evaluated_nets", "exec"), namespace)
    model: nn.Module = namespace["build"]()
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    spec = f"{factory}:build"
    settings = EvaluateModelsSettings(
        epsilons=[0.2, 0.05],
        model=spec,
        state_dict=weights,
        attacks=["fgsm", "pgd"],
        subset=16,
        data_dir=str(mnist_dir),
        pgd_steps=3,
        pgd_restarts=1,
        progress=False,
    )
    lines: list[str] = []
    results = evaluate_models(settings, report=lines.append)
    assert lines == [
        "evaluate: 1 model(s), mnist test, 16 examples, linf epsilon 0.05 0.2, attacks fgsm pgd"
    ]
    assert results.described == "mnist test, 16 examples"
    evaluation = results.evaluations[spec]
    assert [b.epsilon for b in evaluation.budgets] == [0.05, 0.2]
    for budget in evaluation.budgets:
        errors = budget.robust_error
        assert set(errors) == {"fgsm", "pgd", UNION} and budget.examples == 16
        assert errors[UNION] >= max(errors["fgsm"], errors["pgd"]) >= budget.clean_error
    files = write_results(results, tmp_path / "eval")
    record = json.loads(files.json.read_text())
    assert record["epsilons"] == [0.05, 0.2] and record["attacks"] == ["fgsm", "pgd"]
    assert record["models"][spec]["source"] == {"model": spec, "state_dict": str(weights)}
    assert files.markdown.read_text() == results.markdown()
    assert files.plot.stat().st_size > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attacks": ["pgd", "pgd"]}, "--attack pgd pgd: each attack at most once"),
        ({"epsilons": [float("inf")]}, "--epsilon inf: budgets must be positive and finite"),
        ({"peer_dtype": "float16"}, "--peer-dtype float16: expected float32 or float64"),
        ({"mean": [0.5]}, "--mean and --std go together"),
        ({"target": "pkg:Net"}, "--target goes with --checkpoint"),
        ({"model": None}, "--checkpoint or --model: give the models to evaluate"),
    ],
)
def test_settings_are_refused_before_anything_loads(changes: dict, message: str) -> None:
    fields = {"epsilons": [0.1], "model": "no_such_module:build", "attacks": ["pgd"], **changes}
    with pytest.raises(ConfigError, match=f"^{message}"):
        evaluate_models(EvaluateModelsSettings(**fields))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"subset": -5}, ValueError, "subset=-5: must be at least 1 (or None: the whole split)"),
        ({"subset": 0}, ValueError, "subset=0: must be at least 1"),
        ({"epsilons": 0.1}, TypeError, "epsilons=0.1: expected a sequence of numbers"),
        ({"epsilons": []}, ValueError, "epsilons=[]: must not be empty"),
        ({"epsilons": [0.1, "0.3"]}, TypeError, "epsilons=[0.1, '0.3']: item 1 ('0.3'): expected"),
        ({"attacks": "pgd"}, TypeError, "attacks='pgd': expected a sequence of names (str), not"),
        ({"checkpoints": "a.ckpt"}, TypeError, "checkpoints='a.ckpt': expected a sequence"),
        ({"mean": 0.5, "std": [0.2]}, TypeError, "mean=0.5: expected a sequence of numbers"),
        ({"pgd_restarts": 0}, ValueError, "pgd_restarts=0: must be at least 1"),
        ({"batch_size": 1.5}, TypeError, "batch_size=1.5: expected a whole number"),
        ({"split": "dev"}, ValueError, "split='dev': expected one of train, val, test"),
        ({"seed": 0.5}, TypeError, "seed=0.5: expected a whole number"),
    ],
)
def test_settings_refuse_values_of_the_wrong_kind_or_range(
    changes: dict, error: type[Exception], message: str
) -> None:
    """From Python, what the command line's option types refuse, refused by field and value
    when the settings are built."""
    fields = {"epsilons": [0.1], "model": "no_such_module:build", "attacks": ["pgd"], **changes}
    with pytest.raises(error, match="^EvaluateModelsSettings: " + re.escape(message)):
        EvaluateModelsSettings(**fields)


def test_a_factory_model_without_weights_is_evaluated_with_a_warning(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a state dict the factory's own (here: initial) weights are evaluated, and the
    report says so, from Python and from the command line."""
    factory = tmp_path / "untrained_nets.py"
    factory.write_text(FACTORY)
    spec = f"{factory}:build"
    settings = EvaluateModelsSettings(
        epsilons=[0.1],
        model=spec,
        attacks=["fgsm"],
        subset=4,
        data_dir=str(mnist_dir),
        progress=False,
    )
    lines: list[str] = []
    results = evaluate_models(settings, report=lines.append)
    warning = f"warning: --model {spec}: no --state-dict given: evaluating the factory's initial"
    assert lines[0].startswith(warning) and lines[1].startswith("evaluate: 1 model(s)")
    assert results.sources[spec] == {"model": spec, "state_dict": None}
    words = ["evaluate", "--model", spec, "--epsilon", "0.1", "--attack", "fgsm", "--subset", "4"]
    words += ["--data-dir", str(mnist_dir), "--device", "cpu", "--no-progress"]
    assert main([*words, "--out", str(tmp_path / "out")]) == 0
    assert warning in capsys.readouterr().out
