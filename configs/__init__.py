"""Typed configuration: a dataclass schema, YAML files per concern, ``key=value`` overrides."""

from intriguing.configs.compose import (
    ConfigError,
    available,
    building,
    compose,
    config_error,
    to_container,
    to_object,
    to_yaml,
)
from intriguing.configs.schema import ExperimentConfig

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "available",
    "building",
    "compose",
    "config_error",
    "to_container",
    "to_object",
    "to_yaml",
]
