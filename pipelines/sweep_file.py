"""W&B sweep files read, checked and drawn from by W&B's own engine (the ``sweeps`` package).

A sweep file is the YAML that ``wandb sweep FILE`` takes. It is read with the loader
``wandb sweep`` uses (PyYAML's ``safe_load``) and checked against the engine's JSON schema
and its own checks (min below max, probabilities, deprecated distributions), each problem
reported as ``FILE: KEY: problem``. The points come from the engine, as a W&B sweep
controller draws them: ``sweeps.next_runs`` (grid: the engine's order; random: its samplers;
bayes: its Gaussian-process model of the results so far). On top of that, this module checks
what running the file here needs: a command that runs ``intriguing train`` with the swept
``key=value`` words, a ``run_cap`` for random and bayes search (W&B's controller would draw
forever), a metric for bayes search and ``early_terminate``, flat dotted parameter names and
no ``None`` values (an agent passes the word ``None``). It builds for each point the exact
command line a ``wandb agent`` builds. Nothing here trains or imports torch.

Seeding: the engine draws from Python's and NumPy's global generators. Here they are seeded
for every draw (``seed`` for a random search, ``seed`` and the point's number for each bayes
point) and restored afterwards, so the same file, seed and results give the same points
again: an interrupted sweep draws the points it drew before and reuses their runs. A W&B
sweep controller draws with its own generator state: the same distributions, other points.

Needs the optional extra ``sweep`` (``pip install 'intriguing[sweep]'``): W&B's engine
``sweeps`` and scikit-learn (bayes search), jsonschema and jsonref (its schema).
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from intriguing.configs import ConfigError

try:
    with warnings.catch_warnings():
        # sweeps 0.3.0 declares its pydantic model with v1-style settings, which pydantic 2
        # reports once at import (a UserWarning and a deprecation); the model works the same.
        warnings.simplefilter("ignore")
        import sweeps
        from sweeps.config.schema import (
            check_for_deprecated_distributions,
            dereferenced_sweep_config_jsonschema,
            fill_parameter,
            validate_categorical_prob,
            validate_min_max,
            validator,
        )
        from sweeps.params import HyperParameter
    ENGINE_MISSING: str | None = None
except ImportError as missing:  # the optional extra is not installed
    ENGINE_MISSING = (
        f"sweeps run on W&B's sweep engine, which is not installed ({missing}): "
        "pip install 'intriguing[sweep]'"
    )

# The command macros a W&B agent fills in that `intriguing train` can read.
ARGUMENT_MACROS = ("args_no_hyphens", "args")
AGENT_VALUES = {"env": ["/usr/bin/env"], "interpreter": ["python"]}
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")  # as wandb's SWEEP_COMMAND_ENV_VAR_REGEX
METHODS = ("grid", "random", "bayes")
# The largest grid drawn without a run_cap.
GRID_LIMIT = 100_000


def require_engine() -> None:
    """Raise :class:`ConfigError` (one line, naming the extra) when ``sweeps`` is missing."""
    if ENGINE_MISSING is not None:
        raise ConfigError(ENGINE_MISSING)


@dataclass(frozen=True)
class Parameter:
    """One entry of ``parameters`` as the engine filled it in: its distribution and
    settings (with the engine's defaults, e.g. ``q: 1.0``)."""

    name: str
    distribution: str
    settings: dict[str, Any]

    @property
    def constant(self) -> bool:
        return self.distribution == "constant"


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file. ``config`` is the engine's filled-in view of it (``SweepConfig``)."""

    path: Path
    name: str
    method: str
    metric: str | None
    goal: str
    parameters: tuple[Parameter, ...]  # sorted by name, as the engine orders them
    command: tuple[str, ...]
    run_cap: int | None
    project: str | None = None
    entity: str | None = None
    early_terminate: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def swept(self) -> list[str]:
        """Names of the parameters that vary from point to point."""
        return [p.name for p in self.parameters if not p.constant]


def _fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}")


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: the first problem, as ``PATH: KEY: problem`` (also when the ``sweep``
            extra is not installed).
    """
    require_engine()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        reason = str(error).replace("\n", " ")
        raise ConfigError(f"{path}: not valid YAML ({reason})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sweep keys at the top level")
    _check_schema(path, raw)

    method = raw["method"]
    if method not in METHODS:  # custom: a scheduler on W&B Launch, not a local engine
        raise _fail(path, "method", f"{method} search needs W&B Launch (here: grid, random, bayes)")
    metric = raw.get("metric") or {}
    if method == "bayes" and not metric:
        raise _fail(path, "metric", "bayes search needs metric (the engine models it)")
    if "early_terminate" in raw and not metric:
        raise _fail(path, "metric", "early_terminate needs metric (hyperband compares it)")
    run_cap = raw.get("run_cap")
    if method != "grid" and run_cap is None:
        raise _fail(
            path, "run_cap", f"{method} search needs run_cap (the number of points to draw)"
        )
    parameters = _read_parameters(path, raw["parameters"], grid=method == "grid")
    command = _read_command(path, raw.get("command"), raw.get("program"))
    name = raw.get("name") or path.stem
    if "/" in name or name in {".", ".."}:
        raise _fail(path, "name", f"{name!r} cannot name a folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        config = dict(sweeps.SweepConfig(raw))
    return Sweep(
        path=path,
        name=name,
        method=method,
        metric=metric.get("name"),
        goal=config.get("metric", {}).get("goal", "minimize"),
        parameters=tuple(parameters),
        command=tuple(command),
        run_cap=run_cap,
        project=raw.get("project"),
        entity=raw.get("entity"),
        early_terminate=config.get("early_terminate"),
        raw=raw,
        config=config,
    )


def _check_schema(path: Path, raw: dict[str, Any]) -> None:
    """The engine's JSON schema, its first error named by key."""
    schema = dereferenced_sweep_config_jsonschema
    for error in validator.iter_errors(raw):
        where = [str(part) for part in error.absolute_path]
        if error.validator == "required":
            missing = [key for key in error.validator_value if key not in error.instance]
            raise _fail(path, ".".join([*where, missing[0]]), "missing")
        if error.validator == "additionalProperties" and not where:
            unknown = sorted(set(raw) - set(schema["properties"]))
            raise _fail(path, unknown[0], "not a W&B sweep key")
        if len(where) == 2 and where[0] == "parameters":
            raise _parameter_problem(path, where[1], error.instance)
        raise _fail(path, ".".join(where) or "sweep", error.message)
    if "parameters" not in raw:
        raise _fail(path, "parameters", "missing (a mapping of config keys to their values)")
    for name, settings in raw["parameters"].items():
        for check in (
            validate_min_max,
            validate_categorical_prob,
            check_for_deprecated_distributions,
        ):
            try:
                check(name, settings)
            except ValueError as error:
                problem = str(error.args[0]).removeprefix("Parameter ").removeprefix(f"{name}")
                raise _fail(path, f"parameters.{name}", problem.lstrip(": ")) from None


