"""Transfer of adversarial examples between models (Szegedy et al. 2013, Tables 2, 3 and 4).

The paper's most striking finding: adversarial examples made for one network are still
misclassified by networks with other hyperparameters (Table 2) and by networks trained on a
disjoint half of the data (Tables 3 and 4), far more often than Gaussian noise of the same
size. The building blocks here:

- :class:`PerturbedSet`: examples and a perturbed copy of them, one row of a transfer table;
  made by :func:`adversarial_set` (an attack against a source model, cached on disk by
  :class:`AdversarialCache`), :func:`noise_set` (the Gaussian-noise control rows),
  :func:`magnified_set` (Table 4's "magnified" rows) and :func:`clean_set`;
- :func:`transfer_table`: the error of every target model on every row, with each row's
  average distortion in a last column, as :class:`TransferTable` (markdown in the paper's
  layout, CSV, a heatmap);
- :func:`split_errors`: each model's error on several data splits (Table 3);
- :func:`example_grid`: original, magnified perturbation and perturbed image, with the
  predicted labels, as in the paper's figures.

Distortion is the paper's measure ``sqrt(sum((x' - x)^2) / n)`` (:func:`attacks.distortion`),
which the paper also calls the perturbation's per-pixel standard deviation.
"""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm.auto import tqdm

from intriguing.analysis.plots import heatmap, perturbation_grid
from intriguing.analysis.tables import csv_table, markdown_table
from intriguing.attacks import (
    GaussianNoise,
    build_attack,
    distortion,
    evaluating,
    scale_to_distortion,
)
from intriguing.errors import first_line, under_key
from intriguing.storage import atomic_output
from intriguing.trainers import ErrorRate

#: Bumped whenever what is stored in a cache entry, or how it is made, changes meaning.
CACHE_FORMAT = 1
ROW_KINDS = ("adversarial", "noise", "magnified", "clean")
DEFAULT_BOUNDS = (0.0, 1.0)


MAGNIFIED_NOTE = (
    "Magnified rows: each perturbation x' - x is rescaled so that its distortion "
    "sqrt(sum((x' - x)^2) / n) - the per-pixel standard deviation the paper speaks of - becomes "
    "{value:g} after clipping to the box. The paper writes x + 0.1 (x' - x) / ||x' - x||, which "
    "read literally is a perturbation of L2 norm 0.1 (distortion 0.1 / sqrt(n), about 0.0036 on "
    "MNIST: far smaller, not magnified); its stated intent (per-pixel stddev from about 0.06 to "
    "0.1) is what is implemented."
)
NOISE_NOTE = (
    "Noise rows 'stddev s': Gaussian noise N(0, s^2) per pixel, then clipped to the box, as in "
    "the paper (the last column is the distortion measured after clipping); 'distortion d': each "
    "example's noise scaled so that its distortion after clipping is d."
)


def magnified_note(value: float) -> str:
    """The explanation printed under a table with magnified rows."""
    return MAGNIFIED_NOTE.format(value=value)


# ------------------------------------------------------------------------------ sets


@dataclass
class PerturbedSet:
    """Examples and a perturbed copy of them: one row of a transfer table.

    Attributes:
        name: the row's name (the source model's name for an adversarial set).
        kind: ``adversarial``, ``noise``, ``magnified`` or ``clean``.
        images, labels: the clean examples ``(N, C, H, W)`` and their labels ``(N,)``.
        perturbed: the perturbed examples, inside the box. For an adversarial set, the
            attack's output where it succeeded and the clean image where it failed.
        counted: which examples enter the row's average distortion: the successful ones of
            an adversarial set (already misclassified examples count with distortion 0, as in
            the paper's Table 1), all of a noise set, the non-zero perturbations of a
            magnified one.
        success: for an adversarial set, whether the attack succeeded against its source.
        source: the model an adversarial (or magnified) set was made for.
        settings: how the set was made (attack, stddev, magnification), primitives only.
        key: the cache key of an adversarial set (``None`` when it was not cached).
        path: the cache file it was read from or written to.
        cached: whether it was read from the cache rather than made now.
    """

    name: str
    kind: str
    images: Tensor
    labels: Tensor
    perturbed: Tensor
    counted: Tensor
    success: Tensor | None = None
    source: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    path: Path | None = None
    cached: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ROW_KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {', '.join(ROW_KINDS)}")
        count = len(self.labels)
        if self.images.shape != self.perturbed.shape or len(self.images) != count:
            raise ValueError(
                f"{self.name}: images {tuple(self.images.shape)}, perturbed "
                f"{tuple(self.perturbed.shape)} and labels {tuple(self.labels.shape)} disagree"
            )
        if self.counted.shape != (count,):
            raise ValueError(f"{self.name}: counted must have shape ({count},)")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def distortion(self) -> Tensor:
        """Per example, ``sqrt(sum((perturbed - image)^2) / n)``."""
        return distortion(self.perturbed, self.images)

    @property
    def mean_distortion(self) -> float:
        """The row's average distortion over the ``counted`` examples (``nan``: none)."""
        if not bool(self.counted.any()):
            return math.nan
        return float(self.distortion[self.counted].mean())

    @property
    def success_rate(self) -> float | None:
        return None if self.success is None else float(self.success.float().mean())


