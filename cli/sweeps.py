"""W&B sweep files, run without W&B's servers: reading, points, command lines, result tables.

A sweep file is the YAML that ``wandb sweep FILE`` takes (``method``, ``metric``,
``parameters``, ``command`` with ``${args_no_hyphens}``, ``run_cap``). This module reads it
with the same YAML loader as ``wandb sweep`` (PyYAML's ``safe_load``), checks it, expands it
into points (grid: W&B's order, parameters sorted by name and the last varying fastest;
random: seeded draws from W&B's distributions) and builds, for each point, the exact command
line a ``wandb agent`` builds from the same file: ``${args_no_hyphens}`` becomes one
``key=value`` word per parameter in name order, the value formatted by Python's ``str`` as
the agent does (``backfeed.layers=['input', 'fc1']``, ``backfeed.alternate=True``).
:mod:`cli.sweep` runs those command lines; nothing here trains or imports torch.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from intriguing.analysis.tables import markdown_lines
from intriguing.configs import ConfigError

# Top-level keys of W&B's sweep schema (wandb/sweeps, config/schema.json).
SWEEP_KEYS = frozenset(
    {
        "apiVersion",
        "command",
        "controller",
        "description",
        "early_terminate",
        "entity",
        "image_uri",
        "job",
        "kind",
        "method",
        "metric",
        "metrics",
        "name",
        "parameters",
        "program",
        "project",
        "run_cap",
        "scheduler",
    }
)
LOCAL_METHODS = ("grid", "random")
AGENT_METHODS = ("bayes", "custom")
METRIC_KEYS = frozenset({"name", "goal", "target", "impute", "impute_while_running"})
GOALS = ("minimize", "maximize")
# The command macros a W&B agent fills in that `intriguing train` can read.
ARGUMENT_MACROS = ("args_no_hyphens", "args")
AGENT_VALUES = {"env": ["/usr/bin/env"], "interpreter": ["python"]}
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")  # as wandb's SWEEP_COMMAND_ENV_VAR_REGEX

# The figures every point's row shows: clean and adversarial test error, Table 1's measure.
RESULT_COLUMNS = (
    ("test/error", "clean test error"),
    ("eval/adversarial_error", "adversarial test error"),
    ("eval/min_distortion", "mean min. distortion"),
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quantize(value: float, q: float) -> float | int:
    """W&B's rounding to a multiple of ``q`` (half to even, as ``np.round``)."""
    rounded = round(value / q) * q
    return int(rounded) if _integer(q) else float(rounded)


# Each distribution: (required settings, optional settings with defaults, sampler).
Sampler = Callable[[random.Random, Mapping[str, Any]], Any]
_DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any], Sampler]] = {
    "constant": (("value",), {}, lambda rng, s: s["value"]),
    "categorical": (("values",), {}, lambda rng, s: s["values"][rng.randrange(len(s["values"]))]),
    "categorical_w_probabilities": (
        ("values", "probabilities"),
        {},
        lambda rng, s: rng.choices(s["values"], weights=s["probabilities"])[0],
    ),
    "int_uniform": (("min", "max"), {}, lambda rng, s: rng.randint(s["min"], s["max"])),
    "uniform": (("min", "max"), {}, lambda rng, s: rng.uniform(s["min"], s["max"])),
    "q_uniform": (
        ("min", "max"),
        {"q": 1.0},
        lambda rng, s: _quantize(rng.uniform(s["min"], s["max"]), s["q"]),
    ),
    # log_uniform takes exponents (natural log) as bounds; log_uniform_values the values.
    "log_uniform": (("min", "max"), {}, lambda rng, s: math.exp(rng.uniform(s["min"], s["max"]))),
    "log_uniform_values": (
        ("min", "max"),
        {},
        lambda rng, s: math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"]))),
    ),
    "q_log_uniform": (
        ("min", "max"),
        {"q": 1.0},
        lambda rng, s: _quantize(math.exp(rng.uniform(s["min"], s["max"])), s["q"]),
    ),
    "q_log_uniform_values": (
        ("min", "max"),
        {"q": 1.0},
        lambda rng, s: _quantize(
            math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"]))), s["q"]
        ),
    ),
    "inv_log_uniform": (
        ("min", "max"),
        {},
        lambda rng, s: math.exp(-rng.uniform(s["min"], s["max"])),
    ),
    "inv_log_uniform_values": (
        ("min", "max"),
        {},
        lambda rng, s: math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"]))),
    ),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}, lambda rng, s: rng.gauss(s["mu"], s["sigma"])),
    "q_normal": (
        (),
        {"mu": 0.0, "sigma": 1.0, "q": 1.0},
        lambda rng, s: _quantize(rng.gauss(s["mu"], s["sigma"]), s["q"]),
    ),
    "log_normal": (
        (),
        {"mu": 0.0, "sigma": 1.0},
        lambda rng, s: rng.lognormvariate(s["mu"], s["sigma"]),
    ),
    "q_log_normal": (
        (),
        {"mu": 0.0, "sigma": 1.0, "q": 1.0},
        lambda rng, s: _quantize(rng.lognormvariate(s["mu"], s["sigma"]), s["q"]),
    ),
    "beta": ((), {"a": 1.0, "b": 1.0}, lambda rng, s: rng.betavariate(s["a"], s["b"])),
    "q_beta": (
        (),
        {"a": 1.0, "b": 1.0, "q": 1.0},
        lambda rng, s: _quantize(rng.betavariate(s["a"], s["b"]), s["q"]),
    ),
}
# Distributions a grid can enumerate (W&B's grid search allows exactly these).
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")


