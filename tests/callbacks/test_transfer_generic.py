"""TransferRobustness with models that know nothing of this project: a from-scratch
LightningModule, (x, y) and dict batches from plain DataLoaders, a zoo of a plain nn.Module
and a checkpoint of another LightningModule class; in fit, validate, test and predict."""

from __future__ import annotations

import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from intriguing.analysis.transfer import PixelInput, adversarial_set, error_rate
from intriguing.callbacks import TransferRobustness
from intriguing.trainers.checkpoints import CheckpointError, load_lightning_module

FGSM = {"name": "fgsm", "epsilon": 0.1}
SHAPE = (1, 8, 8)


class SmallCNN(pl.LightningModule):
    """A user's classifier: no `network`, no project data module."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def _split(self, batch):  # tuples (x, y) or dicts {"image", "label"}
        return (batch["image"], batch["label"]) if isinstance(batch, dict) else batch[:2]

    def training_step(self, batch, index):
        x, y = self._split(batch)
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, index):
        x, y = self._split(batch)
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def test_step(self, batch, index):
        self.validation_step(batch, index)

    def predict_step(self, batch, index):
        return self(self._split(batch)[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


# Another LightningModule class, in a package of the user's own (written to a temporary
# folder): the zoo names it by "package.module:ClassName".
USER_PACKAGE = textwrap.dedent(
    """
    import lightning.pytorch as pl
    from torch import nn

    class Mlp(pl.LightningModule):
        def __init__(self, hidden: int = 16, classes: int = 4) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                     nn.Linear(hidden, classes))

        def forward(self, x):
            return self.net(x)
    """
)


def _data(count: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images in [0, 1] whose label is the brightest quadrant: learnable quickly."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, *SHAPE, generator=generator)
    corners = [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8))]
    corners += [(slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))]
    quadrants = torch.stack([x[:, 0, r, c].mean((1, 2)) for r, c in corners], dim=1)
    return x, quadrants.argmax(1)


class DictDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[index], "label": self.y[index]}


@pytest.fixture(scope="module")
def user_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(target, checkpoint) of the user's Mlp, trained a little by a plain Trainer."""
    root = tmp_path_factory.mktemp("userpkg")
    (root / "userzoo").mkdir()
    (root / "userzoo" / "__init__.py").write_text("")
    (root / "userzoo" / "nets.py").write_text(USER_PACKAGE)
    import sys

    sys.path.insert(0, str(root))
    from userzoo.nets import Mlp  # type: ignore[import-not-found]

    torch.manual_seed(1)
    model = Mlp(hidden=16)
    path = root / "mlp.ckpt"
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return "userzoo.nets:Mlp", path


def _plain_module() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def _trainer(tmp_path: Path, callback: TransferRobustness, epochs: int = 2) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=True,  # Lightning's default: the callback must still attack
        default_root_dir=tmp_path,
    )


def _expected(model: nn.Module, zoo: dict[str, nn.Module], x, y) -> dict[str, float]:
    """The logged figures, computed independently from the same examples."""
    own = adversarial_set(model, x, y, FGSM, name="model")
    expected = {"transfer/model->model": own.success_rate}
    for name, other in zoo.items():
        theirs = adversarial_set(other, x, y, FGSM, name=name)
        expected[f"transfer/model->{name}"] = error_rate(other, own.perturbed, y)
        expected[f"transfer/{name}->model"] = error_rate(model, theirs.perturbed, y)
    expected["transfer/distortion"] = own.mean_distortion
    return expected


