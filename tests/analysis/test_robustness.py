"""A run's robustness figures (issue 12, item 5): robust error at stated budgets beside clean
error on the same images, the fixed-budget attack's error and the minimum distortion, named
for the run's metrics; the figures a table shows; the checks before training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from intriguing.analysis import robustness
from intriguing.analysis.robustness import (
    budget_key,
    budget_label,
    check_robust_attacks,
    headline_figures,
    measure_robustness,
    robust_attacks_text,
)

pytest.importorskip("torchattacks")

FAST = {"robust_steps": 3, "pgd_steps": 3, "pgd_restarts": 2}
ATTACKS = ["pgd", "apgd-ce", "apgd-t", "fgsm"]


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small 10-class net (APGD-T's DLR loss needs at least 4 classes) on 4x4 images, and
    32 test images it mostly classifies correctly."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.rand(10, 1, 4, 4, generator=generator)
    labels = torch.arange(300) % 10
    images = (prototypes[labels] + 0.1 * torch.randn(300, 1, 4, 4, generator=generator)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(images[:268]), labels[:268]).backward()
        optimizer.step()
    return model.eval(), images[268:], labels[268:]


def test_robust_error_is_the_union_on_the_first_images_beside_their_clean_error(trained) -> None:
    model, x, y = trained
    found = measure_robustness(
        model,
        x,
        y,
        attack={"name": "fgsm", "epsilon": 0.1, "norm": "linf"},
        distortion_attack={"name": "lbfgs", "search_steps": 2, "max_iterations": 10},
        robust_attacks=ATTACKS,
        linf_epsilons=[0.3, 0.05],
        l2_epsilons=[1.0],
        robust_subset=16,
        **FAST,
    )
    metrics = found.as_metrics("eval/")
    assert metrics["eval/examples"] == 32 and metrics["eval/robust_examples"] == 16
    with torch.no_grad():
        wrong = (model(x[:16]).argmax(dim=1) != y[:16]).float().mean()
    assert metrics["eval/robust_clean_error"] == pytest.approx(float(wrong))
    for budget in ("linf_0.05", "linf_0.3", "l2_1"):
        union = metrics[f"eval/robust_error/{budget}"]
        each = [metrics[f"eval/robust_error/{budget}/{name}"] for name in ATTACKS]
        assert max(each) <= union <= 1.0 and union >= metrics["eval/robust_clean_error"]
    assert metrics["eval/robust_error/linf_0.3"] >= metrics["eval/robust_error/linf_0.05"]
    assert metrics["eval/robust_error/linf_0.3"] > 0.9  # far beyond the classes' margins
    # The masking checks that could run, 1 where violated; those that could not are left out.
    masking = {k: v for k, v in metrics.items() if k.startswith("eval/masking/")}
    assert masking["eval/masking/linf/robust_error_grows_with_epsilon"] == 0.0
    assert set(masking) == {
        "eval/masking/linf/robust_error_grows_with_epsilon",
        "eval/masking/linf/pgd_at_least_as_strong_as_fgsm",
        "eval/masking/l2/pgd_at_least_as_strong_as_fgsm",
    }
    assert metrics["eval/masking_violations"] == sum(masking.values())
    # The fixed-budget attack and the paper's measure on all 32 images, as before.
    assert {"eval/adversarial_error", "eval/min_distortion", "eval/clean_error"} <= set(metrics)
    assert all(isinstance(value, float) for value in metrics.values())


def test_without_robust_attacks_the_figures_are_the_old_ones(trained) -> None:
    model, x, y = trained
    found = measure_robustness(
        model,
        x[:8],
        y[:8],
        attack={"name": "fgsm", "epsilon": 0.1, "norm": "linf"},
        distortion_attack={"name": "lbfgs", "search_steps": 2, "max_iterations": 10},
        robust_attacks=(),
    )
    assert found.robust == []
    assert set(found.as_metrics()) == {
        f"eval/{key}"
        for key in (
            "clean_error",
            "adversarial_error",
            "min_distortion",
            "min_distortion_success",
            "examples",
            "seconds",
        )
    }


def test_bad_robust_settings_are_refused_before_any_attack(trained) -> None:
    model, x, y = trained
    common = {
        "attack": {"name": "fgsm", "epsilon": 0.1, "norm": "linf"},
        "distortion_attack": {"name": "lbfgs"},
    }
    with pytest.raises(
        ValueError, match=r"robust_attacks=\[apgd\]: attack 'apgd': expected one of"
    ):
        measure_robustness(model, x, y, robust_attacks=["apgd"], linf_epsilons=[0.1], **common)
    with pytest.raises(ValueError, match=r"epsilon -0\.1: must be a positive number"):
        measure_robustness(model, x, y, robust_attacks=["pgd"], linf_epsilons=[-0.1], **common)
    with pytest.raises(ValueError, match=r"^l2_epsilons=\[0\]: epsilon 0: must be a positive"):
        measure_robustness(model, x, y, robust_attacks=["pgd"], l2_epsilons=[0], **common)
    with pytest.raises(ValueError, match="robust_subset=-1"):
        measure_robustness(model, x, y, robust_subset=-1, **common)
    for name in ("robust_steps", "pgd_steps", "pgd_restarts", "batch_size"):
        with pytest.raises(ValueError, match=rf"^{name}=0: must be at least 1"):
            measure_robustness(model, x, y, robust_attacks=["pgd"], **{name: 0}, **common)


def test_a_missing_torchattacks_is_named_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("torchattacks is not installed; ...: pip install intriguing[eval]")

    monkeypatch.setattr(robustness, "import_torchattacks", missing)
    check_robust_attacks(["pgd", "fgsm", "lbfgs"])  # ours need nothing
    with pytest.raises(ImportError, match=r"apgd-ce, apgd-t: .*intriguing\[eval\]"):
        check_robust_attacks(["pgd", "apgd-ce", "apgd-t"])
    with pytest.raises(ImportError, match="intriguing"):
        check_robust_attacks([{"name": "torchattacks.PGD", "label": "ta-pgd"}])


def test_headline_figures_in_table_order_with_their_names() -> None:
    keys = {
        "eval/clean_error",
        "eval/robust_clean_error",
        "eval/robust_error/l2_1.5",
        "eval/robust_error/l2_1.5/fgsm",
        "eval/robust_error/linf_0.3",
        "eval/robust_error/linf_0.1",
        "eval/robust_error/linf_0.1/apgd-t",
        "eval/robust_error/linf_0.1/pgd",
        "eval/robust_error/linf_0.1/fgsm",
        "eval/robust_error/linf_0.3/fgsm",
        "eval/adversarial_error",
        "eval/min_distortion",
        "eval/masking/linf/robust_error_grows_with_epsilon",
    }
    assert [(f.key, f.label, f.percent) for f in headline_figures(keys)] == [
        ("eval/robust_clean_error", "clean error (same images)", True),
        ("eval/robust_error/linf_0.1", "robust error (L-inf 0.1)", True),
        ("eval/robust_error/linf_0.3", "robust error (L-inf 0.3)", True),
        ("eval/robust_error/l2_1.5", "robust error (L2 1.5)", True),
        ("eval/robust_error/linf_0.1/fgsm", "FGSM error (L-inf 0.1)", True),
        ("eval/min_distortion", "mean minimum distortion", False),
    ]
    assert robust_attacks_text(keys) == "apgd-t, pgd, fgsm"
    # A run without robust figures (or an older one): the fixed-budget attack's error.
    old = {"eval/adversarial_error", "eval/min_distortion"}
    assert [f.label for f in headline_figures(old)] == [
        "adversarial test error",
        "mean minimum distortion",
    ]
    assert robust_attacks_text(old) == ""


def test_budget_names() -> None:
    assert budget_key("linf", 0.1) == "linf_0.1" and budget_key("l2", 1.5) == "l2_1.5"
    assert budget_label("linf", 0.3) == "L-inf 0.3" and budget_label("l2", 0.5) == "L2 0.5"
    assert budget_label("linf", 8 / 255) == "L-inf 8/255"
    assert budget_label("linf", 0.2) == "L-inf 0.2"  # 51/255, but written as given
