"""AdversarialPool: fills empty slots first, then replaces random ones; state round-trips."""

from __future__ import annotations

import pytest
import torch

from intriguing.callbacks.pool import AdversarialPool


def make_pool(capacity: int = 10) -> AdversarialPool:
    return AdversarialPool(capacity, (3,), dtype=torch.float32)


def batch(start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.arange(start, start + count, dtype=torch.float32)
    return values[:, None].repeat(1, 3), values.long()


def test_fills_empty_slots_before_replacing() -> None:
    pool, rng = make_pool(), torch.Generator().manual_seed(0)
    pool.add(*batch(0, 6), step=1, generator=rng)
    assert pool.size == 6
    slots = pool.add(*batch(100, 6), step=2, generator=rng)
    assert pool.size == 10
    # Four went into the empty slots 6..9, two replaced earlier examples.
    assert sorted(slots[:4].tolist()) == [6, 7, 8, 9]
    assert all(s < 6 for s in slots[4:].tolist())
    examples, labels = pool.stored()
    assert (examples[:, 0].long() == labels).all()
    assert (labels >= 100).sum() == 6


def test_replacement_is_a_random_subset_and_ages_are_tracked() -> None:
    pool, rng = make_pool(), torch.Generator().manual_seed(0)
    pool.add(*batch(0, 10), step=0, generator=rng)
    replaced = set()
    for step in range(1, 30):
        replaced |= set(pool.add(*batch(1000 * step, 2), step=step, generator=rng).tolist())
    assert replaced == set(range(10))  # every slot gets its turn
    ages = pool.ages(30)
    assert ages.min() >= 1 and ages.max() <= 30


def test_sample_draws_distinct_stored_examples() -> None:
    pool, rng = make_pool(), torch.Generator().manual_seed(0)
    pool.add(*batch(0, 7), step=0, generator=rng)
    _, labels = pool.sample(5, generator=rng)
    assert len(set(labels.tolist())) == 5 and set(labels.tolist()) <= set(range(7))
    assert len(pool.sample(50, generator=rng)[1]) == 7


def test_state_round_trip_with_weights_only(tmp_path) -> None:
    pool, rng = make_pool(), torch.Generator().manual_seed(0)
    pool.add(*batch(0, 7), step=4, generator=rng)
    path = tmp_path / "pool.pt"
    torch.save(pool.state_dict(), path)
    restored = make_pool()
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.size == 7
    for a, b in zip(pool.stored(), restored.stored(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(restored.ages(5), pool.ages(5))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        make_pool().add(
            torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), step=0, generator=torch.Generator()
        )


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_labels_of_any_integer_dtype_are_stored_as_int64(dtype: torch.dtype) -> None:
    pool, rng = make_pool(4), torch.Generator().manual_seed(0)
    examples, labels = batch(0, 6)
    pool.add(examples, labels.to(dtype), step=1, generator=rng)  # fills, then replaces
    restored = make_pool(4)
    state = pool.state_dict()
    restored.load_state_dict({**state, "labels": state["labels"].to(dtype)})
    for held in (pool, restored):
        assert held.labels.dtype == torch.long
        assert (held.stored()[0][:, 0].long() == held.stored()[1]).all()
