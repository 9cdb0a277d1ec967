"""Compose a run's configuration: schema, then YAML files, then ``key=value`` overrides.

The command line takes two kinds of words, the form a W&B sweep passes with
``${args_no_hyphens}``:

- ``GROUP=NAME`` (no dot in the key) selects ``configs/GROUP/NAME.yaml`` for one of the
  groups ``experiment``, ``model``, ``optim``, ``data``, ``trainer``, ``logger``; an
  experiment file names its groups under ``defaults:`` and sets anything else below them;
- ``a.b.c=VALUE`` sets one key; VALUE is parsed as YAML (``[100,100]``, ``null``, ``1e-3``).

Every step is validated against :class:`configs.schema.ExperimentConfig`; a wrong key or type
raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intriguing.configs.schema import ExperimentConfig

CONFIG_ROOT = Path(__file__).resolve().parent
GROUPS: tuple[str, ...] = ("model", "optim", "data", "trainer", "logger")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the problem."""


def available(group: str) -> list[str]:
    """Names of the YAML files shipped for a group (``experiment``, ``model``, ...)."""
    return sorted(p.stem for p in (CONFIG_ROOT / group).glob("*.yaml"))


def _group_file(group: str, name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return candidate
    path = CONFIG_ROOT / group / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(available(group)) or "none"
        raise ConfigError(f"{group}={name}: no such {group} config (available: {choices})")
    return path


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as error:  # YAML syntax errors come from the parser OmegaConf uses
        reason = str(error).split("\n")[0]
        raise ConfigError(f"{path}: not valid YAML ({reason})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return loaded


def _describe(error: OmegaConfBaseException, source: str) -> str:
    """One line from an OmegaConf error: the full key first, then what is wrong."""
    message = str(error).split("\n")[0].strip()
    key = getattr(error, "full_key", None)
    return f"{key}: {message} ({source})" if key else f"{message} ({source})"


def _merge(config: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        merged = OmegaConf.merge(config, update)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, source)) from None
    assert isinstance(merged, DictConfig)
    return merged


def _parse_overrides(words: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Split words into group selections and ``dotted.key=value`` assignments."""
    groups: dict[str, str] = {}
    assignments: list[str] = []
    for word in words:
        key, sep, raw = word.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"{word!r}: expected key=value")
        if "." not in key and key in (*GROUPS, "experiment"):
            groups[key] = raw
        else:
            assignments.append(f"{key}={raw}")
    return groups, assignments


def compose(overrides: Sequence[str] = (), experiment: str | None = None) -> DictConfig:
    """The validated configuration for ``overrides`` (command-line words ``key=value``)."""
    groups, assignments = _parse_overrides(overrides)
    experiment = groups.pop("experiment", experiment)
    config = OmegaConf.structured(ExperimentConfig)

    body: dict[str, Any] = {}
    selected: dict[str, str] = {}
    if experiment is not None:
        path = _group_file("experiment", experiment)
        body = _load_yaml(path)
        defaults = body.pop("defaults", {}) or {}
        if not isinstance(defaults, dict) or set(defaults) - set(GROUPS):
            unknown = sorted(set(defaults) - set(GROUPS)) if isinstance(defaults, dict) else []
            raise ConfigError(
                f"{path}: defaults must map groups ({', '.join(GROUPS)}) to names"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        selected.update({k: str(v) for k, v in defaults.items()})
        body.setdefault("name", Path(experiment).stem)
    selected.update(groups)

    for group in GROUPS:
        if group in selected:
            path = _group_file(group, selected[group])
            config = _merge(config, {group: _load_yaml(path)}, str(path))
    if body:
        config = _merge(config, body, f"experiment={experiment}")
    for assignment in assignments:
        try:
            update = OmegaConf.from_dotlist([assignment])
        except Exception as error:  # a value the YAML parser rejects
            raise ConfigError(f"{assignment}: cannot parse the value ({error})") from None
        config = _merge(config, update, f"override {assignment}")
    _resolve_all(config)
    return config


def _resolve_all(config: DictConfig) -> None:
    """Resolve interpolations now, so that a broken one fails here with its key."""
    try:
        OmegaConf.resolve(config)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, "interpolation")) from None


def to_yaml(config: DictConfig) -> str:
    return OmegaConf.to_yaml(config)


def to_container(config: DictConfig) -> dict[str, Any]:
    """Plain dict (enums as their names), as logged to W&B and written beside a run."""
    container = OmegaConf.to_container(config, resolve=True, enum_to_str=True)
    assert isinstance(container, dict)
    return container  # type: ignore[return-value]


def to_object(config: DictConfig) -> ExperimentConfig:
    """The typed dataclass instance (for code that wants attribute types checked by tools)."""
    obj = OmegaConf.to_object(config)
    assert isinstance(obj, ExperimentConfig)
    return obj
