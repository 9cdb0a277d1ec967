"""ImageClassifier: per-layer weight decay, appended examples in a step, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from intriguing.trainers import CheckpointError, ImageClassifier, load_classifier
from intriguing.trainers.networks import decay_groups

FC = {"family": "fc", "hidden": [8, 6], "weight_decay": [1e-3, 1e-4, 1e-5]}


def make(model: dict | None = None) -> ImageClassifier:
    return ImageClassifier(
        model=model or FC, optim={"name": "adam"}, input_shape=[1, 4, 4], num_classes=3
    )


def attached(module: ImageClassifier) -> ImageClassifier:
    """The module as a Trainer would call training_step: attached, logging a no-op."""
    module.trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_epochs=1)
    module.log = lambda *args, **kwargs: None
    return module


def test_weight_decay_applies_per_layer_to_weights_only() -> None:
    module = make()
    groups = decay_groups(module.network, FC["weight_decay"])
    decayed = [(g["params"][0].shape, g["weight_decay"]) for g in groups if g["weight_decay"]]
    assert decayed == [((8, 16), 1e-3), ((6, 8), 1e-4), ((3, 6), 1e-5)]
    biases = next(g for g in groups if g["weight_decay"] == 0.0)["params"]
    assert all(p.ndim == 1 for p in biases) and len(biases) == 3


def test_weight_decay_list_must_fit_the_network() -> None:
    module = make({"family": "fc", "hidden": [8], "weight_decay": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"3 values.*2 weighted layers"):
        decay_groups(module.network, [1.0, 2.0, 3.0])


class Appended(tuple):
    """A batch with rows appended by a callback, as AdversarialBackfeed makes: it carries
    the count of its leading clean rows."""

    clean_size: int


def test_appended_examples_join_the_loss_and_train_error_counts_the_clean_rows() -> None:
    module = attached(make())
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    x_adv, y_adv = torch.rand(2, 1, 4, 4), torch.tensor([1, 1])
    batch = Appended((torch.cat([x, x_adv]), torch.cat([y, y_adv])))
    batch.clean_size = 4
    loss = module.training_step(batch, 0)
    network = module.network
    expected = F.cross_entropy(network(torch.cat([x, x_adv])), torch.cat([y, y_adv]))
    torch.testing.assert_close(loss, expected)
    wrong = (network(x).argmax(1) != y).sum()
    assert module._epoch_sums[0] == wrong and module._epoch_sums[2] == 4
    # A plain batch: every row is clean.
    torch.testing.assert_close(module.training_step((x, y), 1), F.cross_entropy(network(x), y))
    assert module._epoch_sums[2] == 8


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    module = make()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    loaded = load_classifier(path)
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(loaded(x), module.eval()(x))
    assert not loaded.training

    with pytest.raises(CheckpointError, match="made for inputs of shape"):
        load_classifier(path, input_shape=(1, 28, 28))
    with pytest.raises(CheckpointError, match="no such file"):
        load_classifier(tmp_path / "missing.ckpt")

    class Payload:
        def __reduce__(self):
            return (print, ("this would run code",))

    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, unsafe)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_classifier(unsafe)


def test_sgd_momentum_is_nesterov_unless_turned_off():
    def optimizer(**optim):
        module = ImageClassifier(
            model={"family": "fc", "hidden": [4]},
            optim={"name": "sgd", "lr": 0.1, **optim},
            input_shape=(1, 2, 2),
            num_classes=3,
        )
        configured = module.configure_optimizers()
        return (
            configured if isinstance(configured, torch.optim.Optimizer) else configured["optimizer"]
        )

    assert optimizer(schedule="none").defaults["nesterov"] is True
    assert optimizer(schedule="none", nesterov=False).defaults["nesterov"] is False
