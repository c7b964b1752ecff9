"""Tests of export_model on small untrained checkpoints."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models import census_wide_deep as model
from pyscoring import census, export, manifest
from pyscoring.training import local

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "adult"

METRICS = {"auc": 0.9, "accuracy": 0.85, "loss": 0.3}


def small_params(num_shards):
    return model.ModelParams(
        num_shards=num_shards,
        category_buckets=16,
        cross_buckets=32,
        embedding_dim=2,
        hidden_units=(4,),
        numeric_stats={name: (10.0, 5.0) for name in model.NUMERIC_TRANSFORMS},
    )


def write_checkpoint(directory, params):
    """Save the randomly initialized training graph of `params` and return the prefix."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(1)
        local.build_training_graph(params, learning_rate=0.01)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, os.path.join(directory, "model.ckpt"), global_step=0)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-shard", "2-shards"])
def checkpoint(request, tmp_path_factory):
    params = small_params(request.param)
    prefix = write_checkpoint(str(tmp_path_factory.mktemp("checkpoint")), params)
    return params, prefix


@pytest.fixture(scope="module")
def sample_features():
    data = census.load(str(DATA_DIR / "adult.test"))
    return {name: values[:50] for name, values in data.features.items()}


def run_export(checkpoint, export_dir):
    params, prefix = checkpoint
    return export.export_model(
        prefix, export_dir, params, global_step=0, workers=1, ps=0, metrics=METRICS
    )


def entries(folder):
    return sorted(os.listdir(folder))


def test_export_versions_increment(checkpoint, tmp_path):
    first = run_export(checkpoint, tmp_path)
    second = run_export(checkpoint, tmp_path)

    assert (first.version, second.version) == (1, 2)
    assert first.path == str(tmp_path / "1")
    assert entries(tmp_path) == ["1", "2"]
    assert manifest.latest_version(tmp_path) == 2


def test_export_numbers_after_largest_folder(checkpoint, tmp_path):
    (tmp_path / "7").mkdir()
    result = run_export(checkpoint, tmp_path)
    assert result.version == 8
    assert entries(tmp_path / "7") == []


def test_export_never_overwrites_existing_version(checkpoint, tmp_path, monkeypatch):
    run_export(checkpoint, tmp_path)
    before = {name: os.path.getmtime(tmp_path / "1" / name) for name in entries(tmp_path / "1")}
    monkeypatch.setattr(export, "next_version", lambda export_dir: 1)

    with pytest.raises(FileExistsError, match="never overwritten"):
        run_export(checkpoint, tmp_path)

    after = {name: os.path.getmtime(tmp_path / "1" / name) for name in entries(tmp_path / "1")}
    assert after == before
    assert entries(tmp_path) == ["1"]


def test_rename_rejects_existing_target(tmp_path):
    source = tmp_path / ".tmp-1-x"
    source.mkdir()
    target = tmp_path / "1"
    target.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export._rename_no_replace(str(source), str(target))
    assert source.is_dir()


def test_manifest_written_last_in_temp_folder(checkpoint, tmp_path, monkeypatch):
    seen = {}
    write_manifest = export.write_manifest

    def recording_write_manifest(directory, content):
        directory = str(directory)
        seen["directory"] = os.path.basename(directory)
        seen["files"] = entries(directory)
        seen["variables"] = entries(os.path.join(directory, "variables"))
        seen["versions"] = manifest.list_versions(tmp_path)
        seen["folders"] = sorted(manifest.version_folders(tmp_path))
        return write_manifest(directory, content)

    monkeypatch.setattr(export, "write_manifest", recording_write_manifest)
    result = run_export(checkpoint, tmp_path)

    assert re.fullmatch(r"\.tmp-1-[0-9a-f]{8}", seen["directory"])
    assert seen["files"] == ["saved_model.pb", "variables"]
    assert seen["variables"] == ["variables.data-00000-of-00001", "variables.index"]
    assert seen["versions"] == []
    assert seen["folders"] == []
    assert entries(result.path) == ["pyscoring.json", "saved_model.pb", "variables"]


def test_failed_export_leaves_no_folder(checkpoint, tmp_path, monkeypatch):
    def failing_write_manifest(directory, content):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_manifest", failing_write_manifest)
    with pytest.raises(OSError, match="disk full"):
        run_export(checkpoint, tmp_path)
    assert entries(tmp_path) == []


def test_export_rejects_missing_metrics(checkpoint, tmp_path):
    params, prefix = checkpoint
    with pytest.raises(ValueError, match="metrics are missing loss"):
        export.export_model(
            prefix, tmp_path, params, global_step=0, workers=1, ps=0,
            metrics={"auc": 0.5, "accuracy": 0.5},
        )


def test_resolve_checkpoint_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        export.resolve_checkpoint(tmp_path)


def test_manifest_fields(checkpoint, tmp_path):
    params, _ = checkpoint
    result = run_export(checkpoint, tmp_path)
    content = manifest.read_manifest(result.path)

    assert content == result.manifest
    assert content["format_version"] == 1
    assert content["model_name"] == "census_wide_deep"
    assert content["version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", content["created_at"])
    assert content["tensorflow_version"] == tf.__version__
    assert content["signature"]["key"] == "serving_default"
    assert [spec["name"] for spec in content["signature"]["inputs"]] == list(census.FEATURE_NAMES)
    assert content["feature_mapping"] == {name: name for name in census.FEATURE_NAMES}
    assert content["training"] == {
        "global_step": 0, "workers": 1, "ps": 0, "metrics": METRICS,
    }

    variables_dir = os.path.join(result.path, "variables")
    size = sum(os.path.getsize(os.path.join(variables_dir, n)) for n in os.listdir(variables_dir))
    assert content["variables"]["bytes"] == size
    assert content["variables"]["ps_shards"] == params.num_shards


def test_manifest_partitioned_variables(checkpoint, tmp_path):
    params, _ = checkpoint
    variables = run_export(checkpoint, tmp_path).manifest["variables"]

    if params.num_shards == 1:
        assert variables["partitioned"] is False
        assert variables["partitioned_variables"] == []
    else:
        expected = sorted(
            [f"deep/embedding/{name}" for name in model.CATEGORICAL_COLUMNS]
            + [f"wide/weights/{name}" for name in model.CATEGORICAL_COLUMNS]
            + ["wide/weights/age_bucket"]
            + ["wide/weights/" + "_x_".join(cross) for cross in model.WIDE_CROSSES]
        )
        assert variables["partitioned"] is True
        assert variables["partitioned_variables"] == expected


def test_saved_model_matches_checkpoint(checkpoint, tmp_path, sample_features):
    params, prefix = checkpoint
    result = run_export(checkpoint, tmp_path)

    exported = export.score_with_python_tf(result.path, sample_features)
    restored = local.predict_checkpoint(prefix, params, sample_features)

    assert set(exported) == {"probability", "logit"}
    assert exported["probability"].dtype == np.float32
    assert exported["probability"].shape == (50,)
    np.testing.assert_allclose(exported["logit"], restored["logit"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        exported["probability"], restored["probability"], rtol=0, atol=1e-6
    )


def test_score_with_python_tf_rejects_missing_input(checkpoint, tmp_path, sample_features):
    result = run_export(checkpoint, tmp_path)
    features = dict(sample_features)
    del features["sex"]
    with pytest.raises(ValueError, match="missing the signature inputs sex"):
        export.score_with_python_tf(result.path, features)
