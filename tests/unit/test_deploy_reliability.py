"""deploy's reliability settings: timeouts, restarts, binding, pinning and model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyscoring import deploy
from pyscoring.config import Config, ConfigError

MODEL = {
    "model_name": "m",
    "version": 3,
    "signature": {
        "inputs": [{"name": "age", "dtype": "int64", "shape": [-1]},
                   {"name": "job", "dtype": "string", "shape": [-1]}],
        "outputs": [{"name": "score", "dtype": "float32", "shape": [-1]}],
    },
    "feature_mapping": {"age": "age", "job": "job"},
    "variables": {"bytes": 10},
}


def _settings(overrides: dict) -> dict:
    return deploy.flink_settings(Config(overrides), "job", Path("/tmp/targets.json"))


def test_flink_timeout_follows_batch_settings():
    settings = _settings({"scoring.batch-timeout-ms": 2000, "scoring.max-batch-delay-ms": 10})
    # Row timeout: 10 + 3 * 2000 ms; Flink's timeout is twice that plus 1 s.
    assert settings["table.exec.async-table.timeout"] == "13020 ms"
    assert settings["table.exec.async-table.retry-strategy"] == "NO_RETRY"
    assert "scoring.async-timeout-ms:0," in settings["pipeline.global-job-parameters"]


def test_explicit_row_timeout_wins():
    settings = _settings({"scoring.async-timeout-ms": 500})
    assert settings["table.exec.async-table.timeout"] == "2000 ms"
    assert "scoring.async-timeout-ms:500" in settings["pipeline.global-job-parameters"]


def test_injected_failures_get_their_own_restarts():
    settings = _settings({"deploy.restart-attempts": 2, "scoring.test.fail-at-rows": "5;6;7"})
    assert settings["restart-strategy.fixed-delay.attempts"] == "5"
    assert "scoring.test.fail-at-rows:5;6;7" in settings["pipeline.global-job-parameters"]


def test_malformed_failure_rows_rejected():
    with pytest.raises(ConfigError, match="scoring.test.fail-at-rows"):
        Config({"scoring.test.fail-at-rows": "5,6"})


def test_flink_binds_loopback_by_default():
    settings = _settings({})
    for key in ("jobmanager.bind-host", "taskmanager.bind-host", "rest.bind-address",
                "taskmanager.host"):
        assert settings[key] == "127.0.0.1", key
    assert _settings({"deploy.bind-host": "0.0.0.0"})["rest.bind-address"] == "0.0.0.0"


def _write_version(export_dir: Path, version: int) -> Path:
    folder = export_dir / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    (folder / "pyscoring.json").write_text(json.dumps({"version": version}))
    return folder


def test_export_dir_is_watched_and_version_folder_pinned(tmp_path):
    _write_version(tmp_path, 1)
    newest = _write_version(tmp_path, 2)
    assert deploy.resolve_model(tmp_path) == (tmp_path, newest)
    assert deploy.resolve_model(newest) == (newest, newest)
    assert deploy.resolve_model(tmp_path, 1) == (tmp_path / "1", tmp_path / "1")


def test_pinned_version_not_found_lists_versions(tmp_path):
    _write_version(tmp_path, 1)
    with pytest.raises(deploy.DeployError, match=r"scoring.model-version=4.*versions in .*: 1"):
        deploy.resolve_model(tmp_path, 4)


def test_linked_variables_outside_version_rejected(tmp_path):
    folder = _write_version(tmp_path / "export", 1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "variables" / "data").symlink_to(outside / "data")
    (outside / "data").write_bytes(b"x")
    with pytest.raises(deploy.DeployError, match="outside the version folder"):
        deploy.check_model_files(folder, tmp_path / "export")


def test_linked_version_outside_export_rejected(tmp_path):
    real = _write_version(tmp_path / "elsewhere", 1)
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "1").symlink_to(real)
    with pytest.raises(deploy.DeployError, match="outside the export directory"):
        deploy.check_model_files(export_dir / "1", export_dir)


def test_dead_letters_are_counted_and_missing_values_checked(tmp_path):
    (tmp_path / "in.txt").write_text("1,a\n")
    request = deploy.DeployRequest(
        model_dir=tmp_path, output_dir=tmp_path / "out", input_path=tmp_path / "in.txt",
        input_format=deploy.InputFormat.parse("age BIGINT, job STRING"),
    )
    ddl, _, inserts = deploy.build_statements(request, Path("/models/m"), MODEL)
    checked = next(statement for statement in ddl if "pyscoring_checked AS" in statement)
    assert "WHEN `age` IS NULL THEN 'MISSING_VALUE'" in checked
    assert "pyscoring_count_dead_letter('m', 'jvm', error_code, CAST(NULL AS BIGINT))" in inserts[1]
    assert "pyscoring_count_dead_letter('m', 'jvm', score_error_code, model_version)" in inserts[1]
    assert f"SUBSTRING(line, 1, {deploy.RAW_MAX_CHARS})" in inserts[1]
