"""The paper's own figures, the targets a reproduction is compared with.

Source: C. Szegedy, W. Zaremba, I. Sutskever, J. Bruna, D. Erhan, I. Goodfellow, R. Fergus,
"Intriguing properties of neural networks", arXiv:1312.6199 (ICLR 2014): Table 1 (MNIST
models), Table 2 (cross-model generalisation), Table 3 (models trained on the halves P1 and
P2), Table 4 (cross-training-set generalisation), Table 5 (AlexNet's upper Lipschitz bounds)
and Section 4.2's adversarial-training figures. The cells marked ``checked`` were
cross-checked against an independent reproduction; the others are as commonly quoted.

Errors are fractions (``0.067`` is 6.7%); distortions are ``sqrt(sum((x' - x)^2) / n)`` on
pixels in [0, 1]. Rows and columns carry the names the project's zoo presets give the models
(``configs/zoo/table2.yaml``, ``table4.yaml``), so that measured and reported cells meet by
name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCE = 'Szegedy et al., "Intriguing properties of neural networks", arXiv:1312.6199 (ICLR 2014)'


@dataclass(frozen=True)
class Reported:
    """One figure as the paper reports it; ``checked``: cross-checked independently."""

    value: float
    checked: bool = False


def _r(value: float, checked: bool = False) -> Reported:
    return Reported(value, checked)


@dataclass(frozen=True)
class ModelRow:
    """A row of Table 1 or Table 3: errors (by split) and the average minimum distortion."""

    errors: dict[str, Reported]
    distortion: Reported | None = None
    label: str = ""  # the paper's name of the row where it differs from the key


@dataclass(frozen=True)
class TransferRow:
    """A row of Table 2 or Table 4: the error of each column model, the row's distortion."""

    errors: dict[str, Reported]
    distortion: Reported | None = None


# ---------------------------------------------------------------------------- Table 1

TABLE1_MODELS = ("FC10(1e-4)", "FC10(1e-2)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10")

#: Table 1: train and test error and average minimum distortion of the MNIST models. The
#: distortion is "the minimum average distortion needed to reach 0% accuracy on the
#: training set". The two noise rows give the test error under Gaussian noise (the paper
#: does not say of which model; the figures are those of Table 2's FC10(1e-4) column).
TABLE1: dict[str, ModelRow] = {
    "FC10(1e-4)": ModelRow({"train": _r(0.067, True), "test": _r(0.074, True)}, _r(0.062, True)),
    "FC10(1e-2)": ModelRow({"train": _r(0.10, True), "test": _r(0.094, True)}, _r(0.1, True)),
    "FC10(1)": ModelRow({"train": _r(0.212, True), "test": _r(0.20, True)}, _r(0.14, True)),
    "FC100-100-10": ModelRow({"train": _r(0.0, True), "test": _r(0.0164, True)}, _r(0.058, True)),
    "FC200-200-10": ModelRow({"train": _r(0.0, True), "test": _r(0.0154, True)}, _r(0.065, True)),
    "AE400-10": ModelRow({"train": _r(0.0057, True), "test": _r(0.019, True)}, _r(0.086, True)),
    "Gaussian noise, stddev 0.1": ModelRow({"test": _r(0.05)}, _r(0.1)),
    "Gaussian noise, stddev 0.3": ModelRow({"test": _r(0.15)}, _r(0.3)),
}
#: Table 1's weight decay column, as the paper gives it.
TABLE1_WEIGHT_DECAY: dict[str, str] = {
    "FC10(1e-4)": "1e-4",
    "FC10(1e-2)": "1e-2",
    "FC10(1)": "1",
    "FC100-100-10": "1e-5, 1e-5, 1e-6",
    "FC200-200-10": "1e-5, 1e-5, 1e-6",
    "AE400-10": "1e-6",
}

# ---------------------------------------------------------------------------- Table 2


def _row(cells: dict[str, tuple[float, bool]], distortion: float | None) -> TransferRow:
    return TransferRow(
        {name: Reported(value, checked) for name, (value, checked) in cells.items()},
        None if distortion is None else Reported(distortion),
    )


def _cells(
    columns: tuple[str, ...], values: tuple[float, ...], checked: tuple[int, ...] = ()
) -> dict[str, tuple[float, bool]]:
    """``{column: (value, checked)}``; ``checked`` lists the indices of checked cells."""
    return {c: (v, i in checked) for i, (c, v) in enumerate(zip(columns, values, strict=True))}


