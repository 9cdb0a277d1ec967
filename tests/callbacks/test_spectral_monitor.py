"""SpectralMonitor in short CPU Trainer runs on a tiny synthetic data set."""

from __future__ import annotations

import math
from pathlib import Path

import lightning
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader, TensorDataset

from intriguing.analysis.spectral import LipschitzBoundError, module_bounds, network_bounds
from intriguing.callbacks import SpectralMonitor
from intriguing.trainers import ImageClassifier

MODEL = {
    "family": "conv",
    "conv": {"channels": [2, 3], "kernel_size": 3, "pool": "max", "fc_hidden": [8]},
    "weight_decay": [0.0],
}
OPTIM = {"name": "adam", "lr": 1e-2, "schedule": "none"}


def tiny_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(48, 1, 8, 8, generator=generator)
    labels = torch.arange(48) % 3
    images[labels == 0, :, :4] += 0.5
    return DataLoader(TensorDataset(images.clamp(0, 1), labels), batch_size=16)


class DictDataset(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.images, self.labels = tiny_loader().dataset.tensors

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def dict_loader() -> DataLoader:
    return DataLoader(DictDataset(), batch_size=16)


def classifier() -> ImageClassifier:
    return ImageClassifier(model=MODEL, optim=OPTIM, input_shape=(1, 8, 8), num_classes=3)


def trainer(tmp_path: Path, epochs: int, monitor: SpectralMonitor, **kwargs) -> pl.Trainer:
    options = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    options.update(kwargs)
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[monitor], **options)


def test_monitor_logs_the_bounds_of_the_trained_network(tmp_path: Path) -> None:
    monitor = SpectralMonitor()
    model = classifier()
    run = trainer(tmp_path, 2, monitor)
    run.fit(model, tiny_loader())
    names = {f"spectral/{name}" for name in model.network.stages} | {"spectral/product"}
    assert names <= set(run.callback_metrics)
    exact = network_bounds(model.network, dense_limit=10_000)  # Gram matrices: exact
    assert float(run.callback_metrics["spectral/product"]) == pytest.approx(exact.product, rel=1e-4)
    assert float(run.callback_metrics["spectral/conv2"]) == pytest.approx(
        exact.stages[1].bound, rel=1e-4
    )
    assert [entry["epoch"] for entry in monitor.history] == [0.0, 1.0]
    assert monitor.history[0]["spectral/product"] != monitor.history[1]["spectral/product"]
    assert set(monitor.vectors) == {"conv1.0", "conv2.0"}


def test_monitor_runs_every_n_epochs(tmp_path: Path) -> None:
    monitor = SpectralMonitor(every_n_epochs=2)
    trainer(tmp_path, 3, monitor).fit(classifier(), tiny_loader())
    assert [entry["epoch"] for entry in monitor.history] == [1.0]
    with pytest.raises(ValueError, match="every_n_epochs"):
        SpectralMonitor(every_n_epochs=0)


def test_monitor_state_rides_in_a_weights_only_checkpoint(tmp_path: Path) -> None:
    monitor = SpectralMonitor()
    run = trainer(tmp_path, 1, monitor)
    run.fit(classifier(), tiny_loader())
    path = tmp_path / "last.ckpt"
    run.save_checkpoint(path)
    content = torch.load(path, weights_only=True)
    state = content["callbacks"][monitor.state_key]
    restored = SpectralMonitor()
    restored.load_state_dict(state)
    assert restored.history == monitor.history
    assert all(torch.equal(restored.vectors[k], monitor.vectors[k]) for k in monitor.vectors)
    # Resuming continues the history.
    resumed = SpectralMonitor()
    trainer(tmp_path, 2, resumed).fit(classifier(), tiny_loader(), ckpt_path=path)
    assert [entry["epoch"] for entry in resumed.history] == [0.0, 1.0]


def test_monitor_logs_a_layer_table_to_wandb(tmp_path: Path, monkeypatch) -> None:
    tables: list[tuple[str, list[str], list[list]]] = []
    monkeypatch.setattr(
        WandbLogger,
        "log_table",
        lambda self, key, columns=None, data=None, **kw: tables.append((key, columns, data)),
    )
    logger = WandbLogger(project="test", save_dir=str(tmp_path), mode="offline")
    monitor = SpectralMonitor()
    trainer(tmp_path, 1, monitor, logger=logger).fit(classifier(), tiny_loader())
    assert len(tables) == 1
    key, columns, data = tables[0]
    assert key == "spectral/layers"
    assert "upper_bound" in columns and "fourier_bound" in columns
    bounds = [row[columns.index("upper_bound")] for row in data]
    assert math.prod(bounds) == pytest.approx(monitor.history[-1]["spectral/product"])
    import wandb

    wandb.finish()


