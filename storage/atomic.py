"""Atomic file replacement: write beside the target, flush to disk, then rename over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

FILE_MODE = 0o644  # mkstemp creates private files; caches and results are not secrets


@contextmanager
def atomic_output(path: str | Path, mode: Literal["wb", "w"] = "wb") -> Iterator[IO[Any]]:
    """Open a stream whose content replaces ``path`` only once the block completes.

    The stream is a temporary file in ``path``'s folder (created if missing), so the final
    ``os.replace`` is a rename on one file system: readers see the old file or the new one,
    never a partial one. If the block raises (or the process is interrupted), the temporary
    file is removed and ``path`` keeps what it held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, FILE_MODE)
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