def _parameter_problem(path: Path, name: str, settings: Any) -> ConfigError:
    """Which of the engine's parameter schemas a bad entry meant, and what it lacks."""
    key = f"parameters.{name}"
    if not isinstance(settings, dict):
        return _fail(path, key, "expected a mapping (values: [...], value: ..., or min/max)")
    definitions = dereferenced_sweep_config_jsonschema["definitions"]
    by_distribution = {}
    for definition in definitions.values():
        for option in definition.get("anyOf", [definition]):
            for distribution in (
                option.get("properties", {}).get("distribution", {}).get("enum", [])
            ):
                by_distribution.setdefault(distribution, definition)
    wanted = settings.get("distribution")
    if wanted is None:
        return _fail(path, key, "give values, value, or min and max (with a distribution)")
    if wanted not in by_distribution:
        known = ", ".join(sorted(by_distribution))
        return _fail(path, key, f"unknown distribution {wanted!r} (W&B's: {known})")
    errors = list(type(validator)(by_distribution[wanted]).iter_errors(settings))
    inner = [e for error in errors for e in (error.context or [error])]
    error = min(inner, key=lambda e: (e.validator == "enum", len(e.message)))
    where = ".".join([key, *(str(part) for part in error.absolute_path)])
    hint = ""
    if isinstance(error.instance, str) and re.fullmatch(r"[-+.\de]+", error.instance):
        hint = f" (YAML 1.1 reads {error.instance} as text: write it with a decimal point)"
    return _fail(path, where, f"{error.message}{hint}")


