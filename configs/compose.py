"""Compose a run's configuration: schema, then YAML files, then ``key=value`` overrides.

The command line takes two kinds of words, the form a W&B sweep passes with
``${args_no_hyphens}``:

- ``GROUP=NAME`` (no dot in the key) selects ``configs/GROUP/NAME.yaml`` for one of the
  groups ``experiment``, ``model``, ``optim``, ``data``, ``trainer``, ``logger``; an
  experiment file names its groups under ``defaults:`` and sets anything else below them;
- ``a.b.c=VALUE`` sets one key; VALUE is parsed as YAML (``[100,100]``, ``null``, ``1e-3``).

Every step is validated against :class:`configs.schema.ExperimentConfig` (with a typed section
for each registered model family it does not declare, :mod:`trainers.families`); a wrong key
or type raises :class:`ConfigError` naming the key, and ``model.family`` and ``data.name``
must be registered (:mod:`trainers.families`, :mod:`datamodules.datasets`). An attack section
(``backfeed.generator``, ``evaluation.attack``, ...) is checked against the config of the
attack it names (:mod:`attacks.registry`), key by key and type by type, and written out with
every key of that config; a step that changes a section's attack drops the keys of earlier
steps the new attack does not take (``experiment=backfeed-fc100 backfeed.generator.name=fgsm``
loses L-BFGS's ``search_steps``). A section under ``callbacks`` is checked the same way
against the config of the registered callback it names (:mod:`callbacks.registry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from intriguing.attacks.registry import attack_entry
from intriguing.callbacks.registry import CALLBACKS, switchable_entry
from intriguing.configs.schema import ATTACK_SECTION, ExperimentConfig
from intriguing.datamodules.datasets import dataset_spec
from intriguing.errors import first_line, under_key
from intriguing.registry import import_components
from intriguing.trainers.families import family_entry, family_sections

CONFIG_ROOT = Path(__file__).resolve().parent
GROUPS: tuple[str, ...] = ("model", "optim", "data", "trainer", "logger")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the problem."""


def config_error(section: str, error: ValueError | TypeError) -> ConfigError:
    """The config layer's one-line message for a library error raised while the config
    section ``section`` was turned into an object (a callback, the model, the data).

    Library code names the parameter and the value (``"AdversarialBackfeed: mix_ratio=1.5:
    must be in [0, 1]"``, optionally after the class's name); here the parameter becomes the
    config key (``"backfeed.mix_ratio=1.5: must be in [0, 1]"``). A message that does not
    start with a parameter is kept after the section (``"backfeed: ..."``); a
    :class:`ConfigError` is returned as it is (it names its key already).

    Args:
        section: the dotted config key of the section the object was built from
            (``"backfeed"``, ``"model"``, ``"evaluation"``).
        error: what the library raised.

    Returns:
        The :class:`ConfigError` to raise (``raise config_error(...) from error``).
    """
    if isinstance(error, ConfigError):
        return error
    return ConfigError(under_key(section, first_line(error)))


