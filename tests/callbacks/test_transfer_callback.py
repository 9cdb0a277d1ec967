"""TransferRobustness in short Trainer runs on a little real MNIST: the logged errors equal an
independent computation, the schedule, an empty zoo costs nothing, W&B gets the table and the
images, the state survives weights-only checkpoints, the config wiring, and DDP on 2 CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

import intriguing.callbacks.transfer as transfer_module
from intriguing.analysis.transfer import adversarial_set, error_rate
from intriguing.callbacks import TransferRobustness, transfer_callbacks
from intriguing.cli.main import main
from intriguing.configs import ConfigError, compose
from intriguing.datamodules import build_datamodule
from intriguing.trainers import ImageClassifier, load_classifier

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
FGSM = {"name": "fgsm", "epsilon": 0.1}


@pytest.fixture(scope="module")
def zoo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A softmax regression on 1,024 MNIST images, trained by `intriguing train`."""
    out = tmp_path_factory.mktemp("zoo")
    words = ["trainer.max_epochs=1", "data.train_subset=1024", "data.test_subset=100"]
    words += ["logger=none", "trainer.enable_progress_bar=false", f"data.data_dir={REPO_DATA}"]
    assert main(["train", "experiment=fc10-1e-4", f"output_dir={out}", *words]) == 0
    (summary,) = out.glob("fc10-1e-4/*/summary.json")
    return Path(json.loads(summary.read_text())["checkpoint"])


def _datamodule(val_size: int = 200) -> pl.LightningDataModule:
    return build_datamodule(
        {
            "name": "mnist",
            "data_dir": str(REPO_DATA),
            "train_subset": 512,
            "val_size": val_size,
            "test_subset": 100,
            "batch_size": 64,
        }
    )


def _model() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(
        model={"family": "fc", "hidden": [32], "weight_decay": [0.0]},
        optim={"name": "adam", "lr": 1e-3, "schedule": "none"},
        input_shape=(1, 28, 28),
        num_classes=10,
    )


def _trainer(tmp_path: Path, callback: TransferRobustness, epochs: int, **kwargs) -> pl.Trainer:
    kwargs.setdefault("logger", False)
    others = kwargs.pop("callbacks", [])
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[callback, *others],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in others),
        inference_mode=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_logged_errors_equal_an_independent_computation(zoo_checkpoint, tmp_path: Path):
    callback = TransferRobustness({"soft": zoo_checkpoint}, subset=40, attack=FGSM)
    model, datamodule = _model(), _datamodule()
    trainer = _trainer(tmp_path, callback, epochs=2)
    trainer.fit(model, datamodule=datamodule)
    assert [entry["epoch"] for entry in callback.history] == [0, 1]

    images, labels = (t[:40] for t in datamodule.tensors("val"))  # auto: the validation split
    zoo = load_classifier(zoo_checkpoint).network
    own = adversarial_set(model.network, images, labels, FGSM, name="model")
    theirs = adversarial_set(zoo, images, labels, FGSM, name="soft")
    expected = {
        "transfer/model->model": own.success_rate,
        "transfer/model->soft": error_rate(zoo, own.perturbed, labels),
        "transfer/soft->model": error_rate(model.network, theirs.perturbed, labels),
        "transfer/distortion": own.mean_distortion,
    }
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-6), key
    assert logged["transfer/to_zoo"] == logged["transfer/model->soft"]
    assert logged["transfer/from_zoo"] == logged["transfer/soft->model"]
    # The table: rows are sources, columns targets; zoo-on-zoo cells are fixed.
    table = callback.last
    assert table is not None and table.targets == ["model", "soft"]
    assert [row.name for row in table.rows] == ["model", "soft"]
    assert table.error("soft", "soft") == pytest.approx(theirs.success_rate)
    assert 0 < table.error("model", "soft") < 1


def test_measures_every_n_epochs_only(zoo_checkpoint, tmp_path: Path):
    callback = TransferRobustness([zoo_checkpoint], subset=16, attack=FGSM, every_n_epochs=2)
    trainer = _trainer(tmp_path, callback, epochs=3)
    trainer.fit(_model(), datamodule=_datamodule())
    assert [entry["epoch"] for entry in callback.history] == [1]
    assert "transfer/model->fc10-1e-4" in callback.history[0]  # named after its experiment


def test_an_empty_zoo_costs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_attack(*args, **kwargs):
        raise AssertionError("an attack ran with an empty zoo")

    monkeypatch.setattr(transfer_module, "adversarial_set", no_attack)
    callback = TransferRobustness([], subset=16, attack=FGSM)
    trainer = _trainer(tmp_path, callback, epochs=1)
    trainer.fit(_model(), datamodule=_datamodule())
    assert callback.history == []
    assert not any(key.startswith("transfer/") for key in trainer.callback_metrics)


def test_wandb_gets_the_table_the_heatmap_and_the_example_grid(zoo_checkpoint, tmp_path: Path):
    import wandb

    logger = WandbLogger(project="intriguing", save_dir=str(tmp_path), mode="offline")
    callback = TransferRobustness([zoo_checkpoint], subset=16, attack=FGSM, grid_examples=3)
    trainer = _trainer(tmp_path, callback, epochs=1, logger=logger)
    trainer.fit(_model(), datamodule=_datamodule(val_size=100))
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    wandb_cli = Path(sys.executable).with_name("wandb")
    command = [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir)]
    summary = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    summary = summary["summary"]
    assert summary["transfer/table"]["_type"] == "table-file"
    assert summary["transfer/table"]["nrows"] == 2
    for key in ("transfer/heatmap", "transfer/examples"):
        assert summary[key]["_type"] == "images/separated" and summary[key]["count"] == 1
    assert "transfer/model->fc10-1e-4" in summary


