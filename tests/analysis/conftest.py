"""Shared fixtures of the analysis tests: a small synthetic image set and a net trained on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from intriguing.trainers import StagedNetwork, convolutional

IMAGE_SHAPE = (1, 12, 12)
NUM_CLASSES = 4


def synthetic_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1]: one bright bar per class (rows or columns, two positions), plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % NUM_CLASSES
    images = 0.2 * torch.rand(count, *IMAGE_SHAPE, generator=generator)
    for index, label in enumerate(labels.tolist()):
        offset = 3 + 5 * (label % 2)
        if label < 2:
            images[index, 0, offset : offset + 2, 2:10] += 0.7
        else:
            images[index, 0, 2:10, offset : offset + 2] += 0.7
    return images.clamp(0, 1), labels


def train(network: StagedNetwork, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    network.train()
    for _ in range(steps):
        batch = torch.randint(len(images), (64,), generator=generator)
        loss = F.cross_entropy(network(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()


@pytest.fixture(scope="session")
def image_set() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_images(400, seed=0)


@pytest.fixture(scope="session")
def trained_conv(image_set: tuple[torch.Tensor, torch.Tensor]) -> StagedNetwork:
    """A conv net with batch norm and max pooling, trained to fit the synthetic set."""
    torch.manual_seed(0)
    network = convolutional(
        IMAGE_SHAPE,
        NUM_CLASSES,
        channels=(4, 8),
        kernel_size=3,
        batch_norm=True,
        fc_hidden=(16,),
    )
    train(network, *image_set, steps=60)
    return network
