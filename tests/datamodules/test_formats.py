"""File formats: the numpy-only unpickler, IDX files, gzip damage, the MNIST pickle."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from intriguing.datamodules.formats import (
    DataSourceError,
    decode_cifar_batch,
    decode_mnist_pickle,
    idx_header,
    idx_sha256,
    load_numpy_pickle,
    read_file,
    read_idx,
)


class _Call:
    """Pickles as a call of ``function(*args)``: what a malicious pickle does."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.function, self.args


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unpickler_refuses_os_system_and_never_runs_it(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Call(os.system, f"touch {marker}"), protocol=protocol)
    # The same payload through pickle.loads would run the command: the test can fail.
    assert b"system" in payload
    with pytest.raises(DataSourceError, match=r"refused global (posix|nt|os)\.system"):
        load_numpy_pickle(payload, what="evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize(
    "call",
    [
        _Call(builtins.eval, "1 + 1"),
        _Call(subprocess.check_call, ["true"]),
        _Call(getattr, "text", "upper"),
        _Call(np.load, "x.npy"),  # numpy, but not array reconstruction
        _Call(np.frombuffer, b"\0\0\0\0", np.uint8),
    ],
    ids=["eval", "subprocess", "getattr", "numpy.load", "numpy.frombuffer"],
)
def test_unpickler_refuses_every_other_global(call: _Call) -> None:
    with pytest.raises(DataSourceError, match="refused global"):
        load_numpy_pickle(pickle.dumps(call, protocol=2), what="evil.pkl")


def test_unpickler_rebuilds_numpy_arrays_in_containers() -> None:
    content = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3]}
    # Protocol 2 written by Python 3 encodes bytes through _codecs.encode, which is refused
    # too; the real files are Python 2 pickles (plain strings) or protocol 3 and later.
    for protocol in (3, 4):
        loaded = load_numpy_pickle(pickle.dumps(content, protocol=protocol), what="ok.pkl")
        assert np.array_equal(loaded["data"], content["data"]) and loaded["labels"] == [1, 2, 3]


def test_unpickler_reports_a_truncated_pickle() -> None:
    data = pickle.dumps((np.zeros(100, np.float32),), protocol=4)
    with pytest.raises(DataSourceError, match="not a readable pickle"):
        load_numpy_pickle(data[: len(data) // 2], what="cut.pkl")


def test_idx_round_trip_and_checksum_is_that_of_the_file() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_header(array.shape) + array.tobytes()
    assert np.array_equal(read_idx(data, what="x"), array)
    import hashlib

    assert idx_sha256(array) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:-1], "truncated IDX file"),
        (lambda d: d + b"\0", "too long"),
        (lambda d: b"\1" + d[1:], "bad magic"),
        (lambda d: d[:2] + b"\x0d" + d[3:], "bad magic"),  # float data, not bytes
        (lambda d: d[:6], "truncated IDX header"),
    ],
)
def test_idx_damage_is_refused(damage, message: str) -> None:
    data = idx_header((2, 3, 4)) + bytes(24)
    with pytest.raises(DataSourceError, match=message):
        read_idx(damage(data), what="x")


def test_truncated_or_damaged_gzip_is_refused(tmp_path: Path) -> None:
    compressed = gzip.compress(os.urandom(50_000))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataSourceError, match=r"cut\.gz: not a readable file"):
        read_file(cut, limit=10**6)
    flipped = tmp_path / "flipped.gz"
    flipped.write_bytes(compressed[:-8] + bytes(8))  # CRC and length zeroed
    with pytest.raises(DataSourceError, match=r"flipped\.gz: not a readable file"):
        read_file(flipped, limit=10**6)


def test_read_file_refuses_more_than_expected(tmp_path: Path) -> None:
    big = tmp_path / "big.gz"
    big.write_bytes(gzip.compress(bytes(1000)))
    with pytest.raises(DataSourceError, match="larger than the 999 bytes"):
        read_file(big, limit=999)
    assert len(read_file(big, limit=1000)) == 1000


def test_mnist_pickle_decodes_to_bytes_and_joins_train_and_valid(fake) -> None:
    train_images, train_labels, test_images, test_labels = decode_mnist_pickle(
        fake.mnist_pickle(split_at=8), what="fake"
    )
    assert np.array_equal(train_images, fake.arrays["train_images"])
    assert np.array_equal(train_labels, fake.arrays["train_labels"])
    assert np.array_equal(test_images, fake.arrays["test_images"])
    assert train_images.dtype == np.uint8 and test_labels.dtype == np.uint8


def test_mnist_pickle_with_values_out_of_range_is_refused() -> None:
    x = np.full((2, 784), 1.5, dtype=np.float32)
    y = np.zeros(2, dtype=np.int64)
    data = pickle.dumps(((x, y), (x, y), (x, y)), protocol=4)
    with pytest.raises(DataSourceError, match="not bytes / 256"):
        decode_mnist_pickle(data, what="bad")


def test_mnist_pickle_of_the_wrong_shape_is_refused() -> None:
    x = np.zeros((2, 100), dtype=np.float32)
    y = np.zeros(2, dtype=np.int64)
    data = pickle.dumps(((x, y), (x, y), (x, y)), protocol=4)
    with pytest.raises(DataSourceError, match="100 pixels, not 784"):
        decode_mnist_pickle(data, what="bad")


def test_cifar_batch_decodes_and_checks_labels() -> None:
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    good = pickle.dumps({"data": images, "labels": [3, 9], "batch_label": "x"}, protocol=4)
    decoded, labels = decode_cifar_batch(good, what="batch")
    assert decoded.shape == (2, 3, 32, 32) and labels.tolist() == [3, 9]
    bad = pickle.dumps({"data": images, "labels": [3, 10]}, protocol=4)
    with pytest.raises(DataSourceError, match="out of range"):
        decode_cifar_batch(bad, what="batch")
