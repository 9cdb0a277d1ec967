"""SpectralMonitor in short CPU Trainer runs on a tiny synthetic data set."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader, TensorDataset

from intriguing.analysis.spectral import network_bounds
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


def test_monitor_refuses_a_module_without_a_staged_network(tmp_path: Path) -> None:
    class Plain(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, 3)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0].flatten(1)).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(ValueError, match="StagedNetwork"):
        trainer(tmp_path, 1, SpectralMonitor()).fit(Plain(), tiny_loader())


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
