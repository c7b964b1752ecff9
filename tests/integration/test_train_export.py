"""Checks of the cached census export that `census_export` trains with the default config."""

import os
from pathlib import Path

import numpy as np
import pytest

from pyscoring import census, evaluation

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "adult"

MIN_AUC = 0.88
MIN_ACCURACY = 0.84
PARITY_ROWS = 1000


@pytest.fixture(scope="module")
def test_data(census_export):
    return census.load(census_export.test_path)


@pytest.fixture(scope="module")
def exported_scores(census_export, test_data):
    from pyscoring.export import score_with_python_tf

    return score_with_python_tf(census_export.version_dir, test_data.features)


def test_manifest_metrics_meet_targets(census_export):
    metrics = census_export.manifest["training"]["metrics"]
    assert metrics["auc"] >= MIN_AUC
    assert metrics["accuracy"] >= MIN_ACCURACY
    assert 0 < metrics["loss"] < 0.4


def test_manifest_training_topology(census_export):
    training = census_export.manifest["training"]
    assert training["workers"] == 1
    assert training["ps"] == 0
    assert training["global_step"] > 0


def test_signature_inputs_in_file_order(census_export):
    inputs = census_export.manifest["signature"]["inputs"]
    assert [spec["name"] for spec in inputs] == list(census.FEATURE_NAMES)
    assert [spec["dtype"] for spec in inputs] == [c.dtype for c in census.FEATURE_COLUMNS]
    assert all(spec["shape"] == [-1] for spec in inputs)


def test_signature_outputs(census_export):
    assert census_export.manifest["signature"]["key"] == "serving_default"
    assert census_export.manifest["signature"]["outputs"] == [
        {"name": "probability", "dtype": "float32", "shape": [-1]},
        {"name": "logit", "dtype": "float32", "shape": [-1]},
    ]


def test_variables_bytes_match_folder(census_export):
    variables_dir = census_export.version_dir / "variables"
    size = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(variables_dir)
        for name in names
    )
    assert census_export.manifest["variables"]["bytes"] == size
    assert census_export.manifest["variables"]["ps_shards"] == 1
    assert census_export.manifest["variables"]["partitioned"] is False


def test_probability_is_sigmoid_of_logit(census_export, test_data):
    from pyscoring.export import score_with_python_tf

    features = {name: values[:PARITY_ROWS] for name, values in test_data.features.items()}
    scores = score_with_python_tf(census_export.version_dir, features)

    assert scores["probability"].dtype == np.float32
    assert scores["logit"].dtype == np.float32
    assert scores["probability"].shape == (PARITY_ROWS,)
    assert scores["logit"].shape == (PARITY_ROWS,)
    expected = 1.0 / (1.0 + np.exp(-scores["logit"].astype(np.float64)))
    np.testing.assert_allclose(scores["probability"], expected, rtol=0, atol=1e-6)


def test_saved_model_reproduces_manifest_metrics(census_export, test_data, exported_scores):
    metrics = census_export.manifest["training"]["metrics"]
    labels = test_data.labels

    assert evaluation.roc_auc(labels, exported_scores["probability"]) == pytest.approx(
        metrics["auc"], abs=1e-6
    )
    assert evaluation.accuracy(labels, exported_scores["probability"]) == pytest.approx(
        metrics["accuracy"], abs=1e-6
    )
    assert evaluation.log_loss_from_logits(labels, exported_scores["logit"]) == pytest.approx(
        metrics["loss"], abs=1e-5
    )


def test_saved_model_scores_are_batch_independent(census_export, test_data, exported_scores):
    from pyscoring.export import score_with_python_tf

    rows = slice(5000, 5007)
    features = {name: values[rows] for name, values in test_data.features.items()}
    scores = score_with_python_tf(census_export.version_dir, features)
    np.testing.assert_allclose(
        scores["probability"], exported_scores["probability"][rows], rtol=0, atol=1e-6
    )


def write_head(source, target, count):
    """Copy the first `count` lines of `source` to `target`, CRLF endings kept."""
    with open(source, "rb") as file:
        lines = [next(file) for _ in range(count)]
    target.write_bytes(b"".join(lines))
    return target


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    train_path = write_head(str(DATA_DIR / "adult.data"), folder / "adult.data", 3000)
    test_path = write_head(str(DATA_DIR / "adult.test"), folder / "adult.test", 1000)
    return train_path, test_path


def test_train_two_shards_exports_partitioned(small_files, tmp_path):
    from models.census_wide_deep import ModelParams
    from pyscoring.config import Config
    from pyscoring.export import score_with_python_tf
    from pyscoring.training import train

    train_path, test_path = small_files
    config = Config({"train.epochs": 2, "train.batch-size": 500})
    result = train(
        config, train_path, test_path, tmp_path / "exports", tmp_path / "checkpoints",
        model_params=ModelParams(num_shards=2),
    )

    variables = result.manifest["variables"]
    assert result.version == 1
    assert variables["partitioned"] is True
    assert variables["ps_shards"] == 2
    assert "deep/embedding/workclass" in variables["partitioned_variables"]
    assert "wide/weights/education_x_occupation" in variables["partitioned_variables"]
    assert result.manifest["training"]["global_step"] == 2 * 6

    data = census.load(test_path)
    scores = score_with_python_tf(result.path, data.features)
    assert evaluation.roc_auc(data.labels, scores["probability"]) == pytest.approx(
        result.metrics["auc"], abs=1e-6
    )


def test_train_resumes_from_checkpoint(small_files, tmp_path):
    from pyscoring.config import Config
    from pyscoring.training import train
    from pyscoring.training.local import read_model_params

    train_path, test_path = small_files
    checkpoints = tmp_path / "checkpoints"
    first = train(
        Config({"train.epochs": 1, "train.batch-size": 1000}),
        train_path, test_path, tmp_path / "exports", checkpoints,
    )
    saved = read_model_params(checkpoints)
    second = train(
        Config({"train.epochs": 2, "train.batch-size": 1000}),
        train_path, test_path, tmp_path / "exports", checkpoints,
    )

    assert first.manifest["training"]["global_step"] == 3
    assert second.manifest["training"]["global_step"] == 6
    assert (first.version, second.version) == (1, 2)
    assert read_model_params(checkpoints) == saved


def test_train_rejects_other_params_on_resume(small_files, tmp_path):
    from models.census_wide_deep import ModelParams
    from pyscoring.config import Config
    from pyscoring.training import train

    train_path, test_path = small_files
    config = Config({"train.epochs": 1, "train.batch-size": 1000})
    train(config, train_path, test_path, tmp_path / "exports", tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="other model parameters"):
        train(
            config, train_path, test_path, tmp_path / "exports", tmp_path / "checkpoints",
            model_params=ModelParams(embedding_dim=4),
        )