@dataclass(frozen=True)
class Parameter:
    """One entry of ``parameters``: a config key and the distribution of its values."""

    name: str
    distribution: str
    settings: dict[str, Any]

    @property
    def constant(self) -> bool:
        return self.distribution == "constant"

    def grid_values(self) -> list[Any]:
        """The values a grid takes, as W&B enumerates them (int_uniform: min..max;
        q_uniform: ``np.arange(min, max, q)``); repeated values once."""
        s = self.settings
        if self.distribution == "constant":
            values = [s["value"]]
        elif self.distribution == "categorical":
            values = list(s["values"])
        elif self.distribution == "int_uniform":
            values = list(range(s["min"], s["max"] + 1))
        elif self.distribution == "q_uniform":
            count = math.ceil((s["max"] - s["min"]) / s["q"])
            values = [s["min"] + k * s["q"] for k in range(count)]
        else:
            raise ConfigError(
                f"parameters.{self.name}: distribution {self.distribution} cannot be a grid "
                f"axis (grid takes {', '.join(GRID_DISTRIBUTIONS)}; use method: random)"
            )
        unique: dict[str, Any] = {}
        for value in values:
            unique.setdefault(json.dumps(value, sort_keys=True), value)
        return list(unique.values())

    def sample(self, rng: random.Random) -> Any:
        return _DISTRIBUTIONS[self.distribution][2](rng, self.settings)


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file."""

    path: Path
    name: str
    method: str
    metric: str | None
    goal: str
    parameters: tuple[Parameter, ...]  # sorted by name, as W&B orders them
    command: tuple[str, ...]
    run_cap: int | None
    project: str | None = None
    entity: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def swept(self) -> list[str]:
        """Names of the parameters that vary from point to point."""
        return [p.name for p in self.parameters if not p.constant]


def _fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}")


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; a problem raises :class:`ConfigError` naming its key."""
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
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise _fail(
            path, unknown[0], f"not a W&B sweep key (keys: {', '.join(sorted(SWEEP_KEYS))})"
        )

    method = raw.get("method")
    if method is None:
        raise _fail(path, "method", f"missing (one of {', '.join(LOCAL_METHODS)})")
    if method in AGENT_METHODS:
        raise _fail(
            path,
            "method",
            f"{method} search needs W&B's sweep controller: run `wandb sweep {path}` and "
            "`wandb agent SWEEP_ID` (locally: grid or random)",
        )
    if method not in LOCAL_METHODS:
        raise _fail(path, "method", f"unknown method {method!r} (grid, random or bayes)")

    metric, goal = _read_metric(path, raw.get("metric"))
    parameters = _read_parameters(path, raw.get("parameters"))
    if method == "grid":
        for parameter in parameters:
            if parameter.distribution not in GRID_DISTRIBUTIONS:
                raise _fail(
                    path,
                    f"parameters.{parameter.name}",
                    f"distribution {parameter.distribution} cannot be a grid axis (grid takes "
                    f"{', '.join(GRID_DISTRIBUTIONS)}; use method: random)",
                )
    command = _read_command(path, raw.get("command"), raw.get("program"))
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not _integer(run_cap) or run_cap < 1):
        raise _fail(path, "run_cap", f"must be a positive integer, got {run_cap!r}")
    if method == "random" and run_cap is None:
        raise _fail(path, "run_cap", "random search needs run_cap (the number of points to draw)")
    for key in ("name", "project", "entity"):
        if key in raw and not isinstance(raw[key], str):
            raise _fail(path, key, f"must be a string, got {raw[key]!r}")
    name = raw.get("name") or path.stem
    if "/" in name or name in {".", ".."}:
        raise _fail(path, "name", f"{name!r} cannot name a folder")
    return Sweep(
        path=path,
        name=name,
        method=method,
        metric=metric,
        goal=goal,
        parameters=tuple(parameters),
        command=tuple(command),
        run_cap=run_cap,
        project=raw.get("project"),
        entity=raw.get("entity"),
        raw=raw,
    )


