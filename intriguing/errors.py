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

import re

__all__ = ["first_line", "under_key"]

#: A class naming itself at the start of a library message (``"AdversarialBackfeed: "``).
_OWNER = re.compile(r"[A-Z][A-Za-z0-9_]*: ")
#: A message that starts with a parameter: ``"mix_ratio=1.5: ..."``, ``"layers: ..."``.
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[=:]")


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


def under_key(key: str, message: str) -> str:
    """A library message about a parameter, as a message about the key ``key`` whose values
    became the arguments (a config section, an argument holding a mapping).

    ``"AdversarialBackfeed: mix_ratio=1.5: must be in [0, 1]"`` under ``"backfeed"`` reads
    ``"backfeed.mix_ratio=1.5: must be in [0, 1]"`` (the class's name dropped when a parameter
    follows it); a message that starts with ``key`` already is kept; any other message is kept
    after the key (``"backfeed: ..."``).
    """
    owner = _OWNER.match(message)
    if owner and _PARAMETER.match(message, owner.end()):
        message = message[owner.end() :]
    if message.startswith((f"{key}.", f"{key}:", f"{key}=")):
        return message
    if _PARAMETER.match(message):
        return f"{key}.{message}"
    return f"{key}: {message}"
