"""Reading a Lightning batch by key: the one way the callbacks find inputs and labels in it.

Lightning passes the dataloader's batches through unchanged: ``(x, y)`` tuples, lists
``[x, y, weight]``, dicts ``{"image": x, "label": y}``. Every callback that reads a batch
(:class:`~callbacks.backfeed.AdversarialBackfeed`, :class:`~callbacks.transfer.TransferRobustness`,
:class:`~callbacks.spectral.SpectralMonitor`) takes ``input_key`` (and ``target_key``): an
index of a tuple or list batch, or a key of a mapping batch, checked with
:func:`check_batch_key` and read with :func:`batch_entry`, whose error names the argument, the
key and the batch's structure (:func:`describe_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

#: Where a batch holds an entry: an index of a tuple or list batch, or a mapping's key.
BatchKey = int | str


def check_batch_key(key: Any, argument: str) -> BatchKey:
    """``key`` itself when it can name an entry of a batch (an ``int`` or a ``str``).

    Raises:
        TypeError: for anything else (``bool`` included), naming ``argument`` and the value.
    """
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(
            f"{argument}={key!r}: must be an index (int) of a tuple or list batch or a key "
            "(str) of a dict batch"
        )
    return key


def describe_batch(batch: Any) -> str:
    """The structure of a batch in a few words: its type and each entry's type and shape,
    e.g. ``dict {'image': Tensor(4, 1, 8, 8) float32, 'label': Tensor(4,) int64}``."""

    def entry(value: Any) -> str:
        if isinstance(value, Tensor):
            return f"Tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
        if isinstance(value, list | tuple):
            return f"{type(value).__name__} of {len(value)}"
        return type(value).__name__

    if isinstance(batch, Mapping):
        inner = ", ".join(f"{key!r}: {entry(value)}" for key, value in batch.items())
        return f"{type(batch).__name__} {{{inner}}}"
    if isinstance(batch, list | tuple):
        inner = ", ".join(f"[{i}] {entry(value)}" for i, value in enumerate(batch))
        return f"{type(batch).__name__} ({inner})"
    return entry(batch)


def batch_entry(
    batch: Any, key: BatchKey, *, argument: str = "input_key", what: str = "batch"
) -> Any:
    """``batch[key]``: the entry at index ``key`` of a tuple or list batch (negative indices
    count from the end), or under ``key`` of a mapping batch. The value is returned as it is.

    Args:
        batch: the batch (or one data set item).
        key: the entry's index or key.
        argument: the name of the argument that gave ``key``, for the error message
            (``"input_key"``, ``"backfeed.target_key"``).
        what: what ``batch`` is, for the error message (``"training batch"``,
            ``"data set item"``).

    Raises:
        ValueError: the batch has no entry ``key``; the message names ``argument=key``, the
            batch's keys (or its length) and its structure.
        TypeError: the batch is not a tuple, list or mapping.
    """
    if isinstance(batch, Mapping):
        if key in batch:
            return batch[key]
        held = f"its keys are {list(batch)!r}"
    elif isinstance(batch, list | tuple):
        size = len(batch)
        if isinstance(key, int) and not isinstance(key, bool) and -size <= key < size:
            return batch[key]
        held = f"it holds {size} entries" + (f", indices 0 to {size - 1}" if size else "")
    else:
        raise TypeError(
            f"{argument}={key!r}: a {what} of type {type(batch).__name__} has no entries by "
            f"index or key; expected a tuple, list or dict batch (the {what} is "
            f"{describe_batch(batch)})"
        )
    raise ValueError(
        f"{argument}={key!r}: the {what} has no such entry ({held}); the {what} is "
        f"{describe_batch(batch)}; set {argument} to the entry's index or key"
    )
