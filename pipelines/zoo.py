"""The paper's model zoos, trained on demand: checkpoints for ``transfer`` and ``reproduce``.

A zoo preset (``configs/zoo/NAME.yaml``) lists the experiments of one of the paper's tables
and the names its rows and columns give them::

    table: 2             # the layout `intriguing transfer` builds from this zoo
    split: test          # the examples the adversarial sets are made from
    models:
      - {experiment: fc10-1e-4, name: FC10(1e-4)}
      ...

:func:`ensure_trained` trains whichever of them has no finished run yet and returns every
checkpoint. A finished run (below ``output_dir/NAME``, with ``summary.json`` and its
checkpoint) is reused when its config has the same :func:`pipelines.runs.fingerprint` as the
one asked for, i.e. the same experiment with the same overrides, up to keys that do not change
what is trained (logger, progress bar, output folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from intriguing.configs import ConfigError, available, compose
from intriguing.configs.compose import CONFIG_ROOT, _load_yaml
from intriguing.pipelines.runs import RunSummary, find_finished_run
from intriguing.pipelines.train import train

ZOO_GROUP = "zoo"
TABLES = (2, 4)


@dataclass(frozen=True)
class ZooModel:
    """One model of a zoo: the experiment that trains it and its name in the tables."""

    experiment: str
    name: str


@dataclass(frozen=True)
class Zoo:
    """A zoo preset: the models of one of the paper's tables."""

    name: str
    table: int
    split: str
    models: tuple[ZooModel, ...]
    description: str = ""

    @property
    def experiments(self) -> list[str]:
        return [model.experiment for model in self.models]

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]


def available_zoos() -> list[str]:
    """Names of the shipped zoo presets (``configs/zoo/*.yaml``)."""
    return available(ZOO_GROUP)


def load_zoo(name: str) -> Zoo:
    """The zoo preset ``name`` (a shipped preset, or a path to a YAML file)."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        path = CONFIG_ROOT / ZOO_GROUP / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(available_zoos())
        raise ConfigError(f"zoo {name!r}: no such preset (available: {choices})")
    content = _load_yaml(path)
    unknown = sorted(set(content) - {"table", "split", "models", "description"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: table, split, models)")
    table = content.get("table", 2)
    if table not in TABLES:
        raise ConfigError(f"{path}: table={table!r}, expected one of {TABLES}")
    entries = content.get("models")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: models must be a non-empty list of {{experiment, name}}")
    models = []
    experiments = available("experiment")
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"experiment": entry}
        if not isinstance(entry, dict) or "experiment" not in entry:
            raise ConfigError(f"{path}: models[{index}] needs an 'experiment'")
        experiment = str(entry["experiment"])
        if experiment not in experiments and not Path(experiment).is_file():
            raise ConfigError(
                f"{path}: models[{index}].experiment={experiment!r} is no experiment preset"
            )
        models.append(ZooModel(experiment=experiment, name=str(entry.get("name", experiment))))
    names = [model.name for model in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: model names must differ ({names})")
    return Zoo(
        name=path.stem,
        table=int(table),
        split=str(content.get("split", "test")),
        models=tuple(models),
        description=str(content.get("description", "")),
    )


def zoo_config(experiment: str, overrides: Sequence[str] = ()) -> Any:
    """The composed config of one zoo experiment with the overrides applied to every run."""
    return compose([f"experiment={experiment}", *overrides])


def ensure_trained(
    experiments: Sequence[str],
    overrides: Sequence[str] = (),
    *,
    report: Callable[[str], None] = print,
) -> dict[str, Path]:
    """The checkpoint of each experiment (composed with ``overrides``), training the missing.

    Runs go where ``intriguing train`` puts them (``output_dir/NAME/DATE-TIME``); a finished
    run with the same config fingerprint is reused. Every config is composed (and so checked)
    before anything is trained. Returns ``{experiment: checkpoint}`` in the order given.
    """
    configs = {experiment: zoo_config(experiment, overrides) for experiment in experiments}
    checkpoints: dict[str, Path] = {}
    for index, (experiment, config) in enumerate(configs.items(), start=1):
        summary, _ = ensure_run(
            config, step=f"[{index}/{len(configs)}] {experiment}", report=report
        )
        checkpoints[experiment] = Path(str(summary.checkpoint))
    return checkpoints


def ensure_run(
    config: DictConfig, *, step: str = "", report: Callable[[str], None] = print
) -> tuple[RunSummary, bool]:
    """The finished run of ``config`` (same fingerprint, with its checkpoint), else a new
    one trained now. Returns ``(RunSummary, reused)``; ``step`` prefixes the lines given to
    ``report``."""
    step = step or str(config.name)
    finished = find_finished_run(config)
    if finished is not None and finished.checkpoint:
        report(f"{step}: reusing {finished.run_dir}")
        return finished, True
    report(f"{step}: training (no finished run with this config below {config.output_dir})")
    summary = train(config)
    if not summary.checkpoint or not Path(summary.checkpoint).is_file():
        raise ConfigError(
            f"{config.name}: the run in {summary.run_dir} saved no checkpoint "
            "(checkpoint.enabled=false or trainer.fast_dev_run=true cannot make a zoo)"
        )
    report(f"{step}: trained in {summary.seconds:.0f} s, {summary.run_dir}")
    return summary, False