def _read_metric(path: Path, metric: Any) -> tuple[str | None, str]:
    if metric is None:
        return None, "minimize"
    if not isinstance(metric, dict):
        raise _fail(path, "metric", "expected a mapping with name and goal")
    unknown = sorted(set(metric) - METRIC_KEYS)
    if unknown:
        raise _fail(path, f"metric.{unknown[0]}", "not a W&B metric key")
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(path, "metric.name", "missing (the logged metric to rank points by)")
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise _fail(path, "metric.goal", f"must be minimize or maximize, got {goal!r}")
    return name, goal


def _infer_distribution(settings: Mapping[str, Any]) -> str | None:
    """The distribution W&B infers when ``distribution`` is left out (first schema match)."""
    if "values" in settings:
        return "categorical_w_probabilities" if "probabilities" in settings else "categorical"
    if "value" in settings:
        return "constant"
    if "min" in settings and "max" in settings:
        both_int = _integer(settings["min"]) and _integer(settings["max"])
        return "int_uniform" if both_int else "uniform"
    return None


def _read_parameters(path: Path, parameters: Any) -> list[Parameter]:
    if not isinstance(parameters, dict) or not parameters:
        raise _fail(path, "parameters", "missing (a mapping of config keys to their values)")
    checked = []
    for name in sorted(parameters):
        key = f"parameters.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise _fail(path, key, "a parameter name is a dotted config key (a.b.c)")
        settings = parameters[name]
        if not isinstance(settings, dict):
            raise _fail(path, key, "expected a mapping (values: [...], value: ..., or min/max)")
        if "parameters" in settings:
            raise _fail(
                path,
                key,
                "nested parameters reach the command as one dict-valued word, which "
                f"`intriguing train` does not read; write dotted keys ({name}.KEY)",
            )
        settings = dict(settings)
        distribution = settings.pop("distribution", None) or _infer_distribution(settings)
        if distribution not in _DISTRIBUTIONS:
            known = ", ".join(_DISTRIBUTIONS)
            problem = (
                f"unknown distribution {distribution!r} (known: {known})"
                if distribution
                else "give values, value, or min and max (with a distribution)"
            )
            raise _fail(path, key, problem)
        required, optional, _ = _DISTRIBUTIONS[distribution]
        unexpected = sorted(set(settings) - set(required) - set(optional))
        if unexpected:
            raise _fail(path, f"{key}.{unexpected[0]}", f"not a setting of {distribution}")
        missing = [s for s in required if s not in settings]
        if missing:
            raise _fail(path, f"{key}.{missing[0]}", f"missing (needed by {distribution})")
        settings = {**optional, **settings}
        _check_settings(path, key, distribution, settings)
        checked.append(Parameter(name, distribution, settings))
    return checked