def _read_parameters(path: Path, parameters: dict[str, Any], *, grid: bool) -> list[Parameter]:
    grid_types = (
        HyperParameter.CATEGORICAL,
        HyperParameter.CONSTANT,
        HyperParameter.INT_UNIFORM,
        HyperParameter.Q_UNIFORM,
    )
    checked = []
    for name in sorted(parameters):
        key = f"parameters.{name}"
        settings = parameters[name]
        if "parameters" in settings:
            raise _fail(
                path,
                key,
                "nested parameters reach the command as one dict-valued word, which "
                f"`intriguing train` does not read; write dotted keys ({name}.KEY)",
            )
        kind, filled = fill_parameter(name, settings)
        if grid and HyperParameter(name, settings).type not in grid_types:
            raise _fail(
                path,
                key,
                f"distribution {filled['distribution']} cannot be a grid axis (W&B's grid takes "
                "categorical, constant, int_uniform, q_uniform; use method: random)",
            )
        for value in filled.get("values", [filled.get("value", 0)]):
            _check_word_value(path, key, value)
        checked.append(Parameter(name, filled.get("distribution", kind), filled))
    return checked


def _check_word_value(path: Path, key: str, value: Any) -> None:
    """A value must survive the agent's formatting: ``str(value)`` read back as YAML."""
    if value is None:
        raise _fail(
            path,
            key,
            "W&B agents pass None as the word 'None', which reads back as text; write the "
            "string 'null' (value: 'null') for an empty setting",
        )
    if isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            _check_word_value(path, key, item)


def _read_command(path: Path, command: Any, program: Any) -> list[str]:
    if command is None:
        raise _fail(
            path,
            "command",
            "missing: give the command a W&B agent runs, e.g. [${env}, intriguing, train, "
            "experiment=NAME, ${args_no_hyphens}]",
        )
    if not all(isinstance(w, str | int | float) for w in command):
        raise _fail(path, "command", "must be a list of words")
    words = [str(w) for w in command]
    macros = [w[2:-1] for w in words if w.startswith("${") and w.endswith("}")]
    for macro in macros:
        if macro.startswith("envvar:"):
            continue
        if macro == "program" and not isinstance(program, str):
            raise _fail(path, "program", "${program} in command needs a program")
        if macro not in (*ARGUMENT_MACROS, *AGENT_VALUES, "program"):
            raise _fail(
                path,
                "command",
                f"${{{macro}}}: `intriguing train` reads key=value words: use "
                "${args_no_hyphens} (or ${args})",
            )
    if sum(macro in ARGUMENT_MACROS for macro in macros) != 1:
        raise _fail(path, "command", "needs exactly one ${args_no_hyphens} (the swept words)")
    train_overrides(expand_command(words, {}, program=program), path=path)  # checks the shape
    return words


def agent_words(values: Mapping[str, Any], macro: str = "args_no_hyphens") -> list[str]:
    """``${args_no_hyphens}`` (or ``${args}``) as a W&B agent fills it in: one
    ``key=str(value)`` word per parameter, in the order of ``values``."""
    prefix = "--" if macro == "args" else ""
    return [f"{prefix}{key}={value}" for key, value in values.items()]


