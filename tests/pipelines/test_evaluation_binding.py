"""The ``evaluation`` section reaches analysis.robustness.measure_robustness through one
declared Binding (issue 13, item 2), as the training-side sections reach their objects
(tests/pipelines/test_build.py): every key is a parameter or excluded with a reason, the
defaults agree, and the section's keys are the arguments, with nothing mapped by hand."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from intriguing.analysis.robustness import measure_robustness
from intriguing.configs import ConfigError, compose, to_container
from intriguing.configs.schema import EvaluationConfig
from intriguing.pipelines.evaluation import EVALUATION, check_evaluation


def test_every_key_of_the_evaluation_section_is_a_parameter_or_excluded() -> None:
    assert EVALUATION.target is measure_robustness
    assert EVALUATION.unbound(f.name for f in fields(EvaluationConfig)) == []


def test_measure_robustness_defaults_to_the_config_defaults() -> None:
    assert EVALUATION.drifted_defaults(EvaluationConfig) == {}


def test_the_section_is_the_arguments_with_the_extras() -> None:
    section = to_container(compose(["experiment=demo", "logger=none"]))["evaluation"]
    model, images, labels = torch.nn.Identity(), torch.zeros(2, 1, 4, 4), torch.zeros(2)
    arguments = EVALUATION.arguments(section, model=model, images=images, labels=labels)
    assert arguments == {
        **{key: value for key, value in section.items() if key != "subset"},
        "model": model,
        "images": images,
        "labels": labels,
    }


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["evaluation.batch_size=0"], "evaluation.batch_size=0: must be at least 1"),
        (["evaluation.robust_steps=0"], "evaluation.robust_steps=0: must be at least 1"),
        (["evaluation.l2_epsilons=[-1]"], "evaluation.l2_epsilons=[-1.0]: epsilon -1.0"),
        (["evaluation.robust_subset=-1"], "evaluation.robust_subset=-1: must be 0"),
    ],
)
def test_check_evaluation_names_the_key_of_a_bad_argument(words: list[str], message: str) -> None:
    config = compose(["evaluation.subset=16", "evaluation.robust_attacks=[pgd,fgsm]", *words])
    with pytest.raises(ConfigError) as raised:
        check_evaluation(config)
    assert str(raised.value).startswith(message), raised.value


def test_without_robust_error_its_strength_is_not_checked() -> None:
    for words in (["evaluation.robust_subset=0"], ["evaluation.robust_attacks=[]"]):
        check_evaluation(compose(["evaluation.subset=16", "evaluation.robust_steps=0", *words]))
