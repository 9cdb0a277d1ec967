"""AdversarialBackfeed with LightningModules that know nothing of this project: pooled examples
reach their own training_step, hidden pools at any named submodule (skip connections too),
dict batches, the listed bugs (accumulation, validate-only runs, empty pools' figures,
checkpoint size, precision)."""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from intriguing.attacks import perturb_layer
from intriguing.callbacks import AdversarialBackfeed, AdversarialPool
from intriguing.callbacks.backfeed import _add_perturbation
from intriguing.trainers import ImageClassifier

FGSM = {"name": "fgsm", "epsilon": 0.3, "norm": "linf"}


def images(count: int = 128, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    return TensorDataset(x, y)


class SmallCNN(pl.LightningModule):
    """A from-scratch module: conv + BatchNorm, (x, y) tuples, its own loss; it records the
    batches its training_step saw."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()
        )
        self.head = nn.Linear(4 * 8 * 8, 4)
        self.sizes: list[int] = []
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        self.sizes.append(len(x))
        self.inputs.append(x.detach().clone())
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, width), nn.ReLU())

    def forward(self, h: Tensor) -> Tensor:
        return h + self.inner(h)


class SkipNet(SmallCNN):
    """A skip connection around ``block.inner``: its output is read by the sum, and the hidden
    pool's perturbation must reach the head through it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.block = Residual(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.features(x)))


class Records(Dataset):
    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        x, y = self.data[index]
        return {"image": x, "label": y, "weight": torch.tensor(2.0), "index": torch.tensor(index)}


class DictModule(SmallCNN):
    """Dict batches with a per-example weight: weighted loss."""

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.sizes.append(len(batch["image"]))
        self.inputs.append(batch["weight"].detach().clone())
        losses = F.cross_entropy(self(batch["image"]), batch["label"], reduction="none")
        return (losses * batch["weight"]).mean()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", F.cross_entropy(self(batch["image"]), batch["label"]))


def loader(data: Dataset, batch_size: int = 32) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def fit_trainer(tmp_path: Path, callbacks: list, **kwargs) -> pl.Trainer:
    settings = {
        "max_epochs": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "accelerator": "cpu",
        "default_root_dir": tmp_path,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return pl.Trainer(callbacks=callbacks, **settings)


def test_pooled_examples_reach_a_plain_modules_training_step(tmp_path: Path) -> None:
    module = SmallCNN()
    backfeed = AdversarialBackfeed(
        pool_size=64, mix_ratio=0.5, refresh_fraction=0.5, generator=FGSM, val_attack=None
    )
    fit_trainer(tmp_path, [backfeed]).fit(module, loader(images()))
    # 4 batches of 32: from the first one on, 16 pooled examples are appended.
    assert module.sizes == [48, 48, 48, 48]
    pool = backfeed.pools["input"]
    assert pool.size > 0
    # The appended rows are pool examples (adversarial, not the clean batch's inputs).
    last = module.inputs[-1]
    stored = pool.examples[: pool.size].flatten(1)
    for row in last[32:].flatten(1):
        assert (stored - row).abs().amax(dim=1).min() == 0
    # The module keeps no trace of the callback.
    assert "on_after_batch_transfer" not in vars(module)


def test_dict_batches_extend_filled_entries_and_refuse_unknown_ones(tmp_path: Path) -> None:
    module = DictModule()
    backfeed = AdversarialBackfeed(
        pool_size=64,
        refresh_fraction=0.5,
        generator=FGSM,
        val_attack=None,
        input_key="image",
        target_key="label",
        fill={"weight": 1.0},
    )
    with pytest.raises(ValueError, match=r"entry 'index' has one value per example"):
        fit_trainer(tmp_path, [backfeed]).fit(module, loader(Records(images())))
    assert module.sizes == []  # refused before the first step
    assert "on_after_batch_transfer" not in vars(module)

    backfeed.fill = {"weight": 1.0, "index": -1}
    fit_trainer(tmp_path, [backfeed]).fit(module, loader(Records(images())))
    assert module.sizes == [48, 48, 48, 48]
    weights = module.inputs[-1]
    assert (weights[:32] == 2.0).all() and (weights[32:] == 1.0).all()


def test_missing_keys_are_refused_before_the_first_step(tmp_path: Path) -> None:
    module = DictModule()
    backfeed = AdversarialBackfeed(pool_size=64, generator=FGSM, val_attack=None)
    with pytest.raises(ValueError, match=r"input_key=0: the training batch has no such entry.*"):
        fit_trainer(tmp_path, [backfeed]).fit(module, loader(Records(images())))
    assert module.sizes == []


def test_hidden_pool_at_a_submodule_behind_a_skip_connection(tmp_path: Path) -> None:
    module = SkipNet()
    # Weights that stay put, so that the step's activations can be recomputed afterwards.
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.0)
    backfeed = AdversarialBackfeed(
        pool_size=64,
        mix_ratio=0.5,
        refresh_fraction=0.5,
        generator=FGSM,
        layers=["inner"],  # block.inner, by its unique suffix
        val_attack=None,
    )
    heads: list[Tensor] = []
    module.head.register_forward_pre_hook(
        lambda _m, args: heads.append(args[0].detach().clone()) if module.training else None
    )
    fit_trainer(tmp_path, [backfeed]).fit(module, loader(images()))
    pool = backfeed.pools["inner"]
    assert pool.size > 0 and pool.perturbations is not None
    assert pool.examples.shape[1:] == (1, 8, 8) and pool.perturbations.shape[1:] == (16,)
    assert module.sizes == [48, 48, 48, 48]
    # What the head read in the last step: h + inner(h) for the clean rows; for the pooled
    # rows the perturbed activation, recomputed with the current weights, reached the head
    # through the sum, clamped into the ReLU's range.
    with torch.no_grad():
        h = module.features(module.inputs[-1])
        inner = module.block.inner(h)
    read = heads[-1]
    assert torch.allclose(read[:32], (h + inner)[:32], atol=1e-5)
    assert not torch.allclose(read[32:], (h + inner)[32:], atol=1e-3)
    assert (read[32:] - h[32:]).min() >= 0


def test_hidden_pool_rows_train_only_the_layers_above() -> None:
    """Szegedy et al. 2013, Section 4.2: a layer's adversarial examples train the layers above
    it. The perturbed rows' activation is detached: their loss reaches no weight below."""
    module = ImageClassifier(
        model={"family": "fc", "hidden": [8, 6], "weight_decay": [0.0]},
        optim={"name": "adam"},
        input_shape=[1, 4, 4],
        num_classes=3,
    )
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([2, 0, 1, 1, 0])
    delta = torch.rand(3, 6)
    add = functools.partial(
        _add_perturbation, rows=slice(2, 5), delta=delta, bounds=(0.0, 1.0), total=5, layer="fc2"
    )
    with perturb_layer(module, "fc2", add):
        logits = module(x)
    F.cross_entropy(logits[2:], y[2:]).backward()  # the pooled rows' loss only
    stages = module.network.stages
    assert stages["logits"][0].weight.grad.abs().sum() > 0
    assert stages["fc1"][1].weight.grad is None or not stages["fc1"][1].weight.grad.any()
    with torch.no_grad():
        clean = module.network.activations(x, ["fc2"])["fc2"]
        patched = module.network.forward_from("fc2", (clean[2:] + delta).clamp(0, 1))
        torch.testing.assert_close(logits[2:], patched)
        torch.testing.assert_close(logits[:2], module(x[:2]))
        # A call with another batch size is left alone.
        with perturb_layer(module, "fc2", add):
            torch.testing.assert_close(module(x[:4]), module.network(x[:4]))


def test_refresh_every_n_optimizer_steps_under_gradient_accumulation(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(
        pool_size=64, refresh_fraction=0.25, refresh_every_n_steps=2, generator=FGSM,
        val_attack=None,
    )  # fmt: skip
    fit_trainer(tmp_path, [backfeed], accumulate_grad_batches=2, limit_train_batches=8).fit(
        SmallCNN(), loader(images(256))
    )
    assert backfeed.refreshes == 3  # optimizer steps 0, 1 and 3 of 4


def test_validate_only_run_measures_the_adversarial_error(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(pool_size=64, generator=FGSM, val_attack=FGSM, val_subset=50)
    trainer = fit_trainer(tmp_path, [backfeed])
    trainer.validate(SmallCNN(), loader(images(64)))
    assert 0 <= float(trainer.callback_metrics["val/adv_error"]) <= 1
    # Test and predict runs go through the callback's hooks too.
    fit_trainer(tmp_path, [backfeed]).test(SmallCNN(), loader(images(64)), verbose=False)
    fit_trainer(tmp_path, [backfeed]).predict(SmallCNN(), loader(images(64)))


def test_an_empty_pool_logs_no_figures_measured_on_nothing(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(
        pool_size=64,
        refresh_fraction=0.25,
        refresh_every_n_steps=100,  # one refresh (the first step), for the input pool
        generator=FGSM,
        layers=["input", "features"],
        alternate=True,
        val_attack=None,
    )
    trainer = fit_trainer(tmp_path, [backfeed])
    trainer.fit(SkipNet(), loader(images()))
    assert backfeed.pools["features"].size == 0
    metrics = trainer.callback_metrics
    assert "backfeed/input/pool_error" in metrics
    assert "backfeed/features/pool_error" not in metrics
    assert "backfeed/features/age_steps" not in metrics
    assert metrics["backfeed/features/pool_size"] == 0


def test_checkpoint_holds_only_the_stored_examples(tmp_path: Path) -> None:
    pool = AdversarialPool(10_000)
    rng = torch.Generator().manual_seed(0)
    pool.add(torch.rand(200, 1, 28, 28), torch.zeros(200, dtype=torch.long), step=0, generator=rng)
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)
    # 200 examples of 784 floats: 627 kB; the whole buffer would be 31 MB.
    assert len(buffer.getvalue()) < 200 * 784 * 4 * 1.1


def test_checkpoint_of_a_run_is_small(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(
        pool_size=100, refresh_fraction=0.1, generator=FGSM, val_attack=None
    )
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit_trainer(tmp_path, [backfeed, checkpoints], enable_checkpointing=True).fit(
        SmallCNN(), loader(images())
    )
    content = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in content["callbacks"].items() if "AdversarialBackfeed" in k]
    saved = state["ranks"][0]["pools"]["input"]
    assert saved["examples"].untyped_storage().nbytes() == saved["examples"].nbytes


@pytest.mark.parametrize("precision", ["32", "64-true", "16-mixed", "bf16-mixed", "bf16-true"])
def test_precisions(tmp_path: Path, precision: str) -> None:
    module = SmallCNN()
    backfeed = AdversarialBackfeed(
        pool_size=64,
        refresh_fraction=0.5,
        generator=FGSM,
        layers=["input", "features"],
        val_attack=FGSM,
        val_subset=32,
    )
    trainer = fit_trainer(tmp_path, [backfeed], precision=precision, limit_train_batches=2)
    trainer.fit(module, loader(images()), loader(images(64, seed=1)))
    batch_dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}.get(
        precision, torch.float32
    )
    for pool in backfeed.pools.values():
        assert pool.size > 0 and pool.examples.dtype == batch_dtype
    assert module.sizes == [64, 64]  # 32 clean, 16 from each pool
    assert torch.isfinite(trainer.callback_metrics["val/adv_error"])


class IteratorModule(SmallCNN):
    def training_step(self, dataloader_iter) -> Tensor:  # type: ignore[override]
        x, y = next(dataloader_iter)[0]
        return F.cross_entropy(self(x), y)


def test_a_batch_that_bypasses_the_transfer_hook_is_refused(tmp_path: Path) -> None:
    backfeed = AdversarialBackfeed(pool_size=64, generator=FGSM, val_attack=None)
    with pytest.raises(ValueError, match="did not pass through on_after_batch_transfer"):
        fit_trainer(tmp_path, [backfeed]).fit(IteratorModule(), loader(images()))


class Int32Module(SmallCNN):
    """int32 labels in its batches (cross_entropy itself wants int64)."""

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        assert batch[1].dtype == torch.int32
        return super().training_step((batch[0], batch[1].long()), batch_idx)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        super().validation_step((batch[0], batch[1].long()), batch_idx)


def test_int32_labels_train_pool_and_validate(tmp_path: Path) -> None:
    """Labels of another integer dtype than int64 (int32 from a user's data set) go into the
    pools (stored as int64) and come back into the batch in the batch's own dtype."""
    data, val = images(64), images(32, seed=1)
    module = Int32Module()
    backfeed = AdversarialBackfeed(
        pool_size=32, refresh_fraction=0.5, generator=FGSM, layers=["input", "features"],
        val_attack=FGSM, val_subset=16,
    )  # fmt: skip
    trainer = fit_trainer(tmp_path, [backfeed], limit_train_batches=2)
    as_int32 = [TensorDataset(d.tensors[0], d.tensors[1].int()) for d in (data, val)]
    trainer.fit(module, loader(as_int32[0]), loader(as_int32[1]))
    for pool in backfeed.pools.values():
        assert pool.size > 0 and pool.labels.dtype == torch.long
    assert module.sizes == [64, 64]  # 32 clean, 16 from each pool
    assert torch.isfinite(trainer.callback_metrics["val/adv_error"])


class Stream(torch.utils.data.IterableDataset):
    """An iterable data set: its size is not known."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.data)


def test_pool_larger_than_plain_loaders_data_set_is_refused_before_training(
    tmp_path: Path,
) -> None:
    module = SmallCNN()
    backfeed = AdversarialBackfeed(pool_size=1000, generator=FGSM)
    with pytest.raises(ValueError, match=r"pool_size=1000 is larger than the training set \(64"):
        fit_trainer(tmp_path, [backfeed]).fit(module, loader(images(64)))
    assert module.sizes == []
    # The size of an iterable data set is not known: nothing to say.
    backfeed = AdversarialBackfeed(pool_size=1000, generator=FGSM)
    fit_trainer(tmp_path, [backfeed], limit_train_batches=1).fit(module, loader(Stream(images(64))))
    assert len(module.sizes) == 1  # it trained


class ReluBlock(nn.Module):
    """A user's block ending in F.relu: its range (0, inf) is not known to the attacks."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, h: Tensor) -> Tensor:
        return F.relu(self.linear(h) + h)


class ReluBlockNet(SkipNet):
    def __init__(self) -> None:
        super().__init__()
        self.block = ReluBlock()  # type: ignore[assignment]


@pytest.mark.parametrize("declared", [False, True])
def test_a_hidden_pool_at_a_layer_of_unknown_range_warns_once(tmp_path: Path, declared) -> None:
    module = ReluBlockNet()
    if declared:
        module.block.output_range = (0.0, float("inf"))
    backfeed = AdversarialBackfeed(pool_size=32, generator=FGSM, layers=["block", "features.1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_trainer(tmp_path, [backfeed], limit_train_batches=1).fit(module, loader(images(64)))
    said = [str(w.message) for w in caught if "output range" in str(w.message)]
    if declared:
        assert said == []
    else:  # the Linear ('features.1') is unbounded indeed: nothing said of it
        (message,) = said
        assert "'block' (ReluBlock)" in message and "output_range" in message
        assert "register_layer_range" in message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"generator": {"name": "fgsm", "epsilonn": 0.1}},
            r"AdversarialBackfeed: generator\.epsilonn: unknown key for attack 'fgsm'",
        ),
        ({"val_attack": {"name": "fgsn"}}, r"AdversarialBackfeed: val_attack\.name 'fgsn'"),
        (
            {"generator": {"name": "pgd", "steps": 0}},
            r"AdversarialBackfeed: generator\.steps=0: must be at least 1",
        ),
    ],
)
def test_attack_config_typos_fail_at_construction(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        AdversarialBackfeed(pool_size=32, **settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"generator": "fgsm"}, r"AdversarialBackfeed: generator='fgsm': expected an attack"),
        ({"layers": "input"}, r"AdversarialBackfeed: layers='input': expected a list of layer"),
    ],
)
def test_arguments_of_the_wrong_kind_are_named(settings, message) -> None:
    with pytest.raises(TypeError, match=message):
        AdversarialBackfeed(pool_size=32, **settings)