def expand_command(
    command: Sequence[str],
    values: Mapping[str, Any],
    *,
    program: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The command line a W&B agent runs for a point: ``${envvar:NAME}`` replaced inside
    words, ``${env}`` by /usr/bin/env, ``${interpreter}`` by python, ``${program}`` by the
    sweep's program and the argument macro by :func:`agent_words`."""
    environ = os.environ if environ is None else environ
    argv: list[str] = []
    for word in command:
        word = _ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), str(word))
        if word.startswith("${") and word.endswith("}"):
            macro = word[2:-1]
            if macro in ARGUMENT_MACROS:
                argv += agent_words(values, macro)
            elif macro == "program":
                argv += [program] if program else []
            else:
                argv += AGENT_VALUES.get(macro, [])
        else:
            argv.append(word)
    return argv


def train_overrides(argv: Sequence[str], *, path: Path | str = "command") -> list[str]:
    """The ``key=value`` words after ``intriguing train`` (or its ``python -m`` form).

    Raises:
        ConfigError: ``argv`` does not run ``intriguing train``, or a word is not key=value.
    """
    for index, word in enumerate(argv[:-1]):
        runs_train = argv[index + 1] == "train" and (
            Path(word).name == "intriguing"
            or (word == "intriguing.cli.main" and index > 0 and argv[index - 1] == "-m")
        )
        if runs_train:
            words = list(argv[index + 2 :])
            for override in words:
                if "=" not in override:
                    raise _fail(
                        Path(path), "command", f"{override!r} is not a key=value word of train"
                    )
            return words
    raise _fail(
        Path(path),
        "command",
        f"the local runner runs `intriguing train ...`; got {' '.join(argv)!r}",
    )


@contextmanager
def _seeded(seed: str) -> Iterator[None]:
    """The engine's draws from Python's and NumPy's global generators, seeded by ``seed``;
    both generators are restored afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(random.getrandbits(32))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _plain(value: Any) -> Any:
    """A drawn value as a W&B agent receives it (JSON types): NumPy scalars and arrays out."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def values_of(run: sweeps.SweepRun) -> dict[str, Any]:
    """``{parameter: value}`` of an engine run, in name order."""
    return {name: _plain(run.config[name]["value"]) for name in sorted(run.config)}


def points(sweep: Sweep, *, seed: int = 0) -> list[dict[str, Any]]:
    """The points of a grid or random search, each ``{parameter: value}`` in name order.

    Grid: the engine's grid (parameters sorted by name, the last varying fastest;
    int_uniform min..max, q_uniform ``np.arange(min, max, q)``), at most ``run_cap``.
    Random: ``run_cap`` draws of the engine's samplers, seeded with ``seed``.

    Raises:
        ValueError: ``sweep.method`` is bayes (its points depend on results: :func:`next_point`),
            or a grid without run_cap has more than :data:`GRID_LIMIT` points.
    """
    if sweep.method == "bayes":
        raise ValueError("sweep.method: bayes points depend on earlier results; use next_point")
    count = sweep.run_cap or GRID_LIMIT
    with _seeded(str(seed)), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        drawn = sweeps.next_runs(sweep.config, [], n=count)
    found = [values_of(run) for run in drawn if run is not None]
    if sweep.run_cap is None and len(found) == GRID_LIMIT:
        raise ValueError(f"sweep.run_cap: the grid has more than {GRID_LIMIT} points; set run_cap")
    return found


def next_point(
    sweep: Sweep, runs: Sequence[sweeps.SweepRun], *, seed: int, index: int
) -> dict[str, Any]:
    """Point ``index`` (from 1) of a bayes search: the engine's choice given ``runs`` (the
    sweep's runs so far, with their states, histories and summary metrics), seeded with
    ``seed`` and ``index``. A grid or random search's point is the same as in :func:`points`.
    """
    if sweep.method != "bayes":
        return points(sweep, seed=seed)[index - 1]
    with _seeded(f"{seed}-{index}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's convergence notes on few results
        run = sweeps.next_run(sweep.config, list(runs))
    assert run is not None  # bayes always suggests a point
    return values_of(run)
