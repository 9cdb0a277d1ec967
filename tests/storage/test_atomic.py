"""`atomic_output`: the target holds the old content or the new one, never a partial file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch

from intriguing.storage import atomic_output


def test_writes_a_new_file_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "set.pt"
    with atomic_output(path) as stream:
        torch.save({"x": torch.arange(3)}, stream)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["set.pt"]


def test_replaces_an_existing_file_in_text_mode(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    with atomic_output(path, "w") as stream:
        stream.write("new")
    assert path.read_text() == "new"


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_nothing(
    tmp_path: Path, interruption: type[BaseException]
) -> None:
    path = tmp_path / "cache.pt"
    path.write_bytes(b"complete")
    with pytest.raises(interruption), atomic_output(path) as stream:
        stream.write(b"half")
        raise interruption()
    assert path.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.pt"]
