"""PreAct ResNet (He et al. 2016, "Identity mappings in deep residual networks") as named stages.

The CIFAR variant the adversarial-training literature compares on: PreAct ResNet-18 as in the
code of Wong et al. (2020), "Fast is better than free", and Rice et al. (2020), "Overfitting in
adversarially robust deep learning" (both derived from kuangliu/pytorch-cifar): a 3x3 stem
convolution with 64 channels and no pooling, four stages of two pre-activation basic blocks
each, widths 64-128-256-512, strides 1-2-2-2, then batch norm, ReLU, global average pooling
and a linear layer; no biases in convolutions. 11,172,170 parameters for 10 classes
(kuangliu's original, without the final batch norm, has 1,024 fewer).

Stages (what hidden-layer attacks, pools and analyses address by name)::

    stem    -> (64, 32, 32)    [input standardisation, when given, then conv3x3]
    layer1  -> (64, 32, 32)    layer2 -> (128, 16, 16)
    layer3  -> (256, 8, 8)     layer4 -> (512, 4, 4)
    pool    -> (512,)          [BN, ReLU, global average pooling, flatten; range [0, inf)]
    logits  -> (num_classes,)

Shapes are those of a 3x32x32 input. Inputs stay in [0, 1]: the per-channel standardisation
``(x - mean) / std`` that both papers apply is part of the stem (fixed buffers), so that
attack budgets (e.g. 8/255 in L-inf) are in pixel units and the input box is [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from intriguing.trainers.stages import StagedNetwork

#: CIFAR-10 per-channel mean and standard deviation used by Wong et al. (2020) and Rice et al.
#: (2020) to standardise inputs (RGB order, pixels in [0, 1]).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2471, 0.2435, 0.2616)


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel, with fixed (non-trained) buffers.

    Args:
        mean: one value per channel.
        std: one positive value per channel, as many as ``mean``.

    Raises:
        ValueError: when the lengths differ, are zero, or a ``std`` is not positive.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if not mean or len(mean) != len(std):
            raise ValueError(
                f"input_mean {list(mean)} and input_std {list(std)}: give one value per "
                "channel in each"
            )
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"input_std {list(std)}: every value must be positive")
        shape = (len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).reshape(shape))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).reshape(shape))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, C, H, W) with C the number of channels given; same shape and dtype out."""
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """A pre-activation basic block: ``x + conv(relu(bn(conv(relu(bn(x))))))``.

    When the stride or the width changes, the shortcut is a 1x1 convolution applied to
    ``relu(bn1(x))`` (He et al. 2016, Fig. 4(e) and their released code), as in Wong et al.'s
    and Rice et al.'s ``PreActBlock``.

    Args:
        in_channels: channels of the input.
        channels: channels of the output.
        stride: stride of the first convolution and of the shortcut (1 or 2).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or channels < 1:
            raise ValueError(f"in_channels {in_channels}, channels {channels}: must be >= 1")
        if stride < 1:
            raise ValueError(f"stride {stride}: must be at least 1")
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, in_channels, H, W) -> (N, channels, ceil(H / stride), ceil(W / stride))."""
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


def preact_resnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    blocks: Sequence[int] = (2, 2, 2, 2),
    widths: Sequence[int] = (64, 128, 256, 512),
    input_mean: Sequence[float] | None = (),
    input_std: Sequence[float] | None = (),
) -> StagedNetwork:
    """PreAct ResNet as a :class:`StagedNetwork` (defaults: PreAct ResNet-18 for CIFAR).

    Args:
        input_shape: one example's shape ``(C, H, W)``, e.g. ``(3, 32, 32)``.
        num_classes: number of classes (width of ``logits``).
        blocks: basic blocks per residual stage; ``(2, 2, 2, 2)`` is ResNet-18,
            ``(3, 4, 6, 3)`` ResNet-34.
        widths: channels of each residual stage (the stem has ``widths[0]``); the first stage
            keeps the resolution, each later one halves it (stride 2).
        input_mean, input_std: per-channel standardisation done first in the stem (e.g.
            :data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`); both empty (or None) for none.

    Returns:
        stages ``stem, layer1 .. layerK, pool, logits`` (K = ``len(blocks)``).

    Raises:
        ValueError: for a non-image ``input_shape``, ``blocks`` and ``widths`` of different
            or zero length, a stage without blocks, or a bad standardisation.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape {tuple(input_shape)}: expected (channels, height, width)")
    if not blocks or len(blocks) != len(widths):
        raise ValueError(
            f"model.resnet.blocks {list(blocks)} and widths {list(widths)}: give one value per "
            "residual stage in each"
        )
    if any(int(b) < 1 for b in blocks) or any(int(w) < 1 for w in widths):
        raise ValueError(
            f"model.resnet.blocks {list(blocks)}, widths {list(widths)}: must all be >= 1"
        )
    stem: list[nn.Module] = []
    if input_mean or input_std:
        stem.append(Standardize(input_mean or (), input_std or ()))
    in_channels = int(widths[0])
    stem.append(nn.Conv2d(int(input_shape[0]), in_channels, 3, padding=1, bias=False))
    stages: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(*stem))]
    for index, (count, width) in enumerate(zip(blocks, widths, strict=True), start=1):
        layer: list[nn.Module] = []
        for block in range(int(count)):
            stride = 2 if index > 1 and block == 0 else 1
            layer.append(PreActBlock(in_channels, int(width), stride))
            in_channels = int(width)
        stages.append((f"layer{index}", nn.Sequential(*layer)))
    pool = nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    stages.append(("pool", pool))
    stages.append(("logits", nn.Sequential(nn.Linear(in_channels, num_classes))))
    # PyTorch's default initialisation, as in the peers' code.
    return StagedNetwork(stages, input_shape=input_shape)
