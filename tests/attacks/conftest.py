"""Small classifiers trained in a second on synthetic 8x8 images, shared by the attack tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from intriguing.trainers import StagedNetwork, fully_connected

SHAPE = (1, 8, 8)
CLASSES = 10


def synthetic(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten noisy prototypes in [0, 1]^64, clipped to the box like images are."""
    prototypes = torch.rand(CLASSES, *SHAPE, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    noise = 0.3 * torch.randn(count, *SHAPE, generator=generator)
    return (prototypes[labels] + noise).clamp(0, 1), labels


def trained(hidden: list[int], seed: int = 0) -> StagedNetwork:
    torch.manual_seed(seed)
    network = fully_connected(SHAPE, CLASSES, hidden=hidden)
    x, y = synthetic(2000, seed=1)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    for step in range(200):
        rows = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = F.cross_entropy(network(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for parameter in network.parameters():
        parameter.grad = None
    return network.eval()


@pytest.fixture(scope="session")
def softmax_regression() -> StagedNetwork:
    """Softmax regression (FC10 on 8x8): a convex attack loss, as in the paper's FC10."""
    return trained([])


@pytest.fixture(scope="session")
def mlp() -> StagedNetwork:
    """A small ReLU MLP with named hidden layers fc1, fc2 (and logits)."""
    return trained([32, 32])


@pytest.fixture(scope="session")
def examples() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic(24, seed=2)


@pytest.fixture(scope="session")
def many_examples() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic(100, seed=3)
