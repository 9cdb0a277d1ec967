"""Per-example crop and flip on the device: equal to torchvision's v2 image by image, random
per example, deterministic under a seed, and applied to training batches only."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from intriguing.datamodules import ImageDataModule, build_datamodule
from intriguing.datamodules.augment import CropFlipParams, RandomCropFlip, batch_seed

from .cifar_files import use_cifar
from .test_datamodule import Recorder, _trainer


def reference(images: torch.Tensor, params: CropFlipParams, padding: int) -> torch.Tensor:
    """torchvision's v2 functionals, one image at a time, with the same parameters."""
    out = []
    for image, top, left, flip in zip(images, params.tops, params.lefts, params.flips, strict=True):
        padded = TF.pad(image, [padding]) if padding else image
        cropped = TF.crop(padded, int(top), int(left), image.shape[-2], image.shape[-1])
        out.append(TF.horizontal_flip(cropped) if flip else cropped)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("padding", "flip", "shape", "dtype"),
    [
        (4, True, (3, 32, 32), torch.float32),
        (4, True, (3, 8, 12), torch.uint8),  # not square: rows and columns kept apart
        (0, True, (3, 32, 32), torch.float32),
        (2, False, (1, 28, 28), torch.bfloat16),
    ],
)
def test_equals_torchvision_v2_per_example(padding: int, flip: bool, shape, dtype) -> None:
    augment = RandomCropFlip(padding=padding, horizontal_flip=flip)
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(64, *shape, generator=generator) * 255).to(dtype)
    params = augment.sample(64, device=images.device, generator=generator)
    out = augment.apply(images, params)
    assert out.shape == images.shape and out.dtype == dtype and out.is_contiguous()
    assert torch.equal(out, reference(images, params, padding))
    # ... and the same as v2's random transforms where they draw the same parameters: a
    # crop at the centre offset and no flip is the identity.
    centre = CropFlipParams(
        torch.full((64,), padding), torch.full((64,), padding), torch.zeros(64, dtype=torch.bool)
    )
    assert torch.equal(augment.apply(images, centre), images)


def test_v2_on_a_batch_crops_every_image_alike_which_is_why_this_exists() -> None:
    images = torch.rand(1, 3, 32, 32).expand(16, 3, 32, 32).clone()  # one image, 16 times
    torch.manual_seed(1)
    batch = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])(images)
    assert all(torch.equal(batch[0], b) for b in batch)  # one parameter set per call
    augmented = RandomCropFlip(padding=4, horizontal_flip=True)(
        images, torch.Generator().manual_seed(1)
    )
    assert len({tuple(b.flatten().tolist()) for b in augmented}) > 8


def test_parameters_are_drawn_per_example_over_the_whole_range() -> None:
    augment = RandomCropFlip(padding=4, horizontal_flip=True)
    params = augment.sample(4096, device=torch.device("cpu"), generator=torch.Generator())
    for offsets in (params.tops, params.lefts):
        assert set(offsets.tolist()) == set(range(9))
    assert 0.45 < params.flips.float().mean().item() < 0.55
    assert not torch.equal(params.tops, params.lefts)


def test_deterministic_under_a_seed() -> None:
    augment = RandomCropFlip(padding=4, horizontal_flip=True)
    images = torch.rand(32, 3, 32, 32)
    first = augment(images, torch.Generator().manual_seed(batch_seed(7, 0, 3)))
    again = augment(images, torch.Generator().manual_seed(batch_seed(7, 0, 3)))
    assert torch.equal(first, again)
    seeds = {batch_seed(s, r, b) for s in (0, 7) for r in (0, 1) for b in range(50)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


def test_off_is_the_identity_and_shapes_are_checked() -> None:
    images = torch.rand(4, 3, 8, 8)
    assert RandomCropFlip()(images) is images and not RandomCropFlip().enabled
    augment = RandomCropFlip(padding=1, horizontal_flip=True)
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\)"):
        augment(images[0])
    params = augment.sample(3, device=images.device)
    with pytest.raises(ValueError, match="3 crop offsets and 3 flips for 4 images"):
        augment.apply(images, params)


@pytest.mark.parametrize(
    ("augment", "error", "message"),
    [
        (
            {"random_crop_padding": -1},
            ValueError,
            r"data.augment.random_crop_padding=-1: must be >= 0",
        ),
        (
            {"random_crop_padding": 2.5},
            TypeError,
            r"data.augment.random_crop_padding=2.5: expected an int",
        ),
        ({"vertical_flip": True}, ValueError, r"data.augment.vertical_flip: unknown key"),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, augment: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build_datamodule({"data_dir": str(tmp_path), "augment": augment})


def test_only_training_batches_are_augmented(tmp_path: Path, monkeypatch) -> None:
    use_cifar(monkeypatch, tmp_path, train=48, test=10)
    settings = {"random_crop_padding": 4, "horizontal_flip": True}
    datamodule = ImageDataModule(
        name="cifar10", data_dir=tmp_path, val_size=8, batch_size=16, eval_batch_size=5,
        augment=settings, on_device=False,
    )  # fmt: skip
    assert datamodule.hparams["augment"] == settings
    pl.seed_everything(3, verbose=False)
    model = Recorder(input_shape=(3, 32, 32))
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)

    val_images, _ = datamodule.tensors("val")
    test_images, _ = datamodule.tensors("test")
    # Sanity check and two validations, each over all 8 validation images: unchanged.
    seen = {stage: [x for epoch in sorted(by_epoch) for x in by_epoch[epoch]]
            for stage, by_epoch in model.seen.items()}  # fmt: skip
    assert torch.equal(torch.cat(seen["val"]), val_images.repeat(3, 1, 1, 1))
    assert torch.equal(torch.cat(seen["test"]), test_images)

    # Training batches: the loader's batches, each augmented with the parameters of its own
    # seeded stream (run seed 3, rank 0, batches 0..5 of the fit), equal to v2's per image.
    loader, augment = datamodule.train_dataloader(), RandomCropFlip(padding=4, horizontal_flip=True)
    raw = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        raw += [images for images, _ in loader]
    assert len(raw) == len(seen["train"]) == 6
    for index, (images, trained) in enumerate(zip(raw, seen["train"], strict=True)):
        generator = torch.Generator().manual_seed(batch_seed(3, 0, index))
        params = augment.sample(len(images), device=images.device, generator=generator)
        assert torch.equal(trained, reference(images, params, 4))
        assert not torch.equal(trained, images)


def test_a_resumed_fit_augments_as_the_uninterrupted_one(tmp_path: Path, monkeypatch) -> None:
    use_cifar(monkeypatch, tmp_path, train=40, test=4)

    def fit(max_epochs: int, ckpt_path: str | None = None) -> tuple[Recorder, pl.Trainer]:
        datamodule = ImageDataModule(
            name="cifar10", data_dir=tmp_path, val_size=0, batch_size=16, on_device=False,
            augment={"random_crop_padding": 4, "horizontal_flip": True},
        )  # fmt: skip
        pl.seed_everything(5, verbose=False)
        model = Recorder(input_shape=(3, 32, 32))
        trainer = _trainer(tmp_path, max_epochs=max_epochs, limit_val_batches=0)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return model, trainer

    whole, _ = fit(2)
    _, first = fit(1)
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed, _ = fit(2, ckpt_path=str(tmp_path / "epoch1.ckpt"))
    assert list(resumed.seen["train"]) == [1]
    for a, b in zip(resumed.seen["train"][1], whole.seen["train"][1], strict=True):
        assert torch.equal(a, b)
