"""Your own LightningModule, with all three callbacks, in a plain Lightning Trainer.

A torchvision ResNet-18 on CIFAR-10 (3x32x32 images in [0, 1], normalisation inside the
model), written the way anyone would write it: nothing in it knows this project. The script
trains it twice, the same number of epochs each time:

1. plainly (the timing baseline, and the "zoo" the second run's examples transfer to);
2. with :class:`~intriguing.callbacks.AdversarialBackfeed` (FGSM pools at the input and at
   ``layer3``), :class:`~intriguing.callbacks.TransferRobustness` (examples made against the
   model in training, tried on the plain twin, and the other way round) and
   :class:`~intriguing.callbacks.SpectralMonitor` (per-layer Lipschitz bounds).

It prints the wall time per epoch of both runs. Real CIFAR-10 is downloaded by torchvision
into ``--data-dir``; ``--synthetic N`` trains on N random images instead (no download: for a
quick look at the machinery, or a test).

    python examples/resnet18_cifar10.py --epochs 5
    python examples/resnet18_cifar10.py --synthetic 512 --epochs 1 --batch-size 64
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from intriguing.callbacks import AdversarialBackfeed, SpectralMonitor, TransferRobustness

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the data stays in [0, 1] pixels outside the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class CifarResNet(L.LightningModule):
    """A user's module: torchvision's ResNet-18 with a CIFAR stem, cross-entropy, SGD."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/error", (self(x).argmax(dim=1) != y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def callbacks(zoo: dict[str, nn.Module], pool_size: int = 2_000) -> list[L.Callback]:
    """The ten lines this project asks of a user."""
    fgsm = {"name": "fgsm", "epsilon": 8 / 255, "norm": "linf"}
    return [
        AdversarialBackfeed(
            layers=["input", "layer3"], generator=fgsm, pool_size=pool_size, mix_ratio=0.5,
            refresh_fraction=0.05, refresh_every_n_steps=10, val_attack=fgsm, val_subset=256,
        ),
        TransferRobustness(zoo, attack=fgsm, subset=256),
        SpectralMonitor(every_n_epochs=1),
    ]  # fmt: skip


def datasets(data_dir: str, synthetic: int | None, size: int = 32) -> tuple[Dataset, Dataset]:
    """CIFAR-10 train and test sets as [0, 1] tensors, or ``synthetic`` random images of
    ``3 x size x size`` (half for training, half for validation)."""
    if synthetic:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(synthetic, 3, size, size, generator=generator)
        labels = torch.randint(0, 10, (synthetic,), generator=generator)
        half = synthetic // 2
        return TensorDataset(images[half:], labels[half:]), TensorDataset(
            images[:half], labels[:half]
        )
    to_tensor = torchvision.transforms.ToTensor()
    train = torchvision.datasets.CIFAR10(data_dir, train=True, download=True, transform=to_tensor)
    test = torchvision.datasets.CIFAR10(data_dir, train=False, download=True, transform=to_tensor)
    return train, Subset(test, range(1_000))


class EpochTimer(L.Callback):
    """Wall time of each training epoch (seconds)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def fit(
    model: L.LightningModule,
    extra: list[L.Callback],
    loaders: tuple[DataLoader, DataLoader],
    args: argparse.Namespace,
) -> list[float]:
    """Train ``model`` for ``args.epochs`` epochs; the wall time of each epoch."""
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        callbacks=[*extra, timer],
        precision=args.precision,
        logger=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        enable_progress_bar=not args.quiet,
        enable_model_summary=False,
    )
    trainer.fit(model, *loaders)
    return timer.seconds


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data", help="where torchvision keeps CIFAR-10")
    parser.add_argument("--synthetic", type=int, help="train on N random images instead")
    parser.add_argument("--image-size", type=int, default=32, help="of synthetic images (32)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="32-true", help="Lightning precision")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    L.seed_everything(0, verbose=False)
    train, test = datasets(args.data_dir, args.synthetic, args.image_size)
    loaders = (
        DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True),
        DataLoader(test, batch_size=256),
    )
    plain = CifarResNet()
    plain_seconds = fit(plain, [], loaders, args)
    pools = callbacks({"plain": plain}, pool_size=min(2_000, len(train)))
    backfed_seconds = fit(CifarResNet(), pools, loaders, args)
    for name, seconds in (("plain", plain_seconds), ("with callbacks", backfed_seconds)):
        print(f"{name}: {', '.join(f'{s:.1f}' for s in seconds)} s per epoch")
    return {"plain": plain_seconds, "callbacks": backfed_seconds}


if __name__ == "__main__":
    main()
