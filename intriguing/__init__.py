"""intriguing: adversarial augmentation research on PyTorch Lightning.

A reproduction of Szegedy et al. (2013), "Intriguing properties of neural networks", grown into
a framework for anyone's model. The subpackages live in the repository's top-level folders and
are installed under this one name:

- :mod:`intriguing.attacks`: L-BFGS, FGSM, PGD and noise at the input or any named layer;
- :mod:`intriguing.callbacks`: adversarial backfeeding, transfer robustness, spectral bounds;
- :mod:`intriguing.analysis`: transfer studies, unit and spectral analyses, the report;
- :mod:`intriguing.trainers`, :mod:`intriguing.datamodules`, :mod:`intriguing.configs`;
- :mod:`intriguing.cli`: the ``intriguing`` console script.

Importing this package imports nothing heavy (no torch): ``intriguing --help`` stays fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("intriguing")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
