"""AdversarialBackfeed: pools fill and refresh, mix into training, log, survive a resume,
refuse bad settings before training, and keep the model's mode."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from intriguing.callbacks import AdversarialBackfeed
from intriguing.configs import ConfigError
from intriguing.datamodules import build_datamodule
from intriguing.trainers import ImageClassifier

FGSM = {"name": "fgsm", "epsilon": 0.2, "norm": "linf"}


def datamodule(train: int = 640, val: int = 200) -> pl.LightningDataModule:
    return build_datamodule(
        {
            "name": "mnist",
            "train_subset": train,
            "val_size": val,
            "test_subset": 200,
            "batch_size": 64,
        }
    )


def classifier(**model) -> ImageClassifier:
    spec = {"family": "fc", "hidden": [32, 32], "weight_decay": [0.0], **model}
    return ImageClassifier(
        model=spec,
        optim={"name": "adam", "lr": 1e-3, "schedule": "none"},
        input_shape=[1, 28, 28],
        num_classes=10,
    )


def trainer(tmp_path: Path, callbacks: list, epochs: int = 2, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        logger=pl.loggers.CSVLogger(tmp_path),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        **kwargs,
    )


class BatchSpy(pl.Callback):
    """Records how many examples each training step really trained on, which pools were
    mixed in and the module's mode."""

    def __init__(self, backfeed: AdversarialBackfeed | None = None) -> None:
        self.backfeed = backfeed
        self.sizes: list[int] = []
        self.clean: list[int] = []
        self.mixed: list[dict[str, int]] = []
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sizes.append(len(batch[0]))
        self.clean.append(batch.clean_size)
        if self.backfeed is not None:
            self.mixed.append(dict(self.backfeed.mixed))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.modes.append(pl_module.training)


def test_pool_fills_refreshes_and_mixes_into_every_batch(tmp_path: Path) -> None:
    module = classifier()
    backfeed = AdversarialBackfeed(
        pool_size=300,
        mix_ratio=0.5,
        refresh_fraction=0.1,
        generator=FGSM,
        val_attack=FGSM,
        val_subset=100,
    )
    spy = BatchSpy(backfeed)
    fit = trainer(tmp_path, [backfeed, spy])
    fit.fit(module, datamodule=datamodule())
    pool = backfeed.pools["input"]
    # 20 steps x 30 new examples (those the attack made adversarial) into 300 slots.
    assert pool.size == 300
    assert pool.made_at_step[: pool.size].max() == fit.global_step - 1
    assert pool.examples.min() >= 0 and pool.examples.max() <= 1
    # From the first step on, every batch gets 32 pool examples (half of 64).
    mixed_counts = [size - clean for size, clean in zip(spy.sizes, spy.clean, strict=True)]
    assert mixed_counts[0] <= 30 and mixed_counts[-1] == 32
    assert spy.clean == [64] * len(spy.clean)
    metrics = fit.callback_metrics
    for key in (
        "backfeed/input/pool_size",
        "backfeed/input/success_rate",
        "backfeed/input/distortion",
        "backfeed/input/pool_error",
        "backfeed/input/age_steps",
        "backfeed/input/generation_seconds",
        "val/adv_error",
        "val/adv_distortion",
    ):
        assert key in metrics, key
    assert metrics["backfeed/input/pool_size"] == 300
    assert 0 < metrics["backfeed/input/distortion"] <= 0.2 + 1e-6


def test_hidden_layer_pools_alternate_and_train_layers_above(tmp_path: Path) -> None:
    module = classifier(dropout=0.5)
    backfeed = AdversarialBackfeed(
        pool_size=200,
        mix_ratio=0.25,
        refresh_fraction=0.2,
        generator=FGSM,
        layers=["input", "fc2"],
        alternate=True,
        val_attack=None,
    )
    spy = BatchSpy(backfeed)
    seen: list[torch.Tensor] = []
    # What the layers above fc2 receive in the training step: the hidden pool's rows carry
    # their perturbation, inside the ReLU layer's range.
    module.network.stages["fc2"].register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().clone()) if module.training else None
    )
    trainer(tmp_path, [backfeed, spy], epochs=1).fit(module, datamodule=datamodule())
    hidden = backfeed.pools["fc2"]
    assert hidden.size > 0 and backfeed.pools["input"].size > 0
    # A hidden pool holds inputs and the layer perturbations the attack found.
    assert hidden.examples.shape[1:] == (1, 28, 28) and hidden.perturbations.shape[1:] == (32,)
    assert hidden.perturbations[: hidden.size].abs().sum() > 0
    # One pool per step, in turn; each is refreshed before it is mixed in.
    calls = [next(iter(m)) for m in spy.mixed[:4]]
    assert calls == ["input", "fc2", "input", "fc2"]
    assert spy.mixed[1] == {"fc2": 16} and spy.sizes[1] == 80
    assert all(out.min() >= 0 for out in seen)
    # Generation put the model in eval mode (dropout) and training got it back.
    assert all(spy.modes)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mix_ratio": 1.5}, "AdversarialBackfeed: mix_ratio=1.5: must be in"),
        ({"refresh_fraction": 0.0}, "AdversarialBackfeed: refresh_fraction=0.0"),
        ({"pool_size": 0}, "AdversarialBackfeed: pool_size=0"),
    ],
)
def test_bad_settings_fail_at_construction(settings, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        AdversarialBackfeed(generator=FGSM, **settings)
    assert not isinstance(raised.value, ConfigError)  # the library's error names the parameter


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"layers": ["fc9"]}, r"AdversarialBackfeed: layers: 'fc9': unknown layer"),
        ({"layers": ["logits"]}, r"AdversarialBackfeed: layers: 'logits'"),
        (
            {"pool_size": 5000},
            r"AdversarialBackfeed: pool_size=5000 is larger than the training set",
        ),
    ],
)
def test_bad_settings_fail_before_training_starts(tmp_path, settings, message) -> None:
    module = classifier()
    steps: list[int] = []
    module.on_train_batch_start = lambda batch, idx: steps.append(idx)
    backfeed = AdversarialBackfeed(generator=FGSM, **{"pool_size": 100, **settings})
    with pytest.raises(ValueError, match=message):
        trainer(tmp_path, [backfeed]).fit(module, datamodule=datamodule())
    assert steps == []


