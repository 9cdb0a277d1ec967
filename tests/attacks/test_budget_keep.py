"""PGD's keep="last": the last iterate, adversarial or not (Madry et al.'s adversarial
training), against the default that prefers an adversarial iterate; FGSM-RS as PGD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intriguing.attacks import PGD
from intriguing.attacks.base import attack_loss


class Notch(nn.Module):
    """Class 1 within 0.1 of x = 0.5, class 0 elsewhere: PGD from x = 0.2 for class 0 with
    steps of 0.28 in the ball of radius 0.5 goes 0.2 -> 0.48 (adversarial) -> 0.7 (not)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        own = self.scale * ((x.flatten(1)[:, 0] - 0.5).abs() - 0.1)
        return torch.stack([own, torch.zeros_like(own)], dim=1)


def test_keep_last_returns_the_last_iterate_even_when_an_earlier_one_was_adversarial() -> None:
    x, y = torch.tensor([[0.2]]), torch.tensor([0])
    settings = {"epsilon": 0.5, "steps": 2, "step_size": 0.28, "random_start": False}
    default = PGD(Notch(), **settings)(x, y)
    last = PGD(Notch(), keep="last", **settings)(x, y)
    assert default.adv.item() == pytest.approx(0.48) and default.success.item()
    assert last.adv.item() == pytest.approx(0.7) and not last.success.item()


def test_fgsm_with_random_start_is_one_pgd_step_from_a_uniform_start(mlp, examples) -> None:
    x, y = examples
    epsilon = 0.1
    attack = PGD(
        mlp,
        epsilon=epsilon,
        steps=1,
        step_size=1.25 * epsilon,
        keep="last",
        generator=torch.Generator().manual_seed(3),
    )
    adv = attack(x, y).adv
    # Wong et al.'s recipe by hand, with the same uniform start and our attack loss (whose
    # gradient is of the opposite sign to the cross-entropy's, without its rounding to zero).
    start = 2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 1
    h = (x + epsilon * start).clamp(0, 1).requires_grad_(True)
    loss = attack_loss(mlp(h), y, None).sum()
    (grad,) = torch.autograd.grad(loss, h)
    delta = (h.detach() - 1.25 * epsilon * grad.sign() - x).clamp(-epsilon, epsilon)
    assert torch.allclose(adv, (x + delta).clamp(0, 1), atol=1e-6)


def test_keep_is_checked() -> None:
    with pytest.raises(ValueError, match="keep='best'"):
        PGD(Notch(), keep="best")
