"""Checks of a pipeline settings dataclass's fields, in its ``__post_init__``: the same
values the command line's option types refuse (:func:`intriguing.cli.parsers.positive_int`,
``choices``), refused when the settings are built from Python.

Each check raises :class:`TypeError` (a value of the wrong kind: a ``str`` where a sequence is
expected, a float where a whole number is) or :class:`ValueError` (out of range), with a
message that names the settings class, the field and the value, in the library style of
:mod:`intriguing.errors`: ``"CheckpointAttackSettings: subset=-3: must be at least 1 (or
None: the whole split)"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Iterator
from numbers import Integral, Real
from typing import Any, Literal

__all__ = ["check_choice", "check_count", "check_number", "check_sequence", "check_text"]


def check_count(owner: str, name: str, value: Any, *, none: str | None = None) -> None:
    """A count: a whole number of at least 1, or ``None`` when ``none`` says what that means.

    Args:
        owner: the settings class's name, first in the message.
        name: the field's name.
        value: the field's value.
        none: what ``None`` means (``"the whole split"``); ``None``: it is not allowed.

    Raises:
        TypeError: not a whole number (``bool`` included), nor an allowed ``None``.
        ValueError: below 1.
    """
    alternative = "" if none is None else f" (or None: {none})"
    if value is None and none is not None:
        return
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{owner}: {name}={value!r}: expected a whole number{alternative}")
    if value < 1:
        raise ValueError(f"{owner}: {name}={value!r}: must be at least 1{alternative}")


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    optional: bool = False,
    whole: bool = False,
    minimum: float | None = None,
) -> None:
    """A real number (``whole``: a whole number), ``None`` when ``optional``; with ``minimum``,
    also finite and at least ``minimum``.

    Raises:
        TypeError: not a (whole) number (``bool`` included), nor an allowed ``None``.
        ValueError: with ``minimum``: below it, infinite or NaN.
    """
    if value is None and optional:
        return
    kind = Integral if whole else Real
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = "a whole number" if whole else "a number"
        raise TypeError(
            f"{owner}: {name}={value!r}: expected {expected}" + (" or None" if optional else "")
        )
    if minimum is not None and not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{owner}: {name}={value!r}: must be finite and at least {minimum:g}")


def check_text(
    owner: str, name: str, value: Any, *, optional: bool = False, path: bool = False
) -> None:
    """A ``str`` (also an ``os.PathLike`` when ``path``; ``None`` when ``optional``).

    Raises:
        TypeError: anything else.
    """
    kinds = (str, os.PathLike) if path else str
    if not isinstance(value, kinds) and not (optional and value is None):
        expected = "a path (str or Path)" if path else "a str"
        raise TypeError(
            f"{owner}: {name}={value!r}: expected {expected}" + (" or None" if optional else "")
        )


def check_choice(owner: str, name: str, value: Any, choices: Collection[str]) -> None:
    """One of ``choices`` (names).

    Raises:
        ValueError: anything else (the choices listed).
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name}={value!r}: expected one of {', '.join(choices)}")


def check_sequence(
    owner: str,
    name: str,
    value: Any,
    *,
    items: Literal["str", "path", "number", "size"],
    optional: bool = False,
    nonempty: bool = False,
) -> None:
    """A collection of names (``items="str"``), paths (``"path"``: ``str`` or
    ``os.PathLike``), numbers (``"number"``) or positive whole numbers (``"size"``): a list or
    tuple, not a ``str`` (whose characters would be taken one by one) nor a one-shot
    iterator (which the pipeline would find empty the second time round); ``None`` when
    ``optional``.

    Raises:
        TypeError: a ``str``, a non-iterable, an iterator, or an item of the wrong kind
            (named with its position).
        ValueError: ``nonempty`` and no items; with ``"size"``, an item below 1.
    """
    if value is None and optional:
        return
    kind, many, one = _ITEMS[items]
    if isinstance(value, str | bytes):
        hint = f" (one item: {name}=[{value!r}])" if items == "str" else ""
        raise TypeError(
            f"{owner}: {name}={value!r}: expected a sequence of {many}, not a "
            f"{type(value).__name__}{hint}"
        )
    if not isinstance(value, Iterable) or isinstance(value, Iterator):
        raise TypeError(
            f"{owner}: {name}={value!r}: expected a sequence of {many} (a list or "
            f"tuple), not {type(value).__name__}"
        )
    listed = list(value)
    for position, item in enumerate(listed):
        if not isinstance(item, kind) or isinstance(item, bool):
            raise TypeError(
                f"{owner}: {name}={value!r}: item {position} ({item!r}): expected {one}"
            )
        if items == "size" and item < 1:
            raise ValueError(f"{owner}: {name}={value!r}: sizes must be at least 1")
    if nonempty and not listed:
        raise ValueError(f"{owner}: {name}={value!r}: must not be empty")


#: Per kind of item: the accepted types, and the words for many and for one.
_ITEMS: dict[str, tuple[type | tuple[type, ...], str, str]] = {
    "str": (str, "names (str)", "a str"),
    "path": ((str, os.PathLike), "paths (str or Path)", "a str or Path"),
    "number": (Real, "numbers", "a number"),
    "size": (Integral, "positive whole numbers", "a whole number"),
}
