"""A fixed-size buffer of adversarial examples whose random part is continually replaced.

Szegedy et al. (2013), Section 4.2: "keeping a pool of adversarial examples a random subset of
which is continuously replaced by newly generated adversarial examples and which is mixed into
the original training set all the time". The pool holds tensors only (examples, labels, the
step each was made at), so that it goes into a Lightning checkpoint that loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class AdversarialPool:
    """Up to ``capacity`` examples of one shape, with labels and the step each was made at.

    Empty slots are filled first; once full, each :meth:`add` overwrites uniformly chosen
    random slots. :meth:`sample` draws without replacement from the filled slots.
    """

    def __init__(self, capacity: int, example_shape: Sequence[int], *, dtype: torch.dtype) -> None:
        if capacity < 1:
            raise ValueError(f"pool capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.example_shape = tuple(int(d) for d in example_shape)
        self.examples = torch.zeros(self.capacity, *self.example_shape, dtype=dtype)
        self.labels = torch.zeros(self.capacity, dtype=torch.long)
        self.made_at_step = torch.full((self.capacity,), -1, dtype=torch.long)
        self.size = 0

    @property
    def device(self) -> torch.device:
        return self.examples.device

    def to(self, device: torch.device | str) -> AdversarialPool:
        self.examples = self.examples.to(device)
        self.labels = self.labels.to(device)
        self.made_at_step = self.made_at_step.to(device)
        return self

    def add(
        self, examples: Tensor, labels: Tensor, *, step: int, generator: torch.Generator
    ) -> Tensor:
        """Store new examples: into empty slots first, then over random filled ones.

        Returns the slots written. More examples than ``capacity`` keep the last ones.
        """
        if examples.shape[1:] != self.examples.shape[1:]:
            raise ValueError(
                f"pool holds examples of shape {self.example_shape}, "
                f"got {tuple(examples.shape[1:])}"
            )
        examples, labels = examples[-self.capacity :], labels[-self.capacity :]
        count = len(examples)
        empty = min(count, self.capacity - self.size)
        fresh = torch.arange(self.size, self.size + empty)
        # Replacement slots are drawn among the slots filled before this call.
        drawn = torch.randperm(self.size, generator=generator)[: count - empty]
        slots = torch.cat([fresh, drawn]).to(self.device)
        self.examples[slots] = examples.detach().to(self.examples)
        self.labels[slots] = labels.to(self.device)
        self.made_at_step[slots] = step
        self.size += empty
        return slots

    def sample(self, count: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``min(count, size)`` distinct stored examples and their labels, in random order."""
        chosen = torch.randperm(self.size, generator=generator)[: min(count, self.size)]
        chosen = chosen.to(self.device)
        return self.examples[chosen], self.labels[chosen]

    def ages(self, step: int) -> Tensor:
        """Steps since each stored example was made."""
        return (step - self.made_at_step[: self.size]).float()

    def stored(self) -> tuple[Tensor, Tensor]:
        """All stored examples and labels (views, not copies)."""
        return self.examples[: self.size], self.labels[: self.size]

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "examples": self.examples[: self.size].cpu(),
            "labels": self.labels[: self.size].cpu(),
            "made_at_step": self.made_at_step[: self.size].cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore stored examples; a larger saved pool keeps its first ``capacity`` examples."""
        size = min(int(state["size"]), self.capacity)
        examples = state["examples"][:size]
        if tuple(examples.shape[1:]) != self.example_shape:
            raise ValueError(
                f"saved pool holds examples of shape {tuple(examples.shape[1:])}, "
                f"this pool {self.example_shape}"
            )
        self.examples[:size] = examples.to(self.examples)
        self.labels[:size] = state["labels"][:size].to(self.device)
        self.made_at_step[:size] = state["made_at_step"][:size].to(self.device)
        self.made_at_step[size:] = -1
        self.size = size
