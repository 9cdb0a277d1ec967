"""ImageDataModule on real MNIST (cached in the repo's data/), alone and under Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf

from intriguing.configs.schema import DataConfig
from intriguing.datamodules import DataSourceError, ImageDataModule, build_datamodule

KEY = torch.Generator().manual_seed(0)
PROBE = torch.randn(784, generator=KEY, dtype=torch.float64)


def keys(images: torch.Tensor) -> torch.Tensor:
    """A number per image (a random projection): which examples a batch held, as a multiset."""
    return (images.reshape(len(images), -1).double().cpu() @ PROBE).sort().values


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mnist", (1, 28, 28)), ("fashion_mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))],
)
def test_shape_and_classes_are_known_before_any_data(tmp_path: Path, name: str, shape) -> None:
    module = ImageDataModule(name=name, data_dir=tmp_path / "nothing-here")
    assert module.input_shape == shape and module.num_classes == 10 and module.name == name
    assert not (tmp_path / "nothing-here").exists()


def test_build_datamodule_takes_the_schema_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INTRIGUING_DATA_DIR", str(tmp_path))
    data = OmegaConf.to_container(OmegaConf.structured(DataConfig), resolve=True)
    module = build_datamodule(data)
    assert module.data_dir == tmp_path and module.batch_size == 128 and module.split == "full"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"name": "svhn"},
            r"ImageDataModule: name='svhn': expected one of mnist, fashion_mnist, cifar10",
        ),
        ({"split": "p3"}, r"ImageDataModule: split='p3'"),
        (
            {"val_size": 30_000, "split": "p1"},
            r"ImageDataModule: val_size=30000: must be in \[0, 30000\)",
        ),
        ({"batch_size": 0}, r"ImageDataModule: batch_size=0: must be at least 1"),
        (
            {"train_subset": 55_001},
            r"ImageDataModule: train_subset=55001: must be null or in \[1, 55000\]",
        ),
        ({"test_subset": 0}, r"ImageDataModule: test_subset=0"),
        ({"num_workers": 4}, r"ImageDataModule: num_workers: unknown key"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        build_datamodule({"data_dir": str(tmp_path), **change})
    assert not isinstance(raised.value, DataSourceError)  # a bad value, not a bad data file


def test_real_mnist_splits(real_mnist_dir: Path) -> None:
    module = ImageDataModule(data_dir=real_mnist_dir, val_size=5000)
    module.prepare_data()
    module.setup("fit")
    full_x, full_y = module.tensors("full_train")
    assert full_x.shape == (60_000, 1, 28, 28) and full_x.dtype == torch.float32
    assert full_y.dtype == torch.int64 and full_y[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's order
    assert float(full_x.min()) == 0.0 and float(full_x.max()) == 1.0
    test_x, test_y = module.tensors("test")
    assert test_x.shape == (10_000, 1, 28, 28) and test_y[:3].tolist() == [7, 2, 1]
    train_x, _ = module.tensors("train")
    val_x, _ = module.tensors("val")
    assert len(train_x) == 55_000 and len(val_x) == 5000
    assert not set(module.indices("train").tolist()) & set(module.indices("val").tolist())
    p1, p2 = module.tensors("p1"), module.tensors("p2")
    assert len(p1[0]) == len(p2[0]) == 30_000
    assert torch.allclose(keys(torch.cat([p1[0], p2[0]])), keys(full_x), rtol=0, atol=1e-9)
    assert torch.equal(p1[0], full_x[module.indices("p1")])


def test_real_mnist_p2_with_subsets(real_mnist_dir: Path) -> None:
    module = build_datamodule(
        {"data_dir": str(real_mnist_dir), "split": "p2", "val_size": 1000, "train_subset": 2000,
         "test_subset": 500}
    )  # fmt: skip
    train = module.indices("train")
    assert len(train) == 2000 and set(train.tolist()) <= set(module.indices("p2").tolist())
    assert set(module.indices("val").tolist()) <= set(module.indices("p2").tolist())
    assert len(module.tensors("test")[0]) == 500
    assert torch.equal(train, torch.sort(train).values)  # the first images of the part


class Recorder(pl.LightningModule):
    """Trains a linear model and records, per epoch, which examples each stage saw."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.layer = torch.nn.Linear(int(torch.tensor(input_shape).prod()), 10)
        self.seen: dict[str, dict[int, list[torch.Tensor]]] = {"train": {}, "val": {}, "test": {}}

    def _record(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == self.input_shape
        self.seen[stage].setdefault(self.current_epoch, []).append(x.detach())
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._record("train", batch)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._record("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._record("test", batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_lightning_sees_every_training_example_once_per_epoch(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    module = build_datamodule(
        {"data_dir": str(real_mnist_dir), "val_size": 500, "train_subset": 1000,
         "batch_size": 100, "eval_batch_size": 200, "test_subset": 300}
    )  # fmt: skip
    model = Recorder()
    trainer = _trainer(tmp_path, max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=module)
    trainer.test(model, datamodule=module, verbose=False)
    expected = keys(module.tensors("train")[0])
    orders = []
    for epoch in range(3):
        served = torch.cat(model.seen["train"][epoch])
        assert torch.allclose(keys(served), expected, rtol=0, atol=1e-9)
        orders.append(served)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    val_seen = keys(torch.cat(model.seen["val"][0]))
    assert torch.allclose(val_seen, keys(module.tensors("val")[0]), rtol=0, atol=1e-9)
    test_seen = torch.cat(next(iter(model.seen["test"].values())))
    assert torch.equal(test_seen, module.tensors("test")[0])


def test_no_validation_when_val_size_is_zero(real_mnist_dir: Path, tmp_path: Path) -> None:
    module = build_datamodule(
        {"data_dir": str(real_mnist_dir), "val_size": 0, "train_subset": 200, "batch_size": 100}
    )
    model = Recorder()
    _trainer(tmp_path, max_epochs=1).fit(model, datamodule=module)
    assert model.seen["val"] == {} and len(model.seen["train"][0]) == 2


def test_checkpoints_hold_the_data_settings_as_plain_values(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    from intriguing.configs.schema import DatasetName, TrainSplit

    module = ImageDataModule(
        name=DatasetName.mnist, split=TrainSplit.p1, data_dir=real_mnist_dir, val_size=0,
        train_subset=100, batch_size=50,
    )  # fmt: skip
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(Recorder(), datamodule=module)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    content = torch.load(tmp_path / "last.ckpt", weights_only=True)  # no classes inside
    saved = content["datamodule_hyper_parameters"]
    assert saved["name"] == "mnist" and type(saved["split"]) is str and saved["val_size"] == 0
