"""ImageClassifier: per-layer weight decay, mixing extra examples into a step, checkpoints."""

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


def test_mixed_examples_join_the_loss_as_a_mean_over_all_examples() -> None:
    module = attached(make())
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    x_adv, y_adv = torch.rand(2, 1, 4, 4), torch.tensor([1, 1])
    h_adv, y_h = torch.rand(3, 6), torch.tensor([2, 0, 1])
    module.mix_in("input", x_adv, y_adv)
    module.mix_in("fc2", h_adv, y_h)
    loss = module.training_step((x, y), 0)
    network = module.network
    expected = (
        F.cross_entropy(network(torch.cat([x, x_adv])), torch.cat([y, y_adv]), reduction="sum")
        + F.cross_entropy(network.forward_from("fc2", h_adv), y_h, reduction="sum")
    ) / 9
    torch.testing.assert_close(loss, expected)
    # Mixed examples are used for one step only.
    torch.testing.assert_close(module.training_step((x, y), 1), F.cross_entropy(network(x), y))


def test_hidden_layer_examples_train_only_the_layers_above() -> None:
    module = attached(make())
    module.mix_in("fc2", torch.rand(3, 6), torch.tensor([2, 0, 1]))
    loss = module.training_step((torch.rand(0, 1, 4, 4), torch.zeros(0, dtype=torch.long)), 0)
    loss.backward()
    stages = module.network.stages
    assert stages["logits"][0].weight.grad is not None
    assert stages["fc1"][1].weight.grad is None or not stages["fc1"][1].weight.grad.any()


def test_mix_in_rejects_unknown_layers() -> None:
    with pytest.raises(ValueError, match="unknown layer 'fc7'"):
        make().mix_in("fc7", torch.zeros(1, 6), torch.zeros(1, dtype=torch.long))


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
