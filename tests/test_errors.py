"""One helper takes an error's first line; the config layer names the key of a library error."""

from __future__ import annotations

import pytest

from intriguing.configs import ConfigError, building, config_error
from intriguing.errors import first_line


@pytest.mark.parametrize(
    ("error", "default", "expected"),
    [
        (ValueError("first\nsecond"), None, "first"),
        (RuntimeError("\n  shape mismatch  \n details"), None, "shape mismatch"),
        (KeyError(), None, "KeyError"),
        (OSError(""), "unreadable", "unreadable"),
        (ValueError("   "), "", ""),
        ("text\nmore", None, "text"),
        ("", None, ""),
    ],
)
def test_first_line(error, default, expected) -> None:
    assert first_line(error, default) == expected


@pytest.mark.parametrize(
    ("section", "message", "expected"),
    [
        ("backfeed", "AdversarialBackfeed: mix_ratio=1.5: must be in [0, 1]",
         "backfeed.mix_ratio=1.5: must be in [0, 1]"),
        ("spectral", "every_n_epochs=0: must be at least 1",
         "spectral.every_n_epochs=0: must be at least 1"),
        ("backfeed", "AdversarialBackfeed: layers: 'fc9': unknown layer 'fc9' in Net\nmore",
         "backfeed.layers: 'fc9': unknown layer 'fc9' in Net"),
        ("data", "data.augment.vertical_flip: unknown key",
         "data.augment.vertical_flip: unknown key"),
        ("model", "unknown layer 'x' in Net: its layers are 'a'",
         "model: unknown layer 'x' in Net: its layers are 'a'"),
    ],
)  # fmt: skip
def test_config_error_names_the_key(section: str, message: str, expected: str) -> None:
    error = config_error(section, ValueError(message))
    assert isinstance(error, ConfigError) and str(error) == expected


def test_building_maps_value_and_type_errors_only() -> None:
    with (
        pytest.raises(ConfigError, match=r"^transfer\.subset=0: must be") as raised,
        building("transfer"),
    ):
        raise ValueError("subset=0: must be at least 1")
    assert isinstance(raised.value.__cause__, ValueError)  # the library's error, kept
    with pytest.raises(ConfigError, match=r"^backfeed\.input_key=1\.5"), building("backfeed"):
        raise TypeError("AdversarialBackfeed: input_key=1.5: must be an index")
    given = ConfigError("evaluation.subset=0: named already")
    with pytest.raises(ConfigError) as raised, building("backfeed"):
        raise given
    assert raised.value is given
    with pytest.raises(RuntimeError), building("backfeed"):  # not a bad value: passes through
        raise RuntimeError("CUDA out of memory")