def clean_set(images: Tensor, labels: Tensor, *, name: str = "Clean") -> PerturbedSet:
    """The examples unperturbed: each target's row entry is its clean error."""
    return PerturbedSet(
        name=name,
        kind="clean",
        images=images,
        labels=labels,
        perturbed=images,
        counted=torch.ones(len(labels), dtype=torch.bool, device=labels.device),
    )


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _batches(count: int, batch_size: int) -> list[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    return [slice(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def check_attack_spec(spec: Mapping[str, Any], argument: str) -> None:
    """Check an attack config mapping before any model exists, as :func:`attacks.build_attack`
    would check it (unknown keys and names, values each attack refuses), by building the
    attack on the input of a stand-in model; ``layer`` is left out (a layer of a model not yet
    known).

    Raises:
        ValueError: ``"{argument}.KEY ..."``, naming the argument and the key.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"{argument}={spec!r}: expected an attack config mapping")
    try:
        build_attack(nn.Identity(), {**dict(spec), "layer": None})
    except (ValueError, TypeError) as error:
        message = str(error)
        if message.startswith("attack."):  # the spec's key, as the argument's key
            message = f"{argument}.{message.removeprefix('attack.')}"
        raise ValueError(under_key(argument, message)) from None


def check_transfer_attack(attack: Mapping[str, Any]) -> dict[str, Any]:
    """The attack settings as a plain dict, checked (:func:`check_attack_spec`); refuses a
    hidden-layer attack (models differ).

    Raises:
        ValueError: naming ``attack`` and the key.
    """
    spec = {key: value for key, value in dict(attack).items() if value is not None}
    if spec.get("layer") not in (None, "input"):
        raise ValueError(
            f"attack.layer={spec['layer']!r}: transfer compares models on their inputs; "
            "hidden layers differ between models (use layer=null)"
        )
    spec.pop("layer", None)
    spec.setdefault("name", "lbfgs")
    spec = {key: (str(v) if hasattr(v, "value") else v) for key, v in spec.items()}
    check_attack_spec(spec, "attack")
    return spec


def attack_examples(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    attack: Mapping[str, Any],
    *,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
    description: str = "attack",
) -> tuple[Tensor, Tensor]:
    """Adversarial examples against ``model``: ``(perturbed, success)`` on ``images.device``.

    The attack is :func:`attacks.build_attack` of ``attack`` (an ``AttackConfig`` mapping),
    run batch by batch; random attacks draw from a generator seeded with ``seed``. Where the
    attack fails, ``perturbed`` holds the clean image.
    """
    spec = check_transfer_attack(attack)
    device = _device_of(model)
    attacker = build_attack(model, spec)
    if getattr(attacker, "uses_randomness", False):
        attacker.generator = torch.Generator(device=device).manual_seed(seed)  # type: ignore[attr-defined]
    perturbed, success = torch.empty_like(images), torch.zeros_like(labels, dtype=torch.bool)
    parts = _batches(len(labels), batch_size)
    for rows in tqdm(parts, desc=description, disable=not progress, unit="batch", leave=False):
        x, y = images[rows].to(device), labels[rows].to(device)
        result = attacker(x, y)
        keep = result.success.view(-1, *([1] * (x.ndim - 1)))
        perturbed[rows] = torch.where(keep, result.adv, x).to(images.device)
        success[rows] = result.success.to(labels.device)
    return perturbed, success


# ----------------------------------------------------------------------------- cache


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's contents (a checkpoint is keyed by what it holds, not its name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_digest(*tensors: Tensor) -> str:
    """SHA-256 of tensors' dtypes, shapes and values."""
    digest = hashlib.sha256()
    for tensor in tensors:
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def adversarial_key(
    *,
    checkpoint_digest: str,
    attack: Mapping[str, Any],
    images: Tensor,
    labels: Tensor,
    seed: int = 0,
    batch_size: int | None = None,
) -> str:
    """The cache key of an adversarial set: checkpoint contents, attack settings, data.

    ``batch_size`` enters the key only for random attacks, whose random stream depends on
    how the examples were batched (pass ``None`` otherwise).
    """
    record = {
        "format": CACHE_FORMAT,
        "checkpoint": checkpoint_digest,
        "attack": check_transfer_attack(attack),
        "data": tensor_digest(images, labels),
        "seed": int(seed),
        "batch_size": batch_size,
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class AdversarialCache:
    """Adversarial sets on disk, one file ``KEY.pt`` per set, below ``root``.

    Files hold tensors and primitives only and are read with ``torch.load(weights_only=True)``;
    writes go to a temporary file in the same folder that is then renamed, so a reader never
    sees half a file. An entry that cannot be read, or whose contents do not fit the examples
    asked for, is reported with a warning and recomputed, never trusted.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, *, images: Tensor, labels: Tensor) -> dict[str, Any] | None:
        """The stored entry for ``key`` if there is a valid one for these examples."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unreadable, truncated, or needs code to unpickle
            reason = first_line(error, "unreadable")
            return self._reject(path, f"unreadable ({type(error).__name__}: {reason})")
        problem = _entry_problem(content, key, images, labels)
        if problem:
            return self._reject(path, problem)
        return content

    @staticmethod
    def _reject(path: Path, reason: str) -> None:
        warnings.warn(f"adversarial cache {path}: {reason}; recomputing it", stacklevel=3)
        return None

    def store(self, key: str, content: Mapping[str, Any]) -> Path:
        """Write ``content`` for ``key`` atomically; returns the file."""
        path = self.path(key)
        with atomic_output(path) as stream:
            torch.save(dict(content), stream)
        return path


def _entry_problem(content: Any, key: str, images: Tensor, labels: Tensor) -> str | None:
    """Why a cache entry cannot be used for these examples, or ``None`` when it can."""
    if not isinstance(content, dict):
        return "not a mapping"
    if content.get("format") != CACHE_FORMAT or content.get("key") != key:
        return "written for another key or cache format"
    perturbed, success, stored = (content.get(k) for k in ("perturbed", "success", "labels"))
    if not all(isinstance(t, Tensor) for t in (perturbed, success, stored)):
        return "tensors missing"
    if perturbed.shape != images.shape or perturbed.dtype != images.dtype:
        return f"holds examples of shape {tuple(perturbed.shape)}, not {tuple(images.shape)}"
    if success.shape != labels.shape or success.dtype != torch.bool:
        return "success flags of the wrong shape"
    if not torch.equal(stored, labels.cpu()):
        return "labels differ from the examples'"
    if not bool(torch.isfinite(perturbed).all()):
        return "non-finite values"
    low, high = content.get("bounds", DEFAULT_BOUNDS)
    if bool((perturbed < low).any() or (perturbed > high).any()):
        return f"values outside the box [{low}, {high}]"
    return None


def adversarial_set(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    attack: Mapping[str, Any],
    *,
    name: str,
    checkpoint: str | Path | None = None,
    cache: AdversarialCache | None = None,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> PerturbedSet:
    """Adversarial examples made for ``model`` (named ``name``), cached when possible.

    With a ``cache`` and the ``checkpoint`` file the model was loaded from, the set is keyed
    by :func:`adversarial_key` (the checkpoint's contents, the attack settings, the examples
    themselves, the seed) and made only when no valid entry exists; any change of these
    makes a new entry.
    """
    spec = check_transfer_attack(attack)
    key = path = None
    if cache is not None and checkpoint is not None:
        builder = build_attack(model, spec)
        random = bool(getattr(builder, "uses_randomness", False))
        key = adversarial_key(
            checkpoint_digest=file_digest(checkpoint),
            attack=spec,
            images=images,
            labels=labels,
            seed=seed,
            batch_size=batch_size if random else None,
        )
        content = cache.load(key, images=images, labels=labels)
        if content is not None:
            stored = content["perturbed"], content["success"]
            made = _adversarial(name, images, labels, *stored, spec, key, cache.path(key))
            made.cached = True
            return made
    perturbed, success = attack_examples(
        model,
        images,
        labels,
        spec,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        description=f"attack {name}",
    )
    if key is not None and cache is not None:
        path = cache.store(
            key,
            {
                "format": CACHE_FORMAT,
                "key": key,
                "source": name,
                "checkpoint": str(checkpoint),
                "attack": spec,
                "seed": int(seed),
                "bounds": DEFAULT_BOUNDS,
                "perturbed": perturbed.detach().cpu(),
                "success": success.detach().cpu(),
                "labels": labels.detach().cpu(),
            },
        )
    return _adversarial(name, images, labels, perturbed, success, spec, key, path)


def _adversarial(
    name: str,
    images: Tensor,
    labels: Tensor,
    perturbed: Tensor,
    success: Tensor,
    spec: dict[str, Any],
    key: str | None,
    path: Path | None,
) -> PerturbedSet:
    success = success.to(labels.device)
    return PerturbedSet(
        name=name,
        kind="adversarial",
        images=images,
        labels=labels,
        perturbed=perturbed.to(images.device),
        counted=success,
        success=success,
        source=name,
        settings={"attack": spec},
        key=key,
        path=path,
    )


def noise_set(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    stddev: float | None = None,
    distortion: float | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    name: str | None = None,
) -> PerturbedSet:
    """Gaussian noise of standard deviation ``stddev`` (then clipped to the box), or scaled
    per example to the distortion ``distortion`` after clipping (the paper's control rows).

    The noise does not depend on ``model`` (:class:`attacks.GaussianNoise` runs it forward
    only to report its own success); it is drawn from a generator seeded with ``seed``.
    """
    if (stddev is None) == (distortion is None):
        raise ValueError("noise_set: give exactly one of stddev and distortion")
    size = float(stddev if stddev is not None else distortion)  # type: ignore[arg-type]
    if not size >= 0 or not math.isfinite(size):
        raise ValueError(f"noise_set: the size must be finite and >= 0, got {size}")
    device = _device_of(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = GaussianNoise(model, stddev=stddev, distortion=distortion, generator=generator)
    perturbed = torch.empty_like(images)
    for rows in _batches(len(labels), batch_size):
        result = noise(images[rows].to(device), labels[rows].to(device))
        perturbed[rows] = result.adv.to(images.device)
    label = f"stddev {size:g}" if stddev is not None else f"distortion {size:.3g}"
    return PerturbedSet(
        name=name or f"Gaussian noise, {label}",
        kind="noise",
        images=images,
        labels=labels,
        perturbed=perturbed,
        counted=torch.ones(len(labels), dtype=torch.bool, device=labels.device),
        settings={"stddev": stddev, "distortion": distortion, "seed": int(seed)},
    )


def magnified_set(
    source: PerturbedSet,
    value: float = 0.1,
    *,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    name: str | None = None,
) -> PerturbedSet:
    """Table 4's "magnified" row: each perturbation of ``source`` rescaled so that its
    distortion (the paper's per-pixel standard deviation) is ``value`` after clipping.

    The paper writes ``x + 0.1 (x' - x) / ||x' - x||``; read literally, that is a perturbation
    of L2 norm 0.1, i.e. a distortion of ``0.1 / sqrt(n)`` (about 0.0036 on MNIST), far
    *smaller* than the original one. Its stated intent - the perturbation's per-pixel
    standard deviation grown from about 0.06 to 0.1 - is what is implemented (see
    :data:`MAGNIFIED_NOTE`). A perturbation larger than ``value`` is scaled down alike;
    examples without a perturbation (failed attacks) are left unchanged and not counted.
    """
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"magnified_set: the distortion must be positive, got {value}")
    direction = source.perturbed - source.images
    perturbed = scale_to_distortion(source.images, direction, value, bounds=bounds)
    moved = direction.flatten(1).abs().amax(dim=1) > 0
    made_for = source.source or source.name
    return PerturbedSet(
        name=name or f"Magnified, made for {made_for}",
        kind="magnified",
        images=source.images,
        labels=source.labels,
        perturbed=perturbed,
        counted=moved,
        source=made_for,
        settings={"distortion": float(value), "from": source.name},
    )


def checkpoint_names(paths: Sequence[str | Path]) -> list[str]:
    """A name per checkpoint: the experiment's folder for a run's checkpoint
    (``OUT/NAME/TIME/checkpoints/last.ckpt``), else the file's stem; repeats get ``#k``."""
    names = []
    for path in map(Path, paths):
        parts = path.parts
        if len(parts) >= 4 and parts[-2] == "checkpoints":
            names.append(parts[-4])
        else:
            names.append(path.stem)
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}#{seen[name]}")
    return unique


# ------------------------------------------------------------------------------ tables


class PixelInput(nn.Module):
    """``model`` made to take pixel-unit inputs, for data normalised outside the model.

    ``forward(x) = model((x - mean) / std)``, the normalised input cast to the model's
    floating dtype. Attacks, distortions, the box ``[0, 1]`` and image grids then all work in
    pixel units, while ``model`` still sees the normalised inputs it was trained on.

    Args:
        model: a module taking normalised inputs ``(N, C, ...)``.
        mean, std: per-channel (``C`` values) or single (1 value) statistics of the
            normalisation ``(pixel - mean) / std``, in pixel units; ``std > 0``.

    Raises:
        ValueError: ``mean``/``std`` empty, of different lengths, not finite, or ``std <= 0``.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if not len(mean_t) or len(mean_t) != len(std_t):
            raise ValueError(f"mean={list(mean)}, std={list(std)}: need equal, non-zero lengths")
        if not bool(torch.isfinite(mean_t).all()):
            raise ValueError(f"mean={list(mean)}: must be finite")
        if not bool(torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise ValueError(f"std={list(std)}: must be finite and > 0")
        self.model = model
        device = _device_of(model)
        self.register_buffer("mean", mean_t.to(device), persistent=False)
        self.register_buffer("std", std_t.to(device), persistent=False)

    def to_pixels(self, x: Tensor) -> Tensor:
        """Normalised inputs ``(N, C, ...)`` back to pixel units: ``x * std + mean``."""
        shape = (1, -1, *[1] * (x.ndim - 2))
        return x * self.std.view(shape).to(x) + self.mean.view(shape).to(x)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, *[1] * (x.ndim - 2))
        normalised = (x - self.mean.view(shape)) / self.std.view(shape)
        return self.model(model_input(self.model, normalised))


def _floating_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def model_input(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` as ``model`` takes it: on the model's device and, when floating-point, in the
    model's own floating dtype (that of its first floating parameter or buffer).

    Every model of a transfer measurement is called through this: a model that Lightning's
    ``bf16-true`` or ``16-true`` precision left in half precision takes float32 examples, and
    a float32 zoo model takes a half-precision model's examples. A model without floating
    tensors (or integer inputs) gets ``x`` unchanged in dtype.
    """
    dtype = _floating_dtype(model)
    x = x.to(_device_of(model))
    return x.to(dtype) if dtype is not None and x.is_floating_point() else x


def predictions(model: nn.Module, images: Tensor, *, batch_size: int = 1000) -> Tensor:
    """The class ``model`` predicts for each image: ``(N,)`` int64 on ``images.device``.

    Run in eval mode without gradients (every submodule's mode is restored); floating-point
    images are cast to the model's floating dtype (a model that Lightning's ``bf16-true`` or
    ``16-true`` precision left in half precision takes the float32 examples).
    """
    with evaluating(model):
        parts = []
        for rows in _batches(len(images), batch_size):
            x = model_input(model, images[rows])
            parts.append(model(x).argmax(dim=1).to(images.device))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=images.device)


def error_rate(
    model: nn.Module, images: Tensor, labels: Tensor, *, batch_size: int = 1000
) -> float:
    """Fraction of ``images`` that ``model`` misclassifies (:class:`trainers.ErrorRate`)."""
    metric = ErrorRate()
    metric.update(predictions(model, images, batch_size=batch_size).cpu(), labels.cpu())
    return float(metric.compute())


def _percent(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{100 * value:.0f}%" if value in (0.0, 1.0) else f"{100 * value:.1f}%"


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


@dataclass
class TransferRow:
    """One row of a transfer table: a set's error on every target, its average distortion."""

    name: str
    kind: str
    errors: list[float]
    distortion: float
    examples: int
    source: str | None = None
    success_rate: float | None = None


@dataclass
class TransferTable:
    """Error of each column model on each row's examples (the layout of Tables 2 and 4)."""

    targets: list[str]
    rows: list[TransferRow]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def error(self, row: str, target: str) -> float:
        """The cell of row ``row`` (its name) and column ``target``."""
        for entry in self.rows:
            if entry.name == row:
                return entry.errors[self.targets.index(target)]
        raise KeyError(f"no row {row!r} (rows: {[r.name for r in self.rows]})")

    def matrix(self) -> Tensor:
        return torch.tensor([row.errors for row in self.rows], dtype=torch.float64)

    def to_markdown(self, *, notes: bool = True) -> str:
        header = ["Made for" if self.rows else "Row", *self.targets, "Av. distortion"]
        body = [
            [row.name, *(_percent(e) for e in row.errors), _number(row.distortion)]
            for row in self.rows
        ]
        text = (f"{self.title}\n\n" if self.title else "") + markdown_table(header, body)
        if notes and self.notes:
            text += "\n" + "\n".join(f"- {note}" for note in self.notes) + "\n"
        return text

    def to_csv(self) -> str:
        header = ["row", "kind", *self.targets, "av_distortion", "examples", "success_rate"]
        body = [
            [
                row.name,
                row.kind,
                *(f"{e:.6f}" for e in row.errors),
                f"{row.distortion:.6f}",
                row.examples,
                "" if row.success_rate is None else f"{row.success_rate:.6f}",
            ]
            for row in self.rows
        ]
        return csv_table(header, body)

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per row (for JSON and W&B tables)."""
        return [
            {
                "row": row.name,
                "kind": row.kind,
                **dict(zip(self.targets, row.errors, strict=True)),
                "av_distortion": row.distortion,
                "examples": row.examples,
                "success_rate": row.success_rate,
            }
            for row in self.rows
        ]

    def heatmap(self, *, title: str | None = None) -> Figure:
        """The error cells as a heatmap; each row's average distortion beside its name."""
        labels = [f"{row.name}  ({_number(row.distortion)})" for row in self.rows]
        return heatmap(
            self.matrix(),
            row_labels=labels,
            col_labels=self.targets,
            title=title if title is not None else (self.title.split(":")[0] or None),
            colorbar_label="error of the column model",
            margins=(label_margin(labels), 1.1),
        )


def label_margin(labels: Sequence[str], *, fontsize: float = 8) -> float:
    """Inches of room for the longest of ``labels`` left of a heatmap (at least 2.8)."""
    longest = max((len(label) for label in labels), default=0)
    return max(2.8, 0.3 + 0.0085 * fontsize * longest)


def transfer_table(
    targets: Mapping[str, nn.Module],
    rows: Sequence[PerturbedSet],
    *,
    batch_size: int = 1000,
    title: str = "",
    notes: Sequence[str] = (),
    progress: bool = False,
) -> TransferTable:
    """The error of every model of ``targets`` on every set of ``rows``."""
    if not targets:
        raise ValueError("transfer_table: no target models")
    table_rows = []
    cells = [(row, name) for row in rows for name in targets]
    errors: dict[tuple[int, str], float] = {}
    bar = tqdm(cells, desc="evaluate", disable=not progress, unit="cell", leave=False)
    for row, name in bar:
        errors[id(row), name] = error_rate(
            targets[name], row.perturbed, row.labels, batch_size=batch_size
        )
    for row in rows:
        table_rows.append(
            TransferRow(
                name=row.name,
                kind=row.kind,
                errors=[errors[id(row), name] for name in targets],
                distortion=row.mean_distortion,
                examples=len(row),
                source=row.source,
                success_rate=row.success_rate,
            )
        )
    return TransferTable(targets=list(targets), rows=table_rows, title=title, notes=list(notes))


@dataclass
class SplitErrors:
    """Each model's error on several data splits, and its average minimum distortion
    (the layout of Table 3)."""

    models: list[str]
    splits: list[str]
    errors: list[list[float]]
    distortion: list[float]
    title: str = ""

    def to_markdown(self) -> str:
        header = ["Model", *(f"Error on {s}" for s in self.splits), "Av. min. distortion"]
        body = [
            [model, *(_percent(e) for e in errors), _number(d)]
            for model, errors, d in zip(self.models, self.errors, self.distortion, strict=True)
        ]
        return (f"{self.title}\n\n" if self.title else "") + markdown_table(header, body)

    def to_csv(self) -> str:
        header = ["model", *(f"error_{s}" for s in self.splits), "av_min_distortion"]
        body = [
            [model, *(f"{e:.6f}" for e in errors), f"{d:.6f}"]
            for model, errors, d in zip(self.models, self.errors, self.distortion, strict=True)
        ]
        return csv_table(header, body)

    def records(self) -> list[dict[str, Any]]:
        return [
            {"model": model, **dict(zip(self.splits, errors, strict=True)), "av_distortion": d}
            for model, errors, d in zip(self.models, self.errors, self.distortion, strict=True)
        ]


def split_errors(
    models: Mapping[str, nn.Module],
    splits: Mapping[str, tuple[Tensor, Tensor]],
    *,
    distortions: Mapping[str, float] | None = None,
    batch_size: int = 1000,
    title: str = "",
) -> SplitErrors:
    """Each model's error on each split (Table 3: P1, P2 and the test set)."""
    distortions = distortions or {}
    return SplitErrors(
        models=list(models),
        splits=list(splits),
        errors=[
            [error_rate(model, x, y, batch_size=batch_size) for x, y in splits.values()]
            for model in models.values()
        ],
        distortion=[float(distortions.get(name, math.nan)) for name in models],
        title=title,
    )


# ------------------------------------------------------------------------------ figures


def example_grid(
    sets: Sequence[PerturbedSet],
    models: Mapping[str, nn.Module],
    *,
    count: int = 8,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Original, magnified perturbation and perturbed image of ``count`` examples per set,
    captioned with the class the set's source model predicts (its own model for sets made
    for one; ``models`` must hold it). Successful examples with a visible perturbation come
    first."""
    chosen = [s for s in sets if s.source is not None and s.source in models]
    if not chosen:
        raise ValueError("example_grid: no set has its source model among the models")
    count = min(count, *(len(s) for s in chosen))
    if count < 1:
        raise ValueError("example_grid: the sets are empty")
    originals, perturbed, labels, before, after = [], [], [], [], []
    for entry in chosen:
        moved = (entry.perturbed - entry.images).flatten(1).abs().amax(dim=1) > 0
        fooled = entry.success if entry.success is not None else moved
        order = torch.argsort((~(fooled & moved)).int(), stable=True)[:count]
        model = models[entry.source]  # type: ignore[index]
        x, p = entry.images[order], entry.perturbed[order]
        originals.append(x.cpu())
        perturbed.append(p.cpu())
        labels.append(entry.labels[order].cpu())
        before.append(predictions(model, x).cpu())
        after.append(predictions(model, p).cpu())
    return perturbation_grid(
        torch.stack(originals),
        torch.stack(perturbed),
        labels=torch.stack(labels),
        original_predictions=torch.stack(before),
        perturbed_predictions=torch.stack(after),
        group_names=[textwrap.fill(entry.name, 20) for entry in chosen],
        class_names=class_names,
        title=title,
    )


# ------------------------------------------------------------------------------ a study

#: The noise rows of each layout by default: ("stddev", s), ("distortion", d) or
#: ("matched", None) - noise at the adversarial rows' average distortion (the paper's
#: "stddev 0.06" row of Table 4).
DEFAULT_NOISE: dict[int, tuple[tuple[str, float | None], ...]] = {
    2: (("stddev", 0.1), ("stddev", 0.3)),
    4: (("matched", None), ("stddev", 0.1)),
}
#: The magnified rows of each layout by default (distortions; Table 4: 0.1).
DEFAULT_MAGNIFY: dict[int, tuple[float, ...]] = {2: (), 4: (0.1,)}
CLEAN_ROW = "Clean (no perturbation)"


@dataclass
class TransferStudy:
    """One transfer experiment: the adversarial sets, the table, Table 3, the figure.

    Attributes:
        table: the layout, 2 (cross-model) or 4 (cross-training-set, with Table 3).
        matrix: the error of every model on every row (:class:`TransferTable`).
        by_split: for layout 4, each model's error on P1, P2 and the test set.
        sources: the adversarial set made for each model, in the models' order.
        rows: every row of the table (adversarial, noise, magnified, clean sets).
        grid: originals, perturbations and perturbed images of the adversarial and
            magnified sets (:func:`example_grid`).
        described: what the examples are (``"mnist test, 1000 examples"``).
    """

    table: int
    matrix: TransferTable
    by_split: SplitErrors | None
    sources: list[PerturbedSet]
    rows: list[PerturbedSet]
    grid: Figure
    described: str


def transfer_rows(
    sources: Sequence[PerturbedSet],
    reference: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    table: int,
    noise: Sequence[tuple[str, float | None]],
    magnify: Sequence[float],
    clean_row: bool = True,
    seed: int = 0,
) -> tuple[list[PerturbedSet], list[str]]:
    """The rows of a transfer table in the paper's order, and the notes explaining them.

    Table 2: adversarial rows, noise rows. Table 4: adversarial rows, matched noise, the
    magnified rows, the other noise rows. A clean row comes last when ``clean_row``. The
    noise does not depend on the model; ``reference`` only runs it forward.
    """
    distortions = [s.mean_distortion for s in sources if not math.isnan(s.mean_distortion)]
    matched = sum(distortions) / len(distortions) if distortions else math.nan
    made_noise: list[tuple[str, PerturbedSet]] = []
    for kind, value in noise:
        if kind == "matched":
            if math.isnan(matched):
                continue  # no adversarial example was found: nothing to match (see notes)
            name = f"Gaussian noise, distortion {matched:.3f} (matched)"
            made = noise_set(reference, images, labels, distortion=matched, seed=seed, name=name)
        elif kind == "stddev":
            made = noise_set(reference, images, labels, stddev=value, seed=seed)
        elif kind == "distortion":
            made = noise_set(reference, images, labels, distortion=value, seed=seed)
        else:
            raise ValueError(f"noise row {kind!r}: expected stddev, distortion or matched")
        made_noise.append((kind, made))
    magnified = [magnified_set(source, value) for value in magnify for source in sources]
    if table == 4:
        first = [made for kind, made in made_noise if kind == "matched"]
        rest = [made for kind, made in made_noise if kind != "matched"]
        rows = [*sources, *first, *magnified, *rest]
    else:
        rows = [*sources, *magnified, *(made for _, made in made_noise)]
    if clean_row:
        rows.append(clean_set(images, labels, name=CLEAN_ROW))
    notes = [
        "Adversarial rows: success against the model they were made for "
        + ", ".join(f"{s.name} {s.success_rate:.1%}" for s in sources)
        + "; failures stay unperturbed and are not counted in the distortion.",
    ]
    if made_noise:
        notes.append(NOISE_NOTE)
    if any(kind == "matched" for kind, _ in noise):
        notes.append(
            f"Matched noise: distortion {matched:.4f}, the adversarial rows' average (the "
            "paper's 'stddev 0.06' row)."
            if not math.isnan(matched)
            else "Matched noise: left out, no adversarial example was found to match."
        )
    notes += [magnified_note(value) for value in magnify]
    return rows, notes


def transfer_study(
    models: Mapping[str, nn.Module],
    images: Tensor,
    labels: Tensor,
    attack: Mapping[str, Any],
    *,
    table: int = 2,
    checkpoints: Mapping[str, str | Path] | None = None,
    cache: AdversarialCache | None = None,
    noise: Sequence[tuple[str, float | None]] | None = None,
    magnify: Sequence[float] | None = None,
    clean_row: bool = True,
    splits: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    split_distortions: Mapping[str, float] | None = None,
    split_distortion_note: str = "the average of its adversarial examples",
    described: str = "",
    grid_examples: int = 8,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> TransferStudy:
    """Szegedy et al. (2013), Table 2 (``table=2``) or Tables 3 and 4 (``table=4``).

    An adversarial set is made for every model of ``models`` (cached by the contents of its
    file in ``checkpoints`` when a ``cache`` is given), then every model's error is measured
    on every set, on the ``noise`` rows (default :data:`DEFAULT_NOISE`), the ``magnify``
    rows (default :data:`DEFAULT_MAGNIFY`) and the clean examples. For ``table=4``,
    ``splits`` (``{"P1": (x, y), "P2": ..., "test": ...}``) gives Table 3: each model's
    error on each split, with ``split_distortions`` (default: each model's adversarial
    set's average) as its last column, described by ``split_distortion_note``. ``report``
    receives a line per adversarial set (made, or read from the cache).
    """
    if table not in (2, 4):
        raise ValueError(f"table={table}: expected 2 or 4")
    if not models:
        raise ValueError("transfer_study: no models")
    attack = check_transfer_attack(attack)
    noise = list(DEFAULT_NOISE[table] if noise is None else noise)
    magnify = list(DEFAULT_MAGNIFY[table] if magnify is None else magnify)
    described = described or f"{len(labels)} examples"
    sources: list[PerturbedSet] = []
    for index, (name, model) in enumerate(models.items(), start=1):
        made = adversarial_set(
            model,
            images,
            labels,
            attack,
            name=name,
            checkpoint=(checkpoints or {}).get(name),
            cache=cache,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
        if report is not None:
            how = "from the cache" if made.cached else "made"
            report(
                f"[{index}/{len(models)}] {name}: {how}, success {made.success_rate:.1%}, "
                f"distortion {made.mean_distortion:.4f} ({made.path})"
            )
        sources.append(made)
    rows, notes = transfer_rows(
        sources,
        next(iter(models.values())),
        images,
        labels,
        table=table,
        noise=noise,
        magnify=magnify,
        clean_row=clean_row,
        seed=seed,
    )
    matrix = transfer_table(
        models,
        rows,
        batch_size=max(batch_size, 1000),
        title=(
            f"Table {table}: error of each column model on the examples made for each row "
            f"({described}, {attack['name']})"
        ),
        notes=notes,
        progress=progress,
    )
    by_split = None
    if table == 4:
        if not splits:
            raise ValueError("transfer_study: table=4 needs the splits of Table 3")
        by_split = split_errors(
            models,
            splits,
            distortions=split_distortions
            if split_distortions is not None
            else {s.name: s.mean_distortion for s in sources},
            title=(
                "Table 3: each model's error on "
                + ", ".join(splits)
                + f"; distortion: {split_distortion_note} ({described})"
            ),
        )
    grid_sets = sources + [row for row in rows if row.kind == "magnified"]
    grid = example_grid(grid_sets, models, count=grid_examples, title=f"Table {table}: examples")
    return TransferStudy(
        table=table,
        matrix=matrix,
        by_split=by_split,
        sources=sources,
        rows=rows,
        grid=grid,
        described=described,
    )
