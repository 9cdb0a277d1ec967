"""Adversarial training with AdversarialBackfeed: the replace policy keeps the batch size and
puts adversarial rows in place of clean ones; attacks of the current batch are made against
the current weights at every step (Madry et al. 2018, Wong et al. 2020); the presets compose."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from intriguing.attacks import FGSM
from intriguing.callbacks import AdversarialBackfeed
from intriguing.configs import compose

from .test_backfeed import classifier, datamodule, trainer

FGSM_SPEC = {"name": "fgsm", "epsilon": 0.1, "norm": "linf"}
PGD_LAST = {"name": "pgd", "epsilon": 0.1, "norm": "linf", "steps": 3, "keep": "last"}


class Recorder(pl.Callback):
    """The clean batch as it left the loader and the mixed batch each training step got."""

    def __init__(self) -> None:
        self.clean: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mixed: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.expected: list[torch.Tensor] = []
        self.initial: torch.nn.Module | None = None

    def record(self, owner: object) -> None:
        """Record batches where Lightning hands them over (the data module's hook), before
        the callback mixes them (its wrapper wraps this instance attribute)."""
        original = owner.on_after_batch_transfer

        def recording(batch, dataloader_idx):
            batch = original(batch, dataloader_idx)
            if owner.trainer.training:
                self.clean.append((batch[0].clone(), batch[1].clone()))
            return batch

        owner.on_after_batch_transfer = recording

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = copy.deepcopy(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.mixed.append((batch[0].clone(), batch[1].clone(), batch.clean_size))


def test_replace_from_a_pool_keeps_the_batch_size_and_the_leading_clean_rows(
    tmp_path: Path,
) -> None:
    module = classifier()
    backfeed = AdversarialBackfeed(
        pool_size=300,
        mix_ratio=0.5,
        mix="replace",
        refresh_fraction=0.1,
        generator=FGSM_SPEC,
        val_attack=None,
    )
    recorder = Recorder()
    data = datamodule()
    recorder.record(data)
    trainer(tmp_path, [backfeed, recorder], epochs=1).fit(module, datamodule=data)
    assert len(recorder.mixed) == len(recorder.clean) == 10
    for (x, y), (mixed_x, mixed_y, clean) in zip(recorder.clean, recorder.mixed, strict=True):
        assert mixed_x.shape == x.shape and len(mixed_y) == len(y)  # the size is kept
        assert torch.equal(mixed_x[:clean], x[:clean]) and torch.equal(mixed_y[:clean], y[:clean])
    # Once the pool holds 32 examples, they take the place of the last 32 clean rows.
    assert recorder.mixed[-1][2] == 32
    assert not torch.equal(recorder.mixed[-1][0][32:], recorder.clean[-1][0][32:])


def test_current_batch_replace_trains_on_the_batch_attacked_in_place(tmp_path: Path) -> None:
    module = classifier()
    backfeed = AdversarialBackfeed(
        attack_current_batch=True,
        mix="replace",
        mix_ratio=1.0,
        generator=PGD_LAST,
        val_attack=None,
        pool_size=10**9,  # unused: no pool
    )
    recorder = Recorder()
    data = datamodule()
    recorder.record(data)
    fit = trainer(tmp_path, [backfeed, recorder], epochs=1)
    fit.fit(module, datamodule=data)
    assert backfeed.pools == {}
    for (x, y), (mixed_x, mixed_y, clean) in zip(recorder.clean, recorder.mixed, strict=True):
        assert clean == 0 and mixed_x.shape == x.shape
        assert torch.equal(mixed_y, y)  # row i is example i, attacked
        assert (mixed_x - x).abs().max() <= 0.1 + 1e-6
        assert (mixed_x != x).flatten(1).any(dim=1).float().mean() > 0.9
        assert mixed_x.min() >= 0 and mixed_x.max() <= 1
    metrics = fit.callback_metrics
    assert "backfeed/input/clean_error" in metrics and "backfeed/input/success_rate" in metrics
    assert "backfeed/input/pool_size" not in metrics and "backfeed/input/pool_error" not in metrics
    assert metrics["backfeed/input/generated"] == sum(len(y) for _, y in recorder.clean)
    # No clean row was trained on: no clean training error, rather than a false 0.
    assert "train/error" not in metrics


def test_current_batch_is_attacked_against_the_current_weights_at_every_step(
    tmp_path: Path,
) -> None:
    module = classifier()
    backfeed = AdversarialBackfeed(
        attack_current_batch=True,
        mix="append",
        mix_ratio=0.5,
        generator=FGSM_SPEC,
        val_attack=None,
    )

    class Check(pl.Callback):
        """FGSM of the batch's last half against the weights of this very step."""

        def __init__(self) -> None:
            self.agree: list[bool] = []
            self.initial_agree: list[bool] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            (x, y), (mixed_x, mixed_y, clean) = recorder.clean[-1], recorder.mixed[-1]
            assert clean == 64 and len(mixed_y) == 96
            assert torch.equal(mixed_x[:64], x) and torch.equal(mixed_y[64:], y[32:])
            now = FGSM(pl_module, epsilon=0.1)(x[32:], y[32:]).adv
            before = FGSM(recorder.initial, epsilon=0.1)(x[32:], y[32:]).adv
            self.agree.append(torch.allclose(mixed_x[64:], now, atol=1e-6))
            self.initial_agree.append(torch.allclose(mixed_x[64:], before, atol=1e-6))

    recorder = Recorder()
    data = datamodule()
    recorder.record(data)
    check = Check()
    trainer(tmp_path, [backfeed, recorder, check], epochs=1).fit(module, datamodule=data)
    assert len(check.agree) == 10 and all(check.agree)
    # After the first optimizer step the weights, and so the adversarial rows, have moved.
    assert check.initial_agree[0] and not any(check.initial_agree[1:])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mix": "interleave"}, "AdversarialBackfeed: mix='interleave'"),
        (
            {"attack_current_batch": True, "mix_ratio": 0.0},
            "AdversarialBackfeed: attack_current_batch",
        ),
    ],
)
def test_bad_mix_settings_fail_at_construction(settings, message) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        AdversarialBackfeed(generator=FGSM_SPEC, **settings)


@pytest.mark.parametrize(
    ("preset", "epsilon", "steps", "step_size"),
    [
        ("pgd-at-fc100", 0.1, 5, 0.025),
        ("fgsm-rs-fc100", 0.1, 1, 0.125),
        ("pgd-at-conv", 0.3, 40, 0.01),
        ("fgsm-rs-conv", 0.3, 1, 0.375),
    ],
)
def test_adversarial_training_presets_compose(preset, epsilon, steps, step_size) -> None:
    config = compose([f"experiment={preset}"])
    section = config.backfeed
    assert section.enabled and section.attack_current_batch
    assert section.mix == "replace" and section.mix_ratio == 1.0
    generator = section.generator
    assert generator["name"] == "pgd" and generator["keep"] == "last"
    assert (generator["epsilon"], generator["steps"]) == (epsilon, steps)
    assert generator["step_size"] == pytest.approx(step_size)
    assert config.evaluation.subset == 1000
