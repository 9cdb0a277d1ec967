"""KMNIST (Kuzushiji-MNIST; Clanuwat et al. 2018, "Deep learning for classical Japanese
literature"): 70,000 28x28 grayscale images of ten cursive Hiragana characters, in MNIST's
IDX format and split (60,000 training, 10,000 test images).

Registered from this file only: the data module, the config's ``data.name=kmnist``, the local
copy in torchvision's layout (``DATA_DIR/KMNIST/raw``, IDX files plain or gzipped) and
torchvision's download (``torchvision.datasets.KMNIST``: its mirror and the MD5s of its
gzipped files) all derive from this spec. The SHA-256 of the uncompressed files are not
published by the authors: they are recorded at the first fetch and checked on every load of
the cache.
"""

from __future__ import annotations

from intriguing.datamodules.datasets import DatasetSpec, register_dataset

KMNIST = register_dataset(
    DatasetSpec(
        name="kmnist",
        title="KMNIST",
        input_shape=(1, 28, 28),
        stored_shape=(28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        torchvision_folder="KMNIST/raw",
        torchvision="KMNIST",
        layout="idx",
    )
)