def test_state_is_saved_in_weights_only_checkpoints_and_restored(zoo_checkpoint, tmp_path: Path):
    callback = TransferRobustness([zoo_checkpoint], subset=8, attack=FGSM)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    trainer = _trainer(tmp_path, callback, epochs=1, callbacks=[saver])
    trainer.fit(_model(), datamodule=_datamodule(val_size=50))
    content = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in content["callbacks"].items() if k.startswith("TransferRobustness")]
    assert state["history"] == callback.history and len(state["history"]) == 1
    restored = TransferRobustness([zoo_checkpoint])
    restored.load_state_dict(state)
    assert restored.history == callback.history


def test_split_auto_uses_the_test_set_without_a_validation_hold_out(zoo_checkpoint, tmp_path: Path):
    callback = TransferRobustness([zoo_checkpoint], subset=12, attack=FGSM)
    datamodule = _datamodule(val_size=0)
    trainer = _trainer(tmp_path, callback, epochs=1, limit_val_batches=0)
    trainer.fit(_model(), datamodule=datamodule)
    assert torch.equal(callback._labels, datamodule.tensors("test")[1][:12])
    assert len(callback.history) == 1


def test_config_builds_the_callback(zoo_checkpoint):
    assert transfer_callbacks(compose(["experiment=fc100-100-10"])) == []
    config = compose(
        [
            "experiment=fc100-100-10",
            "transfer.enabled=true",
            f"transfer.zoo=[{zoo_checkpoint}]",
            "transfer.attack.name=fgsm",
            "transfer.subset=64",
            "transfer.every_n_epochs=3",
        ]
    )
    (callback,) = transfer_callbacks(config)
    assert isinstance(callback, TransferRobustness)
    assert callback.zoo == {"fc10-1e-4": zoo_checkpoint}
    assert callback.attack["name"] == "fgsm" and callback.attack["epsilon"] == 0.1
    assert (callback.subset, callback.every_n_epochs) == (64, 3)
    with pytest.raises(ConfigError, match="layer"):
        transfer_callbacks(compose([*config_words(zoo_checkpoint), "transfer.attack.layer=fc1"]))
    with pytest.raises(ConfigError, match=r"transfer\.subset=0"):
        transfer_callbacks(compose([*config_words(zoo_checkpoint), "transfer.subset=0"]))
    # Used directly, the callback raises ValueError/TypeError (not the config layer's error).
    with pytest.raises(ValueError, match="subset") as raised:
        TransferRobustness([zoo_checkpoint], subset=0)
    assert not isinstance(raised.value, ConfigError)


def config_words(checkpoint: Path) -> list[str]:
    return ["experiment=fc100-100-10", "transfer.enabled=true", f"transfer.zoo=[{checkpoint}]"]


def test_a_zoo_checkpoint_for_other_inputs_is_refused_by_name(
    checkpoint_for_other_inputs: Path, tmp_path: Path
):
    path = checkpoint_for_other_inputs
    trainer = _trainer(tmp_path, TransferRobustness([path], subset=8, attack=FGSM), epochs=1)
    with pytest.raises(Exception, match=r"small\.ckpt.*\(1, 12, 12\)"):
        trainer.fit(_model(), datamodule=_datamodule(val_size=50))


@pytest.mark.ddp
def test_ddp_on_two_cpu_processes_matches_a_single_process_computation(
    zoo_checkpoint, tmp_path: Path
):
    out = tmp_path / "out"
    command = [
        str(Path(sys.executable).with_name("intriguing")),
        "train",
        "experiment=fc100-100-10",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.train_subset=256",
        "data.val_size=101",
        "data.test_subset=64",
        "transfer.enabled=true",
        f"transfer.zoo=[{zoo_checkpoint}]",
        "transfer.attack.name=fgsm",
        "transfer.subset=41",  # odd: the two processes attack 21 and 20 examples
        "logger=csv",
        f"output_dir={out}",
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_path,) = out.glob("fc100-100-10/*/summary.json")
    summary = json.loads(summary_path.read_text())
    model = load_classifier(summary["checkpoint"]).network
    datamodule = build_datamodule({"name": "mnist", "data_dir": str(REPO_DATA), "val_size": 101})
    images, labels = (t[:41] for t in datamodule.tensors("val"))
    zoo = load_classifier(zoo_checkpoint).network
    own = adversarial_set(model, images, labels, FGSM, name="model")
    theirs = adversarial_set(zoo, images, labels, FGSM, name="zoo")
    metrics = summary["metrics"]
    # Reduced over both processes by torchmetrics: the counts of all 41 examples.
    assert metrics["transfer/model->model"] == pytest.approx(own.success_rate, abs=1e-6)
    assert metrics["transfer/model->fc10-1e-4"] == pytest.approx(
        error_rate(zoo, own.perturbed, labels), abs=1e-6
    )
    assert metrics["transfer/fc10-1e-4->model"] == pytest.approx(
        error_rate(model, theirs.perturbed, labels), abs=1e-6
    )
    assert metrics["transfer/distortion"] == pytest.approx(own.mean_distortion, abs=1e-5)