#: Table 2: the error of each column model on the adversarial examples made for each row
#: model (the diagonal is 100% by construction), and each row's average distortion.
TABLE2: dict[str, TransferRow] = {
    "FC10(1e-4)": _row(
        _cells(TABLE1_MODELS, (1.0, 0.117, 0.227, 0.02, 0.039, 0.027), (0, 3, 5)), 0.062
    ),
    "FC10(1e-2)": _row(
        _cells(TABLE1_MODELS, (0.871, 1.0, 0.352, 0.359, 0.273, 0.098), (0, 3, 5)), 0.1
    ),
    "FC10(1)": _row(
        _cells(TABLE1_MODELS, (0.719, 0.762, 1.0, 0.481, 0.47, 0.344), (0, 3, 5)), 0.14
    ),
    "FC100-100-10": _row(
        _cells(TABLE1_MODELS, (0.289, 0.137, 0.211, 1.0, 0.066, 0.02), (0, 3, 5)), 0.058
    ),
    "FC200-200-10": _row(
        _cells(TABLE1_MODELS, (0.382, 0.14, 0.238, 0.203, 1.0, 0.027), (0, 3, 5)), 0.065
    ),
    "AE400-10": _row(_cells(TABLE1_MODELS, (0.234, 0.16, 0.248, 0.094, 0.066, 1.0)), 0.086),
    "Gaussian noise, stddev 0.1": _row(
        _cells(TABLE1_MODELS, (0.05, 0.101, 0.183, 0.0, 0.0, 0.008), (0, 3, 5)), 0.1
    ),
    "Gaussian noise, stddev 0.3": _row(
        _cells(TABLE1_MODELS, (0.156, 0.113, 0.227, 0.05, 0.043, 0.031), (0, 3, 5)), 0.3
    ),
}

# ---------------------------------------------------------------------------- Tables 3, 4

TABLE3_MODELS = ("FC100-100-10", "FC123-456-10", "FC100-100-10'")

#: Table 3: the models of the cross-training-set experiment, each one's error on P1, P2 and
#: the test set and its average minimum distortion. Keys are the zoo's names; ``label`` the
#: paper's.
TABLE3: dict[str, ModelRow] = {
    "FC100-100-10": ModelRow(
        {"P1": _r(0.0), "P2": _r(0.024), "test": _r(0.02)},
        _r(0.062),
        "FC100-100-10, trained on P1",
    ),
    "FC123-456-10": ModelRow(
        {"P1": _r(0.0), "P2": _r(0.025), "test": _r(0.021)},
        _r(0.059),
        "FC123-456-10, trained on P1",
    ),
    "FC100-100-10'": ModelRow(
        {"P1": _r(0.023), "P2": _r(0.0), "test": _r(0.021)},
        _r(0.058),
        "FC100-100-10', trained on P2",
    ),
}

#: Table 4's row of noise at the adversarial examples' own size ("stddev 0.06"); the
#: project's matching row is noise scaled to the adversarial rows' average distortion.
TABLE4_MATCHED_NOISE = "Gaussian noise, stddev 0.06"

#: Table 4: the error of each column model on the examples made for each row model, on
#: noise, and on the "magnified" perturbations (grown to distortion 0.1). The paper gives
#: no distortion column here.
TABLE4: dict[str, TransferRow] = {
    "FC100-100-10": _row(_cells(TABLE3_MODELS, (1.0, 0.262, 0.059), (1, 2)), None),
    "FC123-456-10": _row(_cells(TABLE3_MODELS, (0.0625, 1.0, 0.051)), None),
    "FC100-100-10'": _row(_cells(TABLE3_MODELS, (0.082, 0.082, 1.0)), None),
    TABLE4_MATCHED_NOISE: _row(_cells(TABLE3_MODELS, (0.022, 0.026, 0.024)), 0.06),
    "Magnified, made for FC100-100-10": _row(_cells(TABLE3_MODELS, (1.0, 0.98, 0.43), (1, 2)), 0.1),
    "Magnified, made for FC123-456-10": _row(_cells(TABLE3_MODELS, (0.96, 1.0, 0.22)), 0.1),
    "Magnified, made for FC100-100-10'": _row(_cells(TABLE3_MODELS, (0.27, 0.50, 1.0)), 0.1),
    "Gaussian noise, stddev 0.1": _row(
        _cells(TABLE3_MODELS, (0.026, 0.028, 0.027), (0, 1, 2)), 0.1
    ),
}

# ---------------------------------------------------------------------------- Table 5

#: Table 5: upper bounds on the Lipschitz constant of AlexNet's layers (ImageNet). The
#: project's MNIST networks have no counterpart in the paper; these are shown for scale.
TABLE5_ALEXNET: dict[str, float] = {
    "Conv1": 2.75,
    "Conv2": 10.0,
    "Conv3": 7.0,
    "Conv4": 7.5,
    "Conv5": 11.0,
    "FC1": 3.12,
    "FC2": 4.0,
    "FC3": 4.0,
}

# ---------------------------------------------------------------------------- Section 4.2


@dataclass(frozen=True)
class AdversarialTraining:
    """Section 4.2: a 100-100-10 net trained with a continually refreshed pool of
    adversarial examples (for each layer's output) reached "test error below 1.2%";
    weight decay alone gave 1.6%, carefully applied dropout about 1.3%."""

    backfeed_test_error_below: float = 0.012
    weight_decay_test_error: float = 0.016
    dropout_test_error: float = 0.013


ADVERSARIAL_TRAINING = AdversarialTraining()


@dataclass(frozen=True)
class Claim:
    """A finding of the paper stated in words, where it gives no number."""

    section: str
    text: str
    notes: tuple[str, ...] = field(default_factory=tuple)


UNITS_CLAIM = Claim(
    "3",
    "The images that maximise a single unit of a layer and those that maximise a random "
    "direction of it look equally coherent: the semantic information is in the space of "
    "activations, not in its individual units (MNIST: a convolutional net, test images).",
)
SPECTRAL_CLAIM = Claim(
    "4.3",
    "A network's instability is bounded by the product of its layers' upper Lipschitz "
    "bounds; large bounds do not prove adversarial examples exist, small ones would rule "
    "them out.",
)