@contextmanager
def building(section: str) -> Iterator[None]:
    """Turn what the library raises while the config section ``section`` becomes an object
    into :func:`config_error` (the cause kept): ``with building("backfeed"): callback =
    AdversarialBackfeed(...)``. Only :class:`ValueError` and :class:`TypeError`, the errors
    of a bad argument value or type, are turned; anything else passes through.

    Raises:
        ConfigError: naming the config key.
    """
    try:
        yield
    except (ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise config_error(section, error) from error


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
        reason = first_line(error)
        raise ConfigError(f"{path}: not valid YAML ({reason})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return loaded


#: OmegaConf's words for a value of the wrong kind, and what the user should write instead.
_PLAIN_WORDS = (
    ("is not a ListConfig, TupleConfig, list, or tuple", "expected a list, e.g. [a,b] or []"),
    ("Cannot assign str to Dict", "expected a mapping, e.g. {name: fgsm}"),
)


def _describe(error: OmegaConfBaseException, source: str) -> str:
    """One line from an OmegaConf error: the full key first, then what is wrong (in plain
    words where OmegaConf names its node classes)."""
    message = first_line(error)
    for jargon, plain in _PLAIN_WORDS:
        if jargon in message:
            message = plain
    key = getattr(error, "full_key", None)
    return f"{key}: {message} ({source})" if key else f"{message} ({source})"


def _merge(config: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        merged = OmegaConf.merge(config, update)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, source)) from None
    assert isinstance(merged, DictConfig)
    _drop_stale_attack_keys(config, merged, update)
    return merged


def attack_sections(schema: type, prefix: str = "") -> Iterator[str]:
    """The dotted keys of the attack sections of a schema dataclass (fields made with
    :func:`configs.schema.attack_field`), nested dataclasses included."""
    hints = get_type_hints(schema)
    for item in fields(schema):
        key = f"{prefix}{item.name}"
        if item.metadata.get(ATTACK_SECTION):
            yield key
        elif is_dataclass(hints[item.name]):
            yield from attack_sections(hints[item.name], f"{key}.")


def _drop_stale_attack_keys(before: DictConfig, merged: DictConfig, update: Any) -> None:
    """Where ``update`` changed a section's attack, drop the keys the new attack does not
    take that ``update`` did not set itself (those stay, to be refused by name)."""
    for key in attack_sections(ExperimentConfig):
        old, new = OmegaConf.select(before, key), OmegaConf.select(merged, key)
        if old is None or new is None or old.get("name") == new.get("name"):
            continue
        given = OmegaConf.select(OmegaConf.create(update), key)
        given = set(given) if isinstance(given, Mapping | DictConfig) else set()
        try:
            taken = set(attack_entry(str(new.get("name"))).keys)
        except ValueError:
            continue  # refused by name in check_attack
        for stale in set(new) - taken - given - {"name"}:
            del new[stale]


def check_attack(section: Mapping[str, Any], key: str, source: str = "") -> dict[str, Any]:
    """An attack section checked against the config of the attack it names: every key of
    that config, typed (enums as their names; ``null``: the attack's default).

    Raises:
        ConfigError: naming the key, for an attack not registered, a key the attack does
            not take (naming the attack) or a value of the wrong type.
    """
    values = dict(section)
    name = str(values.pop("name", None) or "lbfgs")
    where = f" ({source})" if source else ""
    try:
        entry = attack_entry(name)
        entry.check_keys(values)
    except ValueError as error:
        message = str(error).removeprefix("attack.")
        raise ConfigError(f"{key}.{message}{where}") from None
    container = _typed(entry.config, values, key, source or f"attack {name}")
    for field_name, default in entry.defaults().items():
        if container.get(field_name) is None and _plain(default):
            container[field_name] = list(default) if isinstance(default, tuple) else default
    return {"name": name, **container}


def _typed(config: type, values: Any, key: str, source: str) -> dict[str, Any]:
    """``values`` merged into the dataclass ``config`` (each key checked by name and type),
    as a plain dict with enums as their names.

    Raises:
        ConfigError: naming ``key``'s key, for a key ``config`` lacks or a value of the
            wrong type.
    """
    try:
        typed = OmegaConf.merge(OmegaConf.structured(config), values)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{key}.{_describe(error, source)}") from None
    container = OmegaConf.to_container(typed, enum_to_str=True)
    assert isinstance(container, dict)
    return container  # type: ignore[return-value]


def _plain(value: Any) -> bool:
    """Whether a constructor default can be written into a config (a number, string, bool or
    a tuple of them; enums by value)."""
    if isinstance(value, tuple):
        return all(_plain(item) for item in value)
    return isinstance(value, (bool, int, float, str))


def _with_family_sections(config: DictConfig) -> DictConfig:
    """The schema with a typed section for each registered model family whose section
    :class:`configs.schema.ModelConfig` does not declare (a user's family: ``model.mixer``)."""
    missing = {k: v for k, v in family_sections().items() if k not in config.model}
    if missing:
        with open_dict(config.model):
            for section, settings in missing.items():
                config.model[section] = OmegaConf.structured(settings)
    return config


def _check_names(config: DictConfig) -> None:
    """``model.family`` and ``data.name`` against their registries (trainers.families,
    datamodules.datasets)."""
    for key, lookup in (("model.family", family_entry), ("data.name", dataset_spec)):
        try:
            lookup(OmegaConf.select(config, key))
        except ValueError as error:
            raise ConfigError(str(error)) from None


def _check_attacks(config: DictConfig) -> None:
    for key in attack_sections(ExperimentConfig):
        parent, _, field_name = key.rpartition(".")
        node = OmegaConf.select(config, parent) if parent else config
        node[field_name] = check_attack(node[field_name], key)


def _import_components(config: DictConfig) -> None:
    """Import the modules of ``imports`` (intriguing.registry.import_components), so that
    the components they register are known when the names are checked."""
    for spec in config.imports:
        try:
            import_components(str(spec))
        except (ImportError, ValueError) as error:
            raise ConfigError(f"imports: {first_line(error)}") from None


def _check_callbacks(config: DictConfig) -> None:
    """Each section under ``callbacks`` against the config of the registered callback it
    names (callbacks.registry), key by key and type by type, written out with every key of
    that config; a null section (a callback switched off) stays null."""
    sections = config[CALLBACKS]
    for name in list(sections):
        values = sections[name]
        if values is None:
            continue
        key = f"{CALLBACKS}.{name}"
        try:
            entry = switchable_entry(str(name))
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if not isinstance(values, DictConfig):
            raise ConfigError(f"{key}={values}: expected a mapping of its keys ({{}}: defaults)")
        sections[name] = _typed(entry.config, values, key, f"callback {name}")


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
    config = _with_family_sections(OmegaConf.structured(ExperimentConfig))

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
    _import_components(config)
    _check_names(config)
    _check_attacks(config)
    _check_callbacks(config)
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
