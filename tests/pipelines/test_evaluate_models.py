"""``pipelines.evaluate_models``: robust error at fixed budgets of a factory's model from
Python, its files, and the settings refused before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from intriguing.analysis.evaluation import UNION
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
