"""Robust error at fixed budgets (issue 12, items 1 and 2): the library, the masking checks and
``intriguing evaluate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intriguing.analysis.evaluation import (
    ATTACKS,
    UNION,
    AttackSettings,
    BudgetEvaluation,
    evaluate_robustness,
    masking_checks,
)
from intriguing.cli import parsers
from intriguing.cli.main import main

pytest.importorskip("torchattacks")

FAST = AttackSettings(steps=5, pgd_steps=5, pgd_restarts=2, square_queries=50, batch_size=64)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = blobs(300, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def blobs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (count,), generator=generator)
    noise = 0.15 * torch.randn(count, 1, 4, 4, generator=generator)
    return (prototypes[labels] + noise).clamp(0, 1), labels


def test_union_is_the_per_example_worst_case():
    model = tiny_model()
    x, y = blobs(40, seed=2)
    attacks = ["fgsm", "pgd", "apgd-ce", "square", "lbfgs"]
    evaluation = evaluate_robustness(
        model, x, y, attacks=attacks, epsilons=[0.3, 0.05], settings=FAST
    )
    assert [b.epsilon for b in evaluation.budgets] == [0.05, 0.3]
    with torch.no_grad():
        clean = float((model(x).argmax(1) != y).float().mean())
    for budget in evaluation.budgets:
        assert budget.examples == 40 and budget.seconds >= 0
        assert budget.clean_error == pytest.approx(clean)
        assert set(budget.robust_error) == {*attacks, UNION}
        for name in attacks:
            assert clean <= budget.robust_error[name] <= budget.robust_error[UNION]
    assert evaluation.budgets[1].robust_error[UNION] > evaluation.budgets[0].robust_error[UNION]
    record = json.loads(json.dumps(evaluation.to_dict()))
    assert {c["name"] for c in record["masking"]} == {
        "robust error grows with epsilon",
        "PGD at least as strong as FGSM",
        "white box at least as strong as black box",
        "full error at a large epsilon",
    }
    large = {c.name: c for c in evaluation.masking}["full error at a large epsilon"]
    assert large.status == "not checked" and "0.5" in large.details[0]


def test_peer_and_our_attacks_by_specification():
    model = tiny_model()
    x, y = blobs(30, seed=3)
    attacks = [
        {"name": "torchattacks.PGD", "alpha": 0.05, "steps": 5, "label": "ta-pgd"},
        {"name": "pgd", "steps": 5},
        "fgsm",
    ]
    evaluation = evaluate_robustness(model, x, y, attacks=attacks, epsilons=[0.2], settings=FAST)
    assert evaluation.attacks == ["ta-pgd", "pgd", "fgsm"]
    (errors,) = [b.robust_error for b in evaluation.budgets]
    assert errors[UNION] >= max(errors["ta-pgd"], errors["pgd"], errors["fgsm"])
    assert errors["ta-pgd"] > 0
    with pytest.raises(ValueError, match="eps is set from each epsilon"):
        evaluate_robustness(
            model, x, y, attacks=[{"name": "torchattacks.PGD", "eps": 0.1}], epsilons=[0.1]
        )
    with pytest.raises(ValueError, match="each label at most once"):
        evaluate_robustness(model, x, y, attacks=["pgd", {"name": "pgd"}], epsilons=[0.1])


def budget(epsilon: float, **errors: float) -> BudgetEvaluation:
    union = max(errors.values())
    return BudgetEvaluation(epsilon, 0.01, {**errors, UNION: union}, 100, 1.0)


def test_masking_checks_flag_each_violation_by_name():
    table = [
        budget(0.1, fgsm=0.5, pgd=0.4, square=0.6),  # PGD < FGSM, Square beats white box
        budget(0.3, fgsm=0.45, pgd=0.7, square=0.2),  # FGSM falls as epsilon grows
        budget(0.5, fgsm=0.6, pgd=0.8, square=0.3),  # 80% < 95% at a large budget
    ]
    checks = {check.name: check for check in masking_checks(table, large=0.5)}
    assert all(check.violated for check in checks.values())
    assert (
        "fgsm: 50.00% at eps=0.1 > 45.00% at eps=0.3"
        in checks["robust error grows with epsilon"].details
    )
    assert checks["PGD at least as strong as FGSM"].details == ["eps=0.1: pgd 40.00% < fgsm 50.00%"]
    assert "eps=0.1" in checks["white box at least as strong as black box"].details[0]
    assert checks["full error at a large epsilon"].details == ["eps=0.5: union 80.00% < 95%"]
    assert checks["PGD at least as strong as FGSM"].line().startswith("[VIOLATED] PGD")
    healthy = [budget(0.1, fgsm=0.3, pgd=0.5, square=0.2), budget(0.5, fgsm=0.9, pgd=1.0)]
    assert not any(check.violated for check in masking_checks(healthy, large=0.5))


def test_parser_attacks_match_the_library():
    assert parsers.EVALUATE_ATTACKS == ATTACKS


# ------------------------------------------------------------------------------ the command


@pytest.fixture
def checkpoint(mnist_classifier_checkpoint: Path) -> Path:
    return mnist_classifier_checkpoint


def test_evaluate_writes_results_table_and_plot(checkpoint, mnist_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    arguments = ["evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(mnist_dir)]
    arguments += ["--attack", "fgsm", "pgd", "apgd-ce", "--epsilon", "0.05", "0.1"]
    arguments += ["--subset", "30", "--steps", "5", "--pgd-steps", "5", "--pgd-restarts", "1"]
    assert main([*arguments, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Gradient-masking checks, fc:" in printed and "union" in printed
    record = json.loads((out / "results.json").read_text())
    assert record["norm"] == "linf" and record["epsilons"] == [0.05, 0.1]
    assert record["attacks"] == ["fgsm", "pgd", "apgd-ce"]
    model = record["models"]["fc"]
    assert model["source"]["checkpoint"] == str(checkpoint)
    assert isinstance(model["masking_violations"], list)
    assert [b["epsilon"] for b in model["budgets"]] == [0.05, 0.1]
    for entry in model["budgets"]:
        assert set(entry) >= {"clean_error", "robust_error", "examples", "seconds"}
        assert entry["examples"] == 30
        errors = entry["robust_error"]
        assert set(errors) == {"fgsm", "pgd", "apgd-ce", "union"}
        assert all(errors["union"] >= errors[name] >= entry["clean_error"] for name in errors)
    table = (out / "results.md").read_text()
    assert table.startswith("| model | epsilon | clean | fgsm | pgd | apgd-ce | union")
    assert (out / "robust_error.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attack", "autoatack"], "--attack autoatack: unknown attack"),
        (["--epsilon", "0"], "--epsilon 0.0: budgets must be positive"),
        (["--norm", "l1"], "--norm l1: expected one of linf, l2"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, extra, message):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"")
    arguments = ["evaluate", "--checkpoint", str(checkpoint), "--epsilon", "0.1", *extra]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


def test_missing_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "none.ckpt"
    assert main(["evaluate", "--checkpoint", str(missing), "--epsilon", "0.1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"intriguing evaluate: error: --checkpoint {missing}: no such file"
