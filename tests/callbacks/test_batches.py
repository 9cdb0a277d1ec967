"""The one reader of batch entries that the callbacks share (callbacks/batches.py)."""

from __future__ import annotations

import pytest
import torch

from intriguing.callbacks.batches import batch_entry, check_batch_key, describe_batch


def test_entries_by_index_negative_index_and_key() -> None:
    x, y = torch.zeros(4, 3), torch.arange(4)
    assert batch_entry((x, y), 0) is x
    assert batch_entry([x, y], -1) is y
    assert batch_entry({"image": x, "label": y}, "label") is y


def test_a_missing_entry_names_the_argument_the_keys_and_the_structure() -> None:
    batch = {"image": torch.zeros(4, 1, 8, 8), "label": torch.zeros(4, dtype=torch.long)}
    message = r"^target_key=1: the data set item has no such entry"
    with pytest.raises(ValueError, match=message) as e:
        batch_entry(batch, 1, argument="target_key", what="data set item")
    assert "['image', 'label']" in str(e.value)
    assert "'image': Tensor(4, 1, 8, 8) float32" in str(e.value)
    # A key on a tuple batch, an index past its end: refused the same way, with its length.
    for key in ("image", 2, -3):
        with pytest.raises(ValueError, match=r"it holds 2 entries, indices 0 to 1"):
            batch_entry((torch.zeros(2), torch.zeros(2)), key)
    with pytest.raises(TypeError, match=r"input_key=0: a batch of type Tensor"):
        batch_entry(torch.zeros(2), 0)


def test_keys_are_ints_or_strings_not_bools() -> None:
    assert check_batch_key("image", "input_key") == "image"
    assert check_batch_key(-1, "input_key") == -1
    for key in (True, 1.5, None):
        with pytest.raises(TypeError, match=r"target_key="):
            check_batch_key(key, "target_key")


def test_describe_batch() -> None:
    batch = (torch.zeros(2, 3), [1, 2], "name")
    assert describe_batch(batch) == "tuple ([0] Tensor(2, 3) float32, [1] list of 2, [2] str)"