def _check_settings(path: Path, key: str, distribution: str, settings: dict[str, Any]) -> None:
    for setting, value in settings.items():
        if setting in {"value", "values"}:
            continue
        if setting == "probabilities":
            continue
        if not _number(value):
            hint = " (YAML 1.1 reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
            raise _fail(path, f"{key}.{setting}", f"must be a number, got {value!r}{hint}")
    if "values" in settings and (
        not isinstance(settings["values"], list) or not settings["values"]
    ):
        raise _fail(path, f"{key}.values", "must be a non-empty list")
    if distribution == "categorical_w_probabilities":
        weights = settings["probabilities"]
        if (
            not isinstance(weights, list)
            or len(weights) != len(settings["values"])
            or not all(_number(w) and w >= 0 for w in weights)
            or not math.isclose(sum(weights), 1.0, abs_tol=1e-6)
        ):
            raise _fail(
                path, f"{key}.probabilities", "one non-negative weight per value, summing to 1"
            )
    if distribution == "int_uniform" and not (
        _integer(settings["min"]) and _integer(settings["max"])
    ):
        raise _fail(path, key, "int_uniform needs integer min and max")
    if "min" in settings and "max" in settings and settings["min"] >= settings["max"]:
        raise _fail(
            path, f"{key}.min", f"min {settings['min']} is not less than max {settings['max']}"
        )
    if distribution.endswith("_values") and settings["min"] <= 0:
        raise _fail(path, f"{key}.min", f"{distribution} needs min > 0")
    for positive in ("q", "sigma", "a", "b"):
        if positive in settings and settings[positive] <= 0:
            raise _fail(path, f"{key}.{positive}", "must be positive")
    values = settings.get("values", [settings["value"]] if "value" in settings else [])
    for value in values:
        _check_word_value(path, key, value)


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
    if not isinstance(command, list) or not all(isinstance(w, str | int | float) for w in command):
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
    """The ``key=value`` words after ``intriguing train`` (or its ``python -m`` form)."""
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


def points(sweep: Sweep, *, seed: int = 0) -> list[dict[str, Any]]:
    """The sweep's points, each ``{parameter: value}`` in name order.

    Grid: every combination in W&B's order (parameters sorted by name, the last varying
    fastest), at most ``run_cap``. Random: ``run_cap`` independent draws from a generator
    seeded with ``seed`` (W&B's server draws its own; the distributions are the same).
    """
    names = [p.name for p in sweep.parameters]
    if sweep.method == "grid":
        grid = itertools.product(*(p.grid_values() for p in sweep.parameters))
        if sweep.run_cap is not None:
            grid = itertools.islice(grid, sweep.run_cap)
        return [dict(zip(names, combination, strict=True)) for combination in grid]
    rng = random.Random(seed)
    assert sweep.run_cap is not None
    return [{p.name: p.sample(rng) for p in sweep.parameters} for _ in range(sweep.run_cap)]


@dataclass
class PointResult:
    """A point's row of the summary table."""

    index: int
    values: dict[str, Any]
    status: str  # ran, reused, failed (exit N), pending
    run_dir: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _sort_key(sweep: Sweep, result: PointResult) -> tuple[int, float, int]:
    value = result.metrics.get(sweep.metric) if sweep.metric else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0, result.index)
    return (0, value if sweep.goal == "minimize" else -value, result.index)


def summary_table(
    sweep: Sweep, results: Iterable[PointResult]
) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the sweep's summary, best point first by the sweep's metric.

    Raw values (errors as fractions); :func:`to_markdown` formats them for reading."""
    metric_columns = [key for key, _ in RESULT_COLUMNS]
    if sweep.metric and sweep.metric not in metric_columns:
        metric_columns.append(sweep.metric)
    columns = ["point", *sweep.swept, *metric_columns, "status", "run"]
    rows = []
    for result in sorted(results, key=lambda r: _sort_key(sweep, r)):
        rows.append(
            [
                result.index,
                *(_display_value(result.values[name]) for name in sweep.swept),
                *(result.metrics.get(key) for key in metric_columns),
                result.status,
                result.run_dir or "",
            ]
        )
    return columns, rows


def _display_value(value: Any) -> str | int | float:
    return value if _number(value) or isinstance(value, str) else str(value)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and column.endswith("error"):
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(sweep: Sweep, columns: list[str], rows: list[list[Any]]) -> str:
    labels = dict(RESULT_COLUMNS)
    header = [labels.get(c, c) for c in columns]
    ranked = f"sorted by {sweep.metric} ({sweep.goal})" if sweep.metric else "in point order"
    constants = [f"{p.name}={p.settings['value']}" for p in sweep.parameters if p.constant]
    lines = [
        f"# Sweep {sweep.name}",
        "",
        f"{sweep.method} search from `{sweep.path}`, {len(rows)} points, {ranked}.",
        f"Command: `{' '.join(sweep.command)}`"
        + (f"; constants: {', '.join(constants)}" if constants else ""),
        "",
    ]
    cells = [[_cell(c, v) for c, v in zip(columns, row, strict=True)] for row in rows]
    numeric = [c not in (*sweep.swept, "status", "run") for c in columns]
    return "\n".join([*lines, *markdown_lines(header, cells, right_aligned=numeric)]) + "\n"
