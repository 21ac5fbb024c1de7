"""TOML configs: the key and the line of every mistake, and a good file builds the config."""

from __future__ import annotations

import pytest

from innerprobe.core.tomlconfig import ConfigError, config_from_toml, key_line
from innerprobe.interventions.injection_config import InjectionConfig

GOOD = """\
# a study
title = "x"

[inject]
scales = [2, 4.5]
timing = "prompt"

[[cells]]
task = "animals"

[[cells]]
task = "wikipedia"
"""


def test_good_table_builds_the_dataclass(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    config = config_from_toml(InjectionConfig, path, table="inject")
    assert config.scales == (2.0, 4.5)
    assert config.timing == "prompt"
    assert config_from_toml(InjectionConfig, path, table="absent") == InjectionConfig()


def test_key_line_walks_tables_and_array_entries():
    assert key_line(GOOD, ["inject", "timing"]) == 6
    assert key_line(GOOD, ["cells", 1, "task"]) == 12
    assert key_line(GOOD, ["cells", 0, "task"]) == 9
    assert key_line(GOOD, ["title"]) == 2
    assert key_line(GOOD, ["nowhere", "x"]) is None


@pytest.mark.parametrize(
    ("body", "line", "needle"),
    [
        ('[inject]\nscales = [1]\ntimnig = "prompt"\n', 3, "unknown key 'timnig'; valid keys: scales, timing"),
        ('[inject]\n\nscales = ["big"]\n', 3, "scales.0"),
        ('[inject]\ntiming = "later"\n', 1, "timing"),
        ("[inject\n", None, "not valid TOML"),
    ],
)
def test_errors_name_key_and_line(tmp_path, body, line, needle):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        config_from_toml(InjectionConfig, path, table="inject")
    assert needle in str(caught.value)
    assert caught.value.line == line
    assert str(path) in str(caught.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config_from_toml(InjectionConfig, tmp_path / "none.toml")