def test_any_lightning_module_in_fit_and_validate(user_checkpoint, tmp_path: Path) -> None:
    target, checkpoint = user_checkpoint
    plain = _plain_module()
    zoo = {"plain": plain, "mlp": {"target": target, "checkpoint": checkpoint}}
    callback = TransferRobustness(zoo, subset=40, attack=FGSM, grid_examples=0)
    x, y = _data()
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=7)  # 40 = 5 whole batches + 5
    torch.manual_seed(0)
    model = SmallCNN()
    trainer = _trainer(tmp_path, callback)
    trainer.fit(model, train, val)
    assert [entry["epoch"] for entry in callback.history] == [0, 1]
    assert not plain.training  # zoo modules are put in eval mode

    mlp = load_lightning_module(target, checkpoint)
    models = {"plain": plain, "mlp": mlp}
    expected = _expected(model, models, x[64:104], y[64:104])
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-6), key
    assert callback.last is not None and callback.last.targets == ["model", "plain", "mlp"]
    assert model.training  # the model in training is left in training mode

    # trainer.validate: measured once, at the end of the validation epoch, and returned.
    validator = _trainer(tmp_path, callback)
    (results,) = validator.validate(model, val, verbose=False)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key
    assert len(callback.history) == 2  # the history is training's

    # trainer.test: by default nothing (a test after fit keeps the fit's figures); asked for,
    # measured on the given examples. trainer.predict: no crash, nothing measured.
    (tested,) = _trainer(tmp_path, callback).test(model, val, verbose=False)
    assert not any(key.startswith("transfer/") for key in tested)
    asked = TransferRobustness(models, stages=["test"], subset=8, examples=(x, y), attack=FGSM)
    (tested,) = _trainer(tmp_path, asked).test(model, val, verbose=False)
    assert tested["transfer/model->mlp"] == pytest.approx(
        _expected(model, models, x[:8], y[:8])["transfer/model->mlp"], abs=1e-6
    )
    predicted = _trainer(tmp_path, callback).predict(model, val)
    assert predicted is not None and len(predicted) == len(val)


def test_dict_batches_with_named_keys(tmp_path: Path) -> None:
    x, y = _data()
    val = DataLoader(DictDataset(x[64:], y[64:]), batch_size=8)
    plain = _plain_module()
    callback = TransferRobustness(
        {"plain": plain}, subset=12, attack=FGSM, input_key="image", target_key="label"
    )
    torch.manual_seed(0)
    model = SmallCNN()
    (results,) = _trainer(tmp_path, callback).validate(model, val, verbose=False)
    expected = _expected(model, {"plain": plain}, x[64:76], y[64:76])
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key
    assert torch.equal(callback._labels, y[64:76])

    # The default keys (0, 1) on a dict batch: refused by name, with the batch's keys.
    wrong = TransferRobustness({"plain": plain}, subset=12, attack=FGSM)
    with pytest.raises(ValueError, match=r"input_key=0.*\['image', 'label'\]"):
        _trainer(tmp_path, wrong).validate(model, val, verbose=False)


def test_a_data_set_as_examples_and_data_normalised_outside_the_model(tmp_path: Path) -> None:
    x, y = _data()
    mean, std = 0.5, 0.25
    normalised = (x - mean) / std
    plain = _plain_module()
    callback = TransferRobustness(
        {"plain": plain},
        subset=10,
        attack=FGSM,
        examples=TensorDataset(normalised[64:], y[64:]),
        mean=mean,
        std=std,
    )
    torch.manual_seed(0)
    model = SmallCNN()
    train = DataLoader(TensorDataset(normalised[:64], y[:64]), batch_size=16)
    trainer = _trainer(tmp_path, callback, epochs=1)
    trainer.fit(model, train)  # no validation loader: the given examples are used
    # The examples are attacked in pixel units, every model getting them normalised.
    assert torch.allclose(callback._images, x[64:74], atol=1e-6)
    wrapped = {"plain": PixelInput(plain, [mean], [std])}
    expected = _expected(PixelInput(model, [mean], [std]), wrapped, x[64:74], y[64:74])
    for key, value in expected.items():
        assert float(trainer.callback_metrics[key]) == pytest.approx(value, abs=1e-6), key