class Normalize(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5]).view(1, 1, 1))
        self.register_buffer("std", torch.tensor([0.25]).view(1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class UserModule(lightning.LightningModule):
    """A LightningModule that knows nothing of this project: a small CNN with batch norm, a
    residual connection and normalisation inside, trained on ``(x, y)`` or dict batches."""

    def __init__(self, batch_key: str | None = None) -> None:
        super().__init__()
        self.batch_key = batch_key
        self.net = torch.nn.Sequential(
            Normalize(),
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
        )
        self.skip = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        h = torch.nn.functional.max_pool2d(h + self.skip(h), 2)
        return self.head(h.flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = (batch[self.batch_key], batch["label"]) if self.batch_key else batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_monitor_logs_the_bounds_of_any_lightning_module(tmp_path: Path) -> None:
    monitor = SpectralMonitor()
    model = UserModule()
    run = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[monitor],
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    run.fit(model, tiny_loader())
    exact = module_bounds(model, (1, 8, 8), dense_limit=10_000)
    logged = {k: float(v) for k, v in run.callback_metrics.items() if k.startswith("spectral/")}
    assert set(logged) == set(exact.summary())
    assert {"spectral/network", "spectral/net.1", "spectral/net.0.truediv"} <= set(logged)
    assert logged["spectral/network"] == pytest.approx(exact.network, rel=1e-4)
    assert logged["spectral/net.0.truediv"] == pytest.approx(4.0)
    # The residual sum adds its branches: not the product of the layers' bounds.
    by_name = {layer.name: layer.bound for layer in exact.layers}
    trunk = math.prod(by_name[f"net.{i}"] for i in (1, 2, 3)) * by_name["net.0.truediv"]
    assert exact.network == pytest.approx(trunk * (1 + by_name["skip"]) * by_name["head"])
    assert [entry["epoch"] for entry in monitor.history] == [0.0, 1.0]
    metrics = (Path(run.logger.log_dir) / "metrics.csv").read_text().splitlines()
    assert "spectral/network" in metrics[0].split(",")


def test_monitor_takes_a_submodule_and_dict_batches(tmp_path: Path) -> None:
    monitor = SpectralMonitor(module="net", input_key="image")
    run = trainer(tmp_path, 1, monitor)
    run.fit(UserModule(batch_key="image"), dict_loader())
    assert set(run.callback_metrics) >= {"spectral/network", "spectral/1", "spectral/0.truediv"}
    assert monitor.last is not None and monitor.last.input_shape == (1, 8, 8)


def test_monitor_errors_name_the_argument_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="module='missing'"):
        trainer(tmp_path, 1, SpectralMonitor(module="missing")).fit(UserModule(), tiny_loader())
    with pytest.raises(ValueError, match="input_key=0"):
        trainer(tmp_path, 1, SpectralMonitor()).fit(UserModule(batch_key="image"), dict_loader())
    with pytest.raises(ValueError, match="input_shape="):
        SpectralMonitor(input_shape=(1, 0, 8))

    class Plain(pl.LightningModule):  # no forward(): which module to bound must be named
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, 3)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0].flatten(1)).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(ValueError, match=r"module=None: Plain defines no forward\(\)"):
        trainer(tmp_path, 1, SpectralMonitor()).fit(Plain(), tiny_loader())
    # Named with its input shape, its one layer is bounded.
    monitor, plain = SpectralMonitor(module="layer", input_shape=(64,)), Plain()
    trainer(tmp_path, 1, monitor).fit(plain, tiny_loader())
    weight_norm = float(torch.linalg.matrix_norm(plain.layer.weight.detach().double(), 2))
    assert monitor.history[0]["spectral/network"] == pytest.approx(weight_norm, rel=1e-9)
    assert monitor.history[0]["spectral/Linear"] == pytest.approx(weight_norm, rel=1e-9)


def test_monitor_refuses_a_layer_without_a_bound_before_the_first_step(tmp_path: Path) -> None:
    class Attention(UserModule):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(3, 1, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = super().forward(x).unsqueeze(1)
            return self.attn(logits, logits, logits)[0].squeeze(1)

    run = trainer(tmp_path, 1, SpectralMonitor())
    with pytest.raises(LipschitzBoundError, match=r"module 'attn' \(MultiheadAttention\)"):
        run.fit(Attention(), tiny_loader())
    assert run.global_step == 0


DDP_SCRIPT = """
import json, sys
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from intriguing.callbacks import SpectralMonitor
from intriguing.trainers import ImageClassifier

model_config, optim_config, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
generator = torch.Generator().manual_seed(0)
images = torch.rand(64, 1, 8, 8, generator=generator)
labels = torch.arange(64) % 3
model = ImageClassifier(
    model=model_config, optim=optim_config, input_shape=(1, 8, 8), num_classes=3
)
monitor = SpectralMonitor()
trainer = pl.Trainer(
    max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", callbacks=[monitor],
    logger=False, enable_checkpointing=False, enable_progress_bar=False,
    enable_model_summary=False, default_root_dir=out,
)
trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=16))
logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("spectral/")}
with open(f"{out}/rank{trainer.global_rank}.json", "w") as handle:
    json.dump({"history": monitor.history, "logged": logged}, handle)
torch.distributed.destroy_process_group()  # gloo threads alive at exit can abort the process
"""


@pytest.mark.ddp
def test_monitor_under_ddp_gives_every_rank_the_same_bounds(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    script = tmp_path / "ddp_monitor.py"
    script.write_text(DDP_SCRIPT)
    command = [sys.executable, str(script), json.dumps(MODEL), json.dumps(OPTIM), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["history"]) == 2
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["logged"] == ranks[1]["logged"]
    logged = ranks[0]["logged"]["spectral/product"]  # logged as float32
    assert logged == pytest.approx(ranks[0]["history"][-1]["spectral/product"], rel=1e-6)
