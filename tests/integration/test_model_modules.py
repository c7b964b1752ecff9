"""Training and export of model modules other than the default census model.

`hashed_export` (tests/integration/conftest.py) trains models.census_hashed_ctr
with 2 workers and 2 parameter servers on the Flink mini cluster. The last
test trains a model file written outside the repository in one process.
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyscoring import census, evaluation, manifest
from tests.integration.test_ml_cluster import final_result, read_events, transitions, write_head

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data" / "adult"
MIN_AUC = 0.85
CLI_TIMEOUT_S = 300


def test_hashed_manifest_records_model(hashed_export):
    content = hashed_export.manifest

    assert content["model_name"] == "census_hashed_ctr"
    assert content["model"]["module"] == "models.census_hashed_ctr"
    assert content["model"]["params"]["table_rows"] == 2**20
    assert content["model"]["params"]["num_shards"] == 2
    assert content["training"]["workers"] == 2
    assert content["training"]["ps"] == 2
    assert content["variables"]["ps_shards"] == 2
    assert content["variables"]["partitioned_variables"] == ["hashed/embedding", "hashed/linear"]
    # The 2^20 x 16 float32 embedding table alone is 64 MiB.
    assert content["variables"]["bytes"] > 64 * 2**20


def test_hashed_2w2ps_reaches_auc(hashed_export):
    from pyscoring.export import score_with_python_tf

    data = census.load(hashed_export.test_path)
    scores = score_with_python_tf(hashed_export.version_dir, data.features)
    auc = evaluation.roc_auc(data.labels, scores["probability"])

    assert auc >= MIN_AUC
    assert hashed_export.manifest["training"]["metrics"]["auc"] == pytest.approx(auc, abs=1e-6)


def shards_holding(contents: list[bytes], block: bytes) -> list[int]:
    return [index for index, content in enumerate(contents) if block in content]


def assert_rows_split_over_shards(prefix: str, name: str) -> None:
    """Check that the two halves of the rows of `name` are in two different shard files."""
    import tensorflow as tf

    shards = sorted(glob.glob(prefix + ".data-*"))
    contents = [Path(path).read_bytes() for path in shards]
    table = tf.train.load_checkpoint(prefix).get_tensor(name)
    half = table.shape[0] // 2
    # fixed_size_partitioner(2) gives each slice half of the rows, and the
    # sharded saver writes each parameter server's slices to its own file.
    # replica_device_setter picks the server of a slice round robin over all
    # variables, so which server stores slice 0 depends on the creation order.
    first = shards_holding(contents, table[:half].tobytes())
    second = shards_holding(contents, table[half:].tobytes())
    assert len(first) == 1, f"{name} slice 0 is in the shards {first}, expected one"
    assert len(second) == 1, f"{name} slice 1 is in the shards {second}, expected one"
    assert first != second, f"{name} slices 0 and 1 are both in shard {first[0]}"


def test_hashed_tables_split_over_ps(hashed_export):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(hashed_export.checkpoint_dir))
    shards = sorted(glob.glob(prefix + ".data-*"))

    assert [Path(path).name[-19:] for path in shards] == [
        "data-00000-of-00002", "data-00001-of-00002"]
    assert_rows_split_over_shards(prefix, "hashed/embedding")
    assert_rows_split_over_shards(prefix, "hashed/linear")


def test_hashed_cluster_ran_once(hashed_export):
    run_dir = hashed_export.run_dir
    registered = {event["node"] for event in read_events(run_dir)
                  if event["event"] == "register"}

    assert registered == {"worker:0", "worker:1", "ps:0", "ps:1"}
    assert transitions(run_dir, "failing over") == []
    assert final_result(run_dir)["version"] == 0


def test_hashed_export_rebuilds_from_manifest(hashed_export):
    from pyscoring.export import build_serving_graph, load_manifest_model

    model, params = load_manifest_model(hashed_export.manifest)
    serving = build_serving_graph(params, model=model)

    assert model.name == "census_hashed_ctr"
    assert params.num_shards == 2
    assert set(serving.outputs) == {"probability", "logit"}


# A model file outside models/: logistic regression over hashed string
# columns, with one partitioned table, no prepare_params and no
# build_train_op, so pyscoring's defaults train it.
USER_MODEL = '''
    """Logistic regression over the hashed census string columns."""

    import dataclasses
    import json
    from typing import NamedTuple

    import tensorflow as tf

    MODEL_NAME = "user_logistic"
    STRING_COLUMNS = ("workclass", "education", "marital_status", "occupation",
                      "relationship", "race", "sex", "native_country")


    class ModelOutputs(NamedTuple):
        logit: tf.Tensor
        probability: tf.Tensor
        loss: object


    @dataclasses.dataclass(frozen=True)
    class ModelParams:
        buckets: int = 4096
        num_shards: int = 1

        def to_json(self):
            return json.dumps(dataclasses.asdict(self), sort_keys=True)

        @classmethod
        def from_json(cls, text):
            return cls(**json.loads(text))


    def build_model(features, mode, params, labels=None):
        weights = tf.compat.v1.get_variable(
            "user/weights", shape=[params.buckets, 1],
            initializer=tf.compat.v1.zeros_initializer(),
            partitioner=tf.compat.v1.fixed_size_partitioner(params.num_shards))
        terms = []
        for name in STRING_COLUMNS:
            salted = tf.strings.join([tf.constant(name), features[name]], separator="=")
            ids = tf.strings.to_hash_bucket_fast(salted, params.buckets)
            terms.append(tf.compat.v1.nn.embedding_lookup(weights, ids,
                                                          partition_strategy="div"))
        age = (tf.cast(features["age"], tf.float32) - 38.0) / 13.0
        bias = tf.compat.v1.get_variable("user/bias", [1],
                                         initializer=tf.compat.v1.zeros_initializer())
        logit = tf.reshape(tf.add_n(terms), [-1]) + 0.5 * age + bias
        probability = tf.sigmoid(logit)
        loss = None
        if mode != "predict":
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.float32), logits=logit))
        return ModelOutputs(logit, probability, loss)
'''


def test_user_model_file_trains_and_exports(tmp_path):
    from pyscoring.export import load_manifest_model, score_with_python_tf

    (tmp_path / "user_model.py").write_text(textwrap.dedent(USER_MODEL))
    train_path = write_head(DATA_DIR / "adult.data", tmp_path / "adult.data", 3000)
    test_path = write_head(DATA_DIR / "adult.test", tmp_path / "adult.test", 1000)
    command = [
        sys.executable, "-m", "pyscoring.cli", "train", "--model", "user_model.py",
        "--data", str(train_path), "--test-data", str(test_path),
        "--export-dir", str(tmp_path / "exports"), "--epochs", "3",
        "--set", "train.batch-size=100", "--set", "train.learning-rate=0.05",
        "--set", 'train.model-params={"buckets": 2048, "num_shards": 2}',
    ]
    # The working directory is tmp_path, so the relative --model path
    # resolves outside the repository.
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                               timeout=CLI_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-4000:]

    version_dir = tmp_path / "exports" / "1"
    content = manifest.read_manifest(version_dir)
    assert content["model_name"] == "user_logistic"
    assert content["model"]["module"] == str(tmp_path / "user_model.py")
    assert content["model"]["params"] == {"buckets": 2048, "num_shards": 2}
    assert content["variables"]["partitioned_variables"] == ["user/weights"]
    assert content["training"]["global_step"] == 3 * 30
    saved_model = json.loads((tmp_path / "exports" / "checkpoints" / "model.json").read_text())
    assert saved_model["model_name"] == "user_logistic"

    data = census.load(test_path)
    scores = score_with_python_tf(version_dir, data.features)
    auc = evaluation.roc_auc(data.labels, scores["probability"])
    assert auc == pytest.approx(content["training"]["metrics"]["auc"], abs=1e-6)
    assert auc >= 0.75

    model, params = load_manifest_model(content)
    assert model.name == "user_logistic"
    assert params.num_shards == 2
