"""Registries of named components, the machinery shared by attacks, model families and data sets.

In the style of timm's ``register_model``: a component is registered once under a name with
what describes it (an *entry*: its typed config, its class or builder, its properties), and
the factory, the config schema's choices and validation, the command line's choices and the
report's labels all read the registry. One :class:`Registry` per kind of component:
:mod:`attacks.registry`, :mod:`trainers.families`, :mod:`datamodules.datasets`.

A config section becomes its object through :func:`instantiate`, or a :class:`Binding` that
declares the section's target once: each key is the keyword parameter of the same name, with
one default (the config's; :func:`drifted_defaults` finds a constructor that disagrees), and
no hand-written key-by-key mapping.

Built-in components are declared by ``"module:attribute"`` strings and imported only when
built, so that the command line's ``--help`` and config composition import no torch.
Components of the kind's package that register themselves with a decorator in their own
module are found by importing the package's modules the first time a name is not known
(:meth:`Registry.get`); a user's own component registers itself when the user's module is
imported. This module imports nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

E = TypeVar("E")
C = TypeVar("C")


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


@contextmanager
def folder_on_path(folder: str | Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the block (``python file.py``'s view, so that a
    user's file can import its siblings); ``None``: nothing changes."""
    if folder is None:
        yield
        return
    entry = str(Path(folder).resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def import_components(spec: str) -> ModuleType:
    """Import a user's module: an importable module (``my_pkg.attacks``) or a ``.py`` file
    (``my_callbacks.py``, relative to the working directory), imported once per process under
    its file name without the suffix (a private name when another module holds that name),
    with its folder on ``sys.path`` while it runs
    (:func:`folder_on_path`). The components it registers (attacks, model families, data
    sets, callbacks) can then be named in configs.

    Raises:
        ValueError: naming ``spec``, for a file that does not exist or cannot be loaded.
        ImportError: what importing the module raises (naming the missing module).
    """
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec!r}: no such file")
    name = path.stem
    known = sys.modules.get(name)
    if known is not None:
        if Path(getattr(known, "__file__", "") or "").resolve() == path.resolve():
            return known
        # Another module holds the name (a library's, another folder's file): keep it.
        name = f"_intriguing_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
    loaded = importlib.util.spec_from_file_location(name, path)
    if loaded is None or loaded.loader is None:
        raise ValueError(f"{spec!r}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(loaded)
    sys.modules[name] = module
    try:
        with folder_on_path(path.parent):
            loaded.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


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


def plain(value: Any) -> Any:
    """A value as a config holds it, for comparing defaults: tuples and lists as lists (item
    by item), enums as their values, anything else as it is."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def keyword_parameters(target: object) -> dict[str, inspect.Parameter] | None:
    """The parameters of ``target`` (a class: its constructor's; a function; or
    ``"module:attribute"``) that a keyword can give, by name; ``None`` when ``target`` takes
    ``**kwargs`` (any keyword)."""
    parameters = inspect.signature(load_target(target)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p for p in parameters if p.kind in named}


def instantiate(
    target: object,
    values: Mapping[str, Any],
    *,
    section: str | None = None,
    exclude: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    **extra: Any,
) -> Any:
    """``target(**arguments)``: a config section made an object, in the manner of Hydra's and
    jsonargparse's ``instantiate``: every key of ``values`` is the keyword argument of the
    same name (or of the name ``rename`` gives it), save the keys in ``exclude``, with the
    ``extra`` keyword arguments (what the section does not hold: the run's seed, a folder).

    Args:
        target: a class or function, or ``"module:attribute"`` (imported now).
        values: the section's keys and values (plain: ``configs.to_container``'s).
        section: the section's dotted config key, for messages (``"backfeed"``).
        exclude: keys that are not parameters by design (``enabled`` of an on/off
            section); they are not passed, and ``extra`` may give a parameter of that name.
        rename: config key -> parameter name, where the two differ.
        extra: more keyword arguments.

    Returns:
        What ``target`` returns.

    Raises:
        TypeError: naming the config key and the target, for a key (renamed or not) that is
            not a keyword parameter of ``target``, a key given both by ``values`` and by
            ``extra``, and a rename onto the name of another key.
    """
    return load_target(target)(
        **arguments(target, values, section=section, exclude=exclude, rename=rename, **extra)
    )


def arguments(
    target: object,
    values: Mapping[str, Any],
    *,
    section: str | None = None,
    exclude: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The keyword arguments :func:`instantiate` calls ``target`` with (same arguments and
    errors), without calling it."""
    rename = dict(rename or {})
    skipped = set(exclude)
    accepted = keyword_parameters(target)
    where = f"{section}." if section else ""
    passed: dict[str, Any] = {}
    for key, value in values.items():
        if key in skipped:
            continue
        name = rename.get(key, key)
        called = f"{where}{key}" + (f" (parameter {name})" if name != key else "")
        if accepted is not None and name not in accepted:
            raise TypeError(
                f"{called}: not a parameter of {qualified(target)}; make it one, or exclude "
                "the key where the section is instantiated"
            )
        if name in passed or name in extra:
            raise TypeError(f"{called}: given twice to {qualified(target)}")
        passed[name] = value
    for name in extra:
        if accepted is not None and name not in accepted:
            raise TypeError(f"{name}: not a parameter of {qualified(target)}")
    return {**passed, **extra}


@dataclass(frozen=True, eq=False)
class Binding:
    """How one config section becomes its object, declared once: every key of the section
    is the keyword parameter of the same name of ``target`` (:func:`instantiate`), save the
    keys of ``exclude`` (each with the reason it is not a parameter) and those ``rename``
    gives another name. A key added to the section must be a parameter or be excluded here:
    :meth:`unbound` lists those that are neither (tests check every schema section).

    Attributes:
        section: the section's dotted config key (``"backfeed"``, ``"model.autoencoder"``).
        target: the class or function, or ``"module:attribute"``.
        exclude: config key -> why it is not a parameter (``{"enabled": "switches it on"}``).
        rename: config key -> the parameter's name, where the two differ.
    """

    section: str
    target: object
    exclude: Mapping[str, str] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, values: Mapping[str, Any], **extra: Any) -> Any:
        """``target`` called with the section's ``values`` and ``extra`` (:func:`instantiate`,
        whose ``TypeError`` it raises)."""
        return load_target(self.target)(**self.arguments(values, **extra))

    def arguments(self, values: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """The keyword arguments ``target`` is called with (:func:`arguments`)."""
        return arguments(
            self.target,
            values,
            section=self.section,
            exclude=self.exclude,
            rename=self.rename,
            **extra,
        )

    def unbound(self, keys: Iterable[str]) -> list[str]:
        """The section keys among ``keys`` that are neither a parameter of ``target`` (under
        their renamed name) nor excluded, and the excluded or renamed keys not among
        ``keys`` (stale declarations), each as a message."""
        keys = list(keys)
        accepted = keyword_parameters(self.target)
        problems = [
            f"{self.section}.{key}: not a parameter of {qualified(self.target)}, nor excluded"
            for key in keys
            if key not in self.exclude
            and accepted is not None
            and self.rename.get(key, key) not in accepted
        ]
        for declared in (*self.exclude, *self.rename):
            if declared not in keys:
                problems.append(f"{self.section}.{declared}: declared, but no key of the section")
        return problems

    def drifted_defaults(self, config: type) -> dict[str, tuple[Any, Any]]:
        """``key -> (the config's default, the target's default)`` for each key of the
        dataclass ``config`` that the target takes with another default (compared as
        :func:`plain` values); the config's default is the one runs use."""
        return drifted_defaults(config, self.target, rename=self.rename, skip=self.exclude)


def drifted_defaults(
    config: type,
    target: object,
    *,
    keys: Iterable[str] | None = None,
    rename: Mapping[str, str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, tuple[Any, Any]]:
    """``key -> (the config's default, the target's default)`` for each field of the
    dataclass ``config`` (those of ``keys``, else all but ``skip``) that is a keyword
    parameter of ``target`` (named ``rename[key]`` if renamed) with a default that is not
    the field's (compared as :func:`plain` values). Fields and parameters without a default
    are not compared.

    Raises:
        TypeError: when ``config`` is not a dataclass.
    """
    if not (isinstance(config, type) and is_dataclass(config)):
        raise TypeError(f"config {config!r}: expected a dataclass")
    rename = dict(rename or {})
    parameters = keyword_parameters(target) or {}
    skipped = set(skip)
    names = [f.name for f in fields(config)] if keys is None else list(keys)
    drift: dict[str, tuple[Any, Any]] = {}
    for key in names:
        parameter = parameters.get(rename.get(key, key))
        if key in skipped or parameter is None or parameter.default is inspect.Parameter.empty:
            continue
        try:
            wanted = field_default(config, key)
        except TypeError:  # a field without a default
            continue
        if plain(parameter.default) != plain(wanted):
            drift[key] = (wanted, parameter.default)
    return drift


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

    def register(
        self, name: str, make: Callable[[object], E], target: object | None = None
    ) -> Callable[[C], C]:
        """The ``register_*`` decorators' common part: with ``target`` (``"module:attr"``),
        register ``make(target)`` under ``name`` now; returns a decorator that registers
        ``make(component)`` for the class or function it decorates and returns it unchanged.

        Raises:
            ValueError: as :meth:`add`.
        """
        if target is not None:
            self.add(name, make(target), target)

        def decorate(component: C) -> C:
            self.add(name, make(component), component)
            return component

        return decorate

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


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for ``package``, whose public names live in its
    submodules (``modules``: submodule name -> the names it holds) and are imported on first
    use, so that importing a torch-free submodule (a registry) imports no torch.

    Use in a package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, _MODULES,
    __all__)``.

    Raises (from the returned ``__getattr__``):
        AttributeError: for a name no submodule holds.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)  # found directly next time
        return value

    def dir_() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *public})

    return getattr_, dir_
