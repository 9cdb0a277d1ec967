"""KMNIST, registered from its own file: the data module and config serve it, and its local
copy in torchvision's layout is read (IDX files written by the test: no network here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intriguing.configs import compose
from intriguing.datamodules import ImageDataModule
from intriguing.datamodules import sources as source_module
from intriguing.datamodules.datasets import SPECS, DatasetSpec, dataset_names, dataset_spec
from intriguing.datamodules.kmnist import KMNIST
from intriguing.datamodules.sources import (
    IdxFolder,
    TorchvisionDownload,
    default_sources,
    fetch,
)


def small_kmnist(fake_factory, train: int = 12, test: int = 6) -> tuple[DatasetSpec, object]:
    fake = fake_factory("kmnist", train, test)
    spec = DatasetSpec(**{**KMNIST.__dict__, "train_size": train, "test_size": test})
    return spec, fake


def test_kmnist_is_registered_with_torchvisions_download() -> None:
    assert "kmnist" in dataset_names() and dataset_spec("kmnist") is KMNIST
    assert (KMNIST.input_shape, KMNIST.num_classes) == ((1, 28, 28), 10)
    import torchvision.datasets

    downloader = getattr(torchvision.datasets, KMNIST.torchvision)
    assert downloader.resources and downloader.mirrors  # the IDX download path
    assert compose(["data=kmnist"]).data.name == "kmnist"


def test_local_copy_in_torchvision_layout_is_read_and_cached(tmp_path: Path, fake_factory) -> None:
    spec, fake = small_kmnist(fake_factory)
    fake.write_idx(tmp_path / "KMNIST" / "raw")
    chain = default_sources(spec, tmp_path, download_timeout=0)
    assert [type(s).__name__ for s in chain] == ["IdxFolder", "TorchvisionDownload"]
    assert isinstance(chain[0], IdxFolder) and isinstance(chain[1], TorchvisionDownload)
    data, used = fetch(spec, tmp_path, chain)
    assert used == f"local copy {tmp_path / 'KMNIST' / 'raw'}"
    for part, array in fake.arrays.items():
        assert np.array_equal(data.part(part).numpy(), array)
    # No published checksums: recorded in the cache at the first fetch, checked on reload.
    again, used = fetch(spec, tmp_path, [])
    assert used.startswith("cache ") and np.array_equal(again.test_images, data.test_images)


def test_data_module_serves_kmnist(
    tmp_path: Path, fake_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, fake = small_kmnist(fake_factory, train=12, test=6)
    fake.write_idx(tmp_path / "KMNIST" / "raw")
    monkeypatch.setitem(SPECS, "kmnist", spec)
    module = ImageDataModule(
        name="kmnist", data_dir=tmp_path, val_size=2, on_device=False, download_timeout=0
    )
    module.prepare_data()
    module.setup("fit")
    x, _ = next(iter(module.train_dataloader()))
    assert x.shape[1:] == (1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert module.num_classes == 10 and source_module.cache_path(spec, tmp_path).is_file()