def test_resume_restores_the_same_pool_and_random_state(tmp_path: Path) -> None:
    data = datamodule()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    settings = {"pool_size": 150, "refresh_fraction": 0.1, "generator": FGSM, "val_attack": None}
    first = AdversarialBackfeed(**settings)
    trainer(tmp_path, [first, checkpoints], epochs=1).fit(classifier(), datamodule=data)
    saved_pool = first.pools["input"].state_dict()
    saved_rng = first.rng.get_state()

    path = tmp_path / "ckpt" / "last.ckpt"
    content = torch.load(path, weights_only=True)  # tensors and primitives only
    (state,) = [v for k, v in content["callbacks"].items() if "AdversarialBackfeed" in k]
    torch.testing.assert_close(
        state["ranks"][0]["pools"]["input"]["examples"], saved_pool["examples"]
    )

    second = AdversarialBackfeed(**settings)
    restored: dict = {}

    class Peek(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            # state_dict() returns views of the live buffers (as nn.Module's does): copy.
            state = second.pools["input"].state_dict()
            restored["pool"] = {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}
            restored["rng"] = second.rng.get_state()

    trainer(tmp_path, [second, Peek()], epochs=2).fit(
        classifier(), datamodule=data, ckpt_path=str(path)
    )
    for key in ("examples", "labels", "made_at_step"):
        torch.testing.assert_close(restored["pool"][key], saved_pool[key])
    assert torch.equal(restored["rng"], saved_rng)
    # And it went on refreshing the restored pool.
    assert second.pools["input"].made_at_step.max() > saved_pool["made_at_step"].max()


def test_resume_with_fewer_processes_merges_every_saved_pool(tmp_path: Path) -> None:
    """A checkpoint written by 2 DDP processes, resumed by 1: the one process gets every
    saved example, rank by rank, not just rank 0's share."""
    data = datamodule()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    settings = {"pool_size": 150, "refresh_fraction": 0.1, "generator": FGSM, "val_attack": None}
    trainer(tmp_path, [AdversarialBackfeed(**settings), checkpoints], epochs=1).fit(
        classifier(), datamodule=data
    )
    content = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    (key,) = [k for k in content["callbacks"] if "AdversarialBackfeed" in k]
    (saved,) = content["callbacks"][key]["ranks"]
    pool = saved["pools"]["input"]
    assert pool["size"] > 80  # filled (FGSM keeps only the examples it fools)

    def share(part: slice) -> dict:
        tensors = {name: pool[name][part] for name in ("examples", "labels", "made_at_step")}
        return {**saved, "pools": {"input": {**pool, "size": len(tensors["labels"]), **tensors}}}

    # As if rank 0 had kept the examples from the 81st on and rank 1 the first 80.
    content["callbacks"][key] = {
        "world_size": 2,
        "ranks": [share(slice(80, None)), share(slice(0, 80))],
    }
    two_processes = tmp_path / "two-processes.ckpt"
    torch.save(content, two_processes)

    resumed = AdversarialBackfeed(**settings)
    restored: dict = {}

    class Peek(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            state = resumed.pools["input"].state_dict()
            restored.update({k: v.clone() for k, v in state.items() if torch.is_tensor(v)})

    trainer(tmp_path, [resumed, Peek()], epochs=2).fit(
        classifier(), datamodule=data, ckpt_path=str(two_processes)
    )
    for name in ("examples", "labels", "made_at_step"):
        expected = torch.cat([pool[name][80:], pool[name][:80]])
        torch.testing.assert_close(restored[name], expected)


def test_generation_runs_in_fp32_under_mixed_precision(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(
        pool_size=100, refresh_fraction=0.2, generator=FGSM, val_attack=FGSM, val_subset=50
    )
    fit = trainer(tmp_path, [backfeed], epochs=1, precision="bf16-mixed")
    fit.fit(classifier(), datamodule=datamodule())
    pool = backfeed.pools["input"]
    assert pool.size > 0 and pool.examples.dtype == torch.float32
    assert torch.isfinite(fit.callback_metrics["val/adv_error"])


def test_refresh_every_n_steps_attacks_examples_from_all_batches_since_the_last(
    tmp_path: Path,
) -> None:
    backfeed = AdversarialBackfeed(
        pool_size=200,
        refresh_fraction=0.5,
        refresh_every_n_steps=5,
        generator=FGSM,
        val_attack=None,
    )
    seen: list[int] = []
    original = backfeed._refresh
    backfeed._refresh = lambda module, layer, x, y, step: (
        seen.append(len(y)),
        original(module, layer, x, y, step),
    )[1]
    trainer(tmp_path, [backfeed], epochs=1).fit(classifier(), datamodule=datamodule())
    made = set(backfeed.pools["input"].made_at_step[: backfeed.pools["input"].size].tolist())
    assert made == {0, 4, 9}  # the first step, then every fifth
    # 100 new examples per refresh, staged 20 per step from each batch in between.
    assert seen == [20, 80, 100]
