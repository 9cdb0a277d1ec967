"""A fixed-size buffer of adversarial examples whose random part is continually replaced.

Szegedy et al. (2013), Section 4.2: "keeping a pool of adversarial examples a random subset of
which is continuously replaced by newly generated adversarial examples and which is mixed into
the original training set all the time". The pool holds tensors only (examples, labels, the
step each was made at and, for a hidden layer's pool, each example's perturbation of that
layer's output), so that it goes into a Lightning checkpoint that loads with
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

    Storage is allocated by the first :meth:`add` or :meth:`load_state_dict` (shape, dtype and
    device of what is stored) unless ``example_shape`` and ``dtype`` are given here, so that a
    pool can be made before the data's shape is known.

    Args:
        capacity: the most examples held.
        example_shape: one example's shape (``None``: that of the first examples added).
        dtype: the examples' dtype (``None``: that of the first examples added).

    Attributes:
        examples: ``(capacity, *example_shape)`` stored examples (the first ``size`` rows).
        labels: ``(capacity,)`` int64 labels.
        made_at_step: ``(capacity,)`` int64 step each example was made at (-1: empty).
        perturbations: ``(capacity, *shape)`` per-example perturbations of a hidden layer's
            output (``None`` for a pool that holds none, as an input pool).
    """

    def __init__(
        self,
        capacity: int,
        example_shape: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"pool capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.size = 0
        self.examples: Tensor | None = None
        self.perturbations: Tensor | None = None
        self.labels = torch.zeros(self.capacity, dtype=torch.long)
        self.made_at_step = torch.full((self.capacity,), -1, dtype=torch.long)
        if example_shape is not None and dtype is not None:
            self.examples = torch.zeros(self.capacity, *example_shape, dtype=dtype)

    @property
    def example_shape(self) -> tuple[int, ...] | None:
        """One example's shape (``None`` before anything was stored)."""
        return None if self.examples is None else tuple(self.examples.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device: torch.device | str) -> AdversarialPool:
        self.labels = self.labels.to(device)
        self.made_at_step = self.made_at_step.to(device)
        if self.examples is not None:
            self.examples = self.examples.to(device)
        if self.perturbations is not None:
            self.perturbations = self.perturbations.to(device)
        return self

    def _storage(self, like: Tensor) -> Tensor:
        return torch.zeros(self.capacity, *like.shape[1:], dtype=like.dtype, device=self.device)

    def _check(self, name: str, stored: Tensor | None, given: Tensor | None) -> None:
        if given is None and stored is not None:
            raise ValueError(f"this pool holds {name}; give them with the examples")
        if given is not None and stored is not None and given.shape[1:] != stored.shape[1:]:
            raise ValueError(
                f"pool holds {name} of shape {tuple(stored.shape[1:])}, "
                f"got {tuple(given.shape[1:])}"
            )

    def add(
        self,
        examples: Tensor,
        labels: Tensor,
        *,
        step: int,
        generator: torch.Generator,
        perturbations: Tensor | None = None,
    ) -> Tensor:
        """Store new examples: into empty slots first, then over random filled ones.

        Args:
            examples: ``(n, *example_shape)``, converted to the pool's dtype.
            labels: ``(n,)`` integer labels (any integer dtype; stored as int64).
            step: the training step they were made at.
            generator: the random source of the replaced slots.
            perturbations: ``(n, *shape)``, each example's perturbation of a hidden layer's
                output; a pool stores them from its first :meth:`add` on, or never.

        Returns the slots written. More examples than ``capacity`` keep the last ones.

        Raises:
            ValueError: when a shape differs from what the pool holds, or perturbations are
                given to a pool that holds none (or left out for one that does).
        """
        if self.examples is None:
            self.examples = self._storage(examples)
            if perturbations is not None:
                self.perturbations = self._storage(perturbations)
        self._check("examples", self.examples, examples)
        self._check("perturbations", self.perturbations, perturbations)
        if perturbations is not None and self.perturbations is None:
            raise ValueError("this pool holds no perturbations (its first examples came without)")
        examples, labels = examples[-self.capacity :], labels[-self.capacity :]
        count = len(examples)
        empty = min(count, self.capacity - self.size)
        fresh = torch.arange(self.size, self.size + empty)
        # Replacement slots are drawn among the slots filled before this call.
        drawn = torch.randperm(self.size, generator=generator)[: count - empty]
        slots = torch.cat([fresh, drawn]).to(self.device)
        self.examples[slots] = examples.detach().to(self.examples)
        if perturbations is not None and self.perturbations is not None:
            perturbations = perturbations[-self.capacity :]
            self.perturbations[slots] = perturbations.detach().to(self.perturbations)
        self.labels[slots] = labels.to(self.labels)  # int64, whatever integer dtype given
        self.made_at_step[slots] = step
        self.size += empty
        return slots

    def sample_slots(self, count: int, *, generator: torch.Generator) -> Tensor:
        """``min(count, size)`` distinct filled slots, in random order (on the pool's device)."""
        chosen = torch.randperm(self.size, generator=generator)[: min(count, self.size)]
        return chosen.to(self.device)

    def sample(self, count: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``min(count, size)`` distinct stored examples and their labels, in random order."""
        chosen = self.sample_slots(count, generator=generator)
        if self.examples is None:
            return torch.zeros(0), self.labels[:0]
        return self.examples[chosen], self.labels[chosen]

    def ages(self, step: int) -> Tensor:
        """Steps since each stored example was made."""
        return (step - self.made_at_step[: self.size]).float()

    def stored(self) -> tuple[Tensor, Tensor]:
        """All stored examples and labels (views, not copies)."""
        if self.examples is None:
            return torch.zeros(0), self.labels[:0]
        return self.examples[: self.size], self.labels[: self.size]

    def state_dict(self) -> dict[str, Any]:
        """The stored part only, as copies on the CPU: a view would make ``torch.save``
        write the whole preallocated buffer, however few examples it holds."""

        def held(tensor: Tensor) -> Tensor:
            return tensor[: self.size].to("cpu", copy=True)

        state: dict[str, Any] = {
            "capacity": self.capacity,
            "size": self.size,
            "labels": held(self.labels),
            "made_at_step": held(self.made_at_step),
        }
        if self.examples is not None:
            state["examples"] = held(self.examples)
        if self.perturbations is not None:
            state["perturbations"] = held(self.perturbations)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore stored examples; a larger saved pool keeps its first ``capacity`` examples.

        Raises:
            ValueError: when the saved examples' or perturbations' shape differs from what
                this pool already holds.
        """
        size = min(int(state["size"]), self.capacity)
        if "examples" not in state:  # saved before anything was stored
            self.size = 0
            self.made_at_step.fill_(-1)
            return
        examples = state["examples"][:size]
        perturbations = state.get("perturbations")
        if self.examples is None:
            self.examples = self._storage(state["examples"])
            if perturbations is not None:
                self.perturbations = self._storage(perturbations)
        elif tuple(examples.shape[1:]) != self.example_shape:
            raise ValueError(
                f"saved pool holds examples of shape {tuple(examples.shape[1:])}, "
                f"this pool {self.example_shape}"
            )
        self._check("perturbations", self.perturbations, perturbations)
        self.examples[:size] = examples.to(self.examples)
        if perturbations is not None and self.perturbations is not None:
            self.perturbations[:size] = perturbations[:size].to(self.perturbations)
        self.labels[:size] = state["labels"][:size].to(self.labels)
        self.made_at_step[:size] = state["made_at_step"][:size].to(self.made_at_step)
        self.made_at_step[size:] = -1
        self.size = size