def test_no_examples_anywhere_is_refused_by_name(tmp_path: Path) -> None:
    x, y = _data()
    callback = TransferRobustness({"plain": _plain_module()}, subset=8, attack=FGSM)
    with pytest.raises(ValueError, match="examples=None: the trainer has no validation loader"):
        _trainer(tmp_path, callback, epochs=1).fit(SmallCNN(), DataLoader(TensorDataset(x, y)))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"subset": 0}, ValueError, "subset=0"),
        ({"every_n_epochs": 0}, ValueError, "every_n_epochs=0"),
        ({"stages": ["fit", "predict"]}, ValueError, "stages="),
        ({"grid_examples": -1}, ValueError, "grid_examples=-1"),
        ({"subset": 2.5}, TypeError, "subset=2.5"),
        ({"zoo": {"model": nn.Linear(2, 2)}}, ValueError, "'model'"),
        ({"zoo": [nn.Linear(2, 2)]}, TypeError, r"zoo\[0\]"),
        ({"zoo": {"a": 3}}, TypeError, r"zoo\['a'\]"),
        ({"zoo": {"a": {"path": "x.ckpt"}}}, ValueError, r"zoo\['a'\]"),
        ({"examples": (torch.zeros(3, 2), torch.zeros(2))}, ValueError, "examples"),
        ({"examples": "data"}, TypeError, "examples"),
        ({"mean": 0.5}, ValueError, "mean=0.5, std=None"),
        ({"mean": 0.5, "std": 0.0}, ValueError, "std="),
        ({"input_key": 1.5}, TypeError, "input_key"),
        ({"attack": {"name": "fgsm", "layer": "fc1"}}, ValueError, "attack.layer"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, error, message) -> None:
    arguments = {"zoo": {"plain": _plain_module()}, **kwargs}
    with pytest.raises(error, match=message):
        TransferRobustness(arguments.pop("zoo"), **arguments)


def test_lightning_module_checkpoints_load_weights_only(user_checkpoint, tmp_path: Path) -> None:
    target, checkpoint = user_checkpoint
    model = load_lightning_module(target, checkpoint)
    assert not model.training and model.hparams.hidden == 16
    with pytest.raises(CheckpointError, match="not a LightningModule class"):
        load_lightning_module("torch.nn:Linear", checkpoint)
    with pytest.raises(CheckpointError, match="cannot import"):
        load_lightning_module("no_such_package.nets:Mlp", checkpoint)
    with pytest.raises(CheckpointError, match="no such file"):
        load_lightning_module(target, tmp_path / "missing.ckpt")


@pytest.mark.parametrize("bf16_examples", [False, True])
def test_bf16_true_model_and_float32_zoo_take_each_others_examples(
    tmp_path: Path, bf16_examples: bool
) -> None:
    """precision="bf16-true" leaves the module in bfloat16: float32 validation examples go
    into it, its bfloat16 examples into the float32 zoo model, each cast to the model's own
    dtype (and examples given in bfloat16 reach the float32 zoo likewise)."""
    x, y = _data(64)
    given = {"examples": (x[48:].bfloat16(), y[48:])} if bf16_examples else {"subset": 16}
    callback = TransferRobustness({"plain": _plain_module()}, attack=FGSM, grid_examples=0, **given)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", precision="bf16-true", callbacks=[callback],
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    trainer.fit(SmallCNN(), train, DataLoader(TensorDataset(x[32:48], y[32:48]), batch_size=8))
    metrics = trainer.callback_metrics
    for key in ("transfer/model->plain", "transfer/plain->model", "transfer/distortion"):
        assert torch.isfinite(metrics[key]), key
    assert next(callback._models["plain"].parameters()).dtype == torch.float32


def test_attack_typos_fail_at_construction_and_a_zoo_model_that_cannot_take_the_examples_is_named(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"attack\.epsilonn: unknown key"):
        TransferRobustness({"plain": _plain_module()}, attack={"name": "fgsm", "epsilonn": 0.1})
    with pytest.raises(ValueError, match=r"attack\.name 'fgsn'"):
        TransferRobustness({"plain": _plain_module()}, attack={"name": "fgsn"})
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(100, 4))  # takes 100 inputs, not 64
    callback = TransferRobustness({"wrong": wrong}, subset=8, attack=FGSM, grid_examples=0)
    x, y = _data(16)
    with pytest.raises(ValueError, match=r"zoo\['wrong'\] cannot take the examples, inputs \(1, 1"):
        _trainer(tmp_path, callback).validate(SmallCNN(), DataLoader(TensorDataset(x, y)))
