"""The option registry, its generated reference page and its Java mirror."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pyscoring import config
from pyscoring._internal import flink_env

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_parse_and_validate():
    values = config.Config()
    assert values["scoring.max-batch-size"] == 64
    assert values.effective_in_flight() == 128


def test_unknown_key_is_rejected_with_hint():
    with pytest.raises(config.ConfigError, match="unknown configuration key 'scoring.batch'"):
        config.Config({"scoring.batch": 3})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scoring.max-batch-size": "0"}, "below the minimum 1"),
        ({"scoring.max-batch-size": "many"}, "expected int, got 'many'"),
        ({"source.loop": "perhaps"}, "expected true or false"),
        ({"scoring.path": "gpu"}, "'gpu' is not one of auto, jvm, ps"),
        ({"metrics.port-range": "9300"}, "expected FIRST-LAST"),
        ({"metrics.port-range": "9400-9300"}, "FIRST <= LAST"),
        ({"scoring.max-in-flight": "10"}, r"scoring.max-in-flight \(10\) is below"),
    ],
)
def test_invalid_values_name_key_and_value(overrides, message):
    with pytest.raises(config.ConfigError, match=message):
        config.Config(overrides)


def test_configuration_reference_is_current():
    generated = config.render_markdown(lambda option: config._format_value(option.default))
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == generated, "docs/configuration.md is stale; run `make docs`"


def test_java_options_match_python_registry():
    java = shutil.which("java")
    lib_dir = flink_env.flink_lib_dir()
    if java is None or not list(lib_dir.glob("pyscoring-jvm-*.jar")):
        pytest.fail(f"java or the pyscoring jar in {lib_dir} is missing; run `make install`")
    output = subprocess.run(
        [java, "-cp", f"{lib_dir}/*", "io.pyscoring.scoring.ScoringOptions"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    java_keys = {entry["key"]: entry for entry in json.loads(output)}
    python_keys = {option.key: option for option in config.OPTIONS if option.jvm}
    assert set(java_keys) == set(python_keys)
    for key, option in python_keys.items():
        assert java_keys[key]["default"] == config._format_value(option.default), key
        assert java_keys[key]["type"] == option.type.__name__, key
