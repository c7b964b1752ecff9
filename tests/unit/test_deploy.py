"""Job building in deploy: feature mapping, input formats and the SQL it emits."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyscoring import deploy

MODEL = {
    "model_name": "m",
    "version": 3,
    "signature": {
        "inputs": [{"name": "age", "dtype": "int64", "shape": [-1]},
                   {"name": "job", "dtype": "string", "shape": [-1]}],
        "outputs": [{"name": "score", "dtype": "float32", "shape": [-1]},
                    {"name": "pair", "dtype": "float32", "shape": [-1, 2]}],
    },
    "feature_mapping": {"age": "age_years", "job": "job"},
    "variables": {"bytes": 10},
}


def test_features_map_by_column_name():
    fmt = deploy.InputFormat.parse("job STRING, age_years BIGINT")
    assert deploy.map_features(MODEL, fmt) == ["age_years", "job"]


def test_missing_column_names_input_and_columns():
    fmt = deploy.InputFormat.parse("job STRING")
    with pytest.raises(deploy.DeployError, match="'age' needs the column 'age_years'.*job"):
        deploy.map_features(MODEL, fmt)


def test_mistyped_column_names_both_types():
    fmt = deploy.InputFormat.parse("job STRING, age_years STRING")
    with pytest.raises(deploy.DeployError, match="'age_years' is STRING but .* int64 \\(BIGINT\\)"):
        deploy.map_features(MODEL, fmt)


def test_column_spec_without_type_is_rejected():
    with pytest.raises(deploy.DeployError, match="invalid column 'age'"):
        deploy.InputFormat.parse("age, job STRING")


def test_statements_route_scores_and_dead_letters(tmp_path):
    (tmp_path / "in.txt").write_text("1,a\n")
    request = deploy.DeployRequest(
        model_dir=tmp_path, output_dir=tmp_path / "out", input_path=tmp_path / "in.txt",
        input_format=deploy.InputFormat.parse("age_years BIGINT, job STRING"),
    )
    ddl, scoring_query, inserts = deploy.build_statements(request, Path("/models/m/3"), MODEL)
    sql = "\n".join(ddl)
    assert "'connector' = 'pyscoring-lines'" in sql
    assert "pyscoring_parse(s.line, '`age_years` BIGINT, `job` STRING', ',', s.line_bytes)" in sql
    assert "pyscoring_predict('/models/m/3', v.`age_years`, v.`job`)" in scoring_query
    assert "`pair` ARRAY<FLOAT>" in sql
    assert inserts[0].startswith("INSERT INTO pyscoring_scores")
    assert "score_error_code IS NULL" in inserts[0]
    assert inserts[1].startswith("INSERT INTO pyscoring_dead_letters")


def test_quotes_in_paths_are_escaped(tmp_path):
    assert deploy.sql_literal("it's") == "'it''s'"


def test_missing_model_directory_names_path(tmp_path):
    with pytest.raises(deploy.DeployError, match="does not exist"):
        deploy.resolve_version_dir(tmp_path / "nothing")


def test_export_without_versions_says_to_train(tmp_path):
    (tmp_path / "7").mkdir()  # no manifest: still being written
    with pytest.raises(deploy.DeployError, match="no complete model version"):
        deploy.resolve_version_dir(tmp_path)


def test_unknown_column_type_is_rejected():
    with pytest.raises(deploy.DeployError, match="invalid type 'FOO' of column 'age'"):
        deploy.InputFormat.parse("age FOO, job STRING")


def test_parent_of_export_names_nested_exports(tmp_path):
    version = tmp_path / "census" / "1"
    version.mkdir(parents=True)
    (version / "pyscoring.json").write_text("{}")
    with pytest.raises(deploy.DeployError, match="census; pass one of them as --model"):
        deploy.resolve_version_dir(tmp_path)


def test_sink_options_need_connector(tmp_path):
    (tmp_path / "in.txt").write_text("1,a\n")
    request = deploy.DeployRequest(
        model_dir=tmp_path, output_dir=tmp_path / "out", input_path=tmp_path / "in.txt",
        input_format=deploy.InputFormat.parse("age_years BIGINT, job STRING"),
        sink_options={"path": "/tmp/x"},
    )
    with pytest.raises(deploy.DeployError, match="needs connector="):
        deploy.build_statements(request, Path("/models/m/3"), MODEL)


def test_file_sinks_roll_at_checkpoint_interval(tmp_path):
    from pyscoring.config import Config

    options = deploy.file_sink_options(tmp_path, Config({"deploy.checkpoint-interval-ms": 2000}))
    assert options["sink.rolling-policy.rollover-interval"] == "2000 ms"
    assert options["sink.rolling-policy.check-interval"] == "1000 ms"
