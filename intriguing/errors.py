"""Errors as one line of text: what a summary, a table cell or the command line shows.

Library code raises :class:`ValueError`/:class:`TypeError` whose message names the parameter
and the value (``"AdversarialBackfeed: mix_ratio=1.5: must be in [0, 1]"``), as Lightning's
callbacks and torchmetrics do; the config layer (:func:`intriguing.configs.compose.config_error`)
turns them into messages that name the config key. Many places keep only an error's first line
(a torch error with a long explanation, a traceback-like message from a subprocess):
:func:`first_line` is the one helper that takes it.

This module imports nothing but the standard library, so every package may use it (like
:mod:`intriguing.registry`).
"""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """The first non-blank line of ``str(error)``, without surrounding whitespace.

    Args:
        error: an exception, or a message already made into text.
        default: what to return when the message is blank; ``None`` (the default): the
            exception's class name (``"KeyError"``), or ``""`` for blank text.

    Returns:
        One line of text, never containing a newline.
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    if default is not None:
        return default
    return "" if isinstance(error, str) else type(error).__name__
