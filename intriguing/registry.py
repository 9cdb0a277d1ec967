"""Registries of named components, the machinery shared by attacks, model families and data sets.

In the style of timm's ``register_model``: a component is registered once under a name with
what describes it (an *entry*: its typed config, its class or builder, its properties), and
the factory, the config schema's choices and validation, the command line's choices and the
report's labels all read the registry. One :class:`Registry` per kind of component:
:mod:`attacks.registry`, :mod:`trainers.families`, :mod:`datamodules.datasets`.

Built-in components are declared by ``"module:attribute"`` strings and imported only when
built, so that the command line's ``--help`` and config composition import no torch.
Components of the kind's package that register themselves with a decorator in their own
module are found by importing the package's modules the first time a name is not known
(:meth:`Registry.get`); a user's own component registers itself when the user's module is
imported. This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Generic, TypeVar

E = TypeVar("E")


def qualified(target: object) -> str:
    """``"module:qualname"`` of a class or function, or the string itself."""
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", "?")
    return f"{module}:{getattr(target, '__qualname__', repr(target))}"


def load_target(target: object) -> Any:
    """``target`` itself, or the attribute that a ``"module:attribute"`` string names (imported
    now).

    Raises:
        ValueError: for a string without ``":"``.
    """
    if not isinstance(target, str):
        return target
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"target {target!r}: expected 'module:attribute'")
    value: Any = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


def field_default(config: type, name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``config`` (a new object each call
    for a ``default_factory``), so that other dataclasses can take a default from it.

    Raises:
        TypeError: when ``config`` is not a dataclass, or the field has no default.
        KeyError: when ``config`` has no field ``name``.
    """
    if not (isinstance(config, type) and is_dataclass(config)):
        raise TypeError(f"config {config!r}: expected a dataclass")
    for item in fields(config):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
            raise TypeError(f"{config.__name__}.{name} has no default")
    raise KeyError(f"{config.__name__} has no field {name!r}")


def one_of(names: Sequence[str]) -> str:
    """``"one of a, b, c"``: the choices in an error message."""
    return f"one of {', '.join(names)}"


def either(names: Sequence[str]) -> str:
    """``"a, b or c"``: the choices in an error message."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class Registry(Generic[E]):
    """Entries of one kind of component by name, in the order they were registered.

    Args:
        kind: what a component is, for messages (``"attack"``, ``"model family"``).
        key: the config key that names one (``"attack.name"``, ``"model.family"``): errors
            start with it.
        package: the package whose modules are imported to find components that register
            themselves there (``"intriguing.attacks"``).
        expected: writes the choices in the message for an unknown name (:func:`one_of`).
    """

    def __init__(
        self,
        kind: str,
        key: str,
        package: str,
        *,
        expected: Callable[[Sequence[str]], str] = one_of,
    ) -> None:
        self.kind, self.key, self.package, self.expected = kind, key, package, expected
        self.entries: dict[str, E] = {}
        self._targets: dict[str, str] = {}
        self._discovered = False

    def add(self, name: str, entry: E, target: object) -> None:
        """Register ``entry`` under ``name``; registering an equal entry or the same ``target``
        again (a module imported twice) replaces it.

        Raises:
            ValueError: for an empty name, or one taken by another target.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name {name!r}: expected a non-empty string")
        known = self.entries.get(name)
        before = self._targets.get(name)
        if known is not None and known != entry and before != qualified(target):
            raise ValueError(f"{self.kind} name {name!r}: already registered for {before}")
        self.entries[name] = entry
        self._targets[name] = qualified(target)

    def remove(self, name: str) -> E:
        """Unregister ``name`` (a component registered for a while, as in tests); returns its
        entry.

        Raises:
            KeyError: when ``name`` is not registered.
        """
        self._targets.pop(name, None)
        return self.entries.pop(name)

    def discover(self) -> None:
        """Import every module of the package once, so that components declared in their own
        module with a decorator are registered."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")

    def get(self, name: object) -> E:
        """The entry registered as ``name`` (the package's modules are imported first when
        ``name`` is not yet known).

        Raises:
            ValueError: ``"KEY 'name': expected one of ..."`` (see ``expected``), when none is
                registered.
        """
        if str(name) not in self.entries:
            self.discover()
        entry = self.entries.get(str(name))
        if entry is None:
            raise ValueError(f"{self.key} {name!r}: expected {self.expected(self.names())}")
        return entry

    def names(self, keep: Callable[[E], bool] | None = None) -> tuple[str, ...]:
        """Every registered name (those whose entry ``keep`` accepts), importing the package's
        components first."""
        self.discover()
        return self.declared(keep)

    def declared(self, keep: Callable[[E], bool] | None = None) -> tuple[str, ...]:
        """The names registered so far, importing nothing: the built-ins declared by strings
        and those of modules already imported."""
        return tuple(n for n, e in self.entries.items() if keep is None or keep(e))


class Names:
    """Registered names as a lazy, read-only sequence, for argparse's ``choices``: the
    registry is searched (importing its components) only when a name is checked or listed,
    so that ``--help`` stays light.

    Args:
        names: returns the names when called.
        key: what makes two such sequences equal (the same registry and filter).
    """

    def __init__(self, names: Callable[[], tuple[str, ...]], key: Hashable) -> None:
        self._get, self._key = names, key

    def _names(self) -> tuple[str, ...]:
        return self._get()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Names):
            return type(self) is type(other) and self._key == other._key
        return isinstance(other, tuple) and self._names() == other

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r})"
