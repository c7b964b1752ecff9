"""Hashed-embedding click-through-style model of the census data, built for PS sharding.

Recommendation and search models keep most of their bytes in one large
embedding table indexed by hashed feature crosses. This model has that
shape on the census columns: every categorical column, the bucketized
numbers and every pair of them are hashed into one table of
`ModelParams.table_rows` x `ModelParams.embedding_dim` floats (2^20 x 16 is
64 MiB). The embeddings of each field are pooled, concatenated and fed to a
small MLP; a linear term over the same hashed ids comes from a second,
one-column table.

Both tables come from `tf.compat.v1.get_variable` with a
`fixed_size_partitioner` of `ModelParams.num_shards` slices, so each
parameter server stores one contiguous slice of rows. The graph needs no
table initializer: ids are hashes of strings. The serving signature takes
the raw census columns, like `census_wide_deep`.

The module follows pyscoring's model contract
(`pyscoring.training.model_module`); train it with
`pyscoring train --model models.census_hashed_ctr`. `prepare_params` sets
num_shards to the number of parameter servers, and `build_train_op`
updates the two tables with Adagrad, whose sparse update touches only the
rows of a batch, and the dense layers with Adam.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Mapping

import tensorflow as tf

from models.census_wide_deep import ModelOutputs
from pyscoring import census
from pyscoring.training.model_module import LOGIT, MODE_PREDICT, MODES, PROBABILITY

MODEL_NAME = "census_hashed_ctr"

# Boundaries of the bucketized numbers, in the columns' own units.
NUMERIC_BOUNDARIES: dict[str, tuple[float, ...]] = {
    "age": (18, 22, 25, 28, 31, 35, 40, 45, 50, 55, 60, 65, 70),
    "education_num": (4, 7, 9, 10, 11, 12, 13, 14, 15),
    "hours_per_week": (20, 30, 35, 40, 41, 45, 50, 60),
    "capital_gain": (1, 3000, 5000, 7000, 10000, 15000),
    "capital_loss": (1, 1500, 1800, 2000, 2500),
}

_SEPARATOR = "\x1f"

# Adagrad learning rate of the two hashed tables. The dense layers' Adam
# learning rate is the configuration key train.learning-rate.
TABLE_LEARNING_RATE = 0.1


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Sizes of the hashed model.

    `table_rows` hash buckets shared by every field and cross; `num_shards`
    slices per table, one per parameter server.
    """

    table_rows: int = 2**20
    embedding_dim: int = 16
    hidden_units: tuple[int, ...] = (64,)
    num_shards: int = 1

    def __post_init__(self):
        if self.table_rows < self.num_shards:
            raise ValueError(
                f"table_rows ({self.table_rows}) must be at least num_shards ({self.num_shards})"
            )
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {self.num_shards}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be at least 1, got {self.embedding_dim}")
        if min(self.hidden_units, default=1) < 1:
            raise ValueError(f"hidden_units must be positive sizes, got {self.hidden_units}")
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelParams":
        data = json.loads(text)
        if "hidden_units" in data:
            data["hidden_units"] = tuple(data["hidden_units"])
        return cls(**data)


def prepare_params(params: ModelParams, setup) -> ModelParams:
    """Set num_shards to the number of parameter servers, or keep it without them.

    `setup` is a `pyscoring.training.model_module.TrainingSetup`.
    """
    if setup.num_ps >= 1 and params.num_shards != setup.num_ps:
        params = dataclasses.replace(params, num_shards=setup.num_ps)
    return params


def build_train_op(
    loss: tf.Tensor, params: ModelParams, learning_rate: float, global_step: tf.Variable,
) -> tf.Operation:
    """Return one step of Adagrad on the hashed tables and Adam on the dense layers.

    The Adam update increments `global_step`.
    """
    tables = [variable for variable in tf.compat.v1.trainable_variables(scope="hashed/")
              if variable.name.startswith(("hashed/embedding", "hashed/linear"))]
    dense = [variable for variable in tf.compat.v1.trainable_variables()
             if not any(variable is table for table in tables)]
    gradients = tf.gradients(loss, tables + dense)
    table_update = tf.compat.v1.train.AdagradOptimizer(TABLE_LEARNING_RATE).apply_gradients(
        zip(gradients[: len(tables)], tables))
    dense_update = tf.compat.v1.train.AdamOptimizer(learning_rate).apply_gradients(
        zip(gradients[len(tables):], dense), global_step=global_step)
    return tf.group(table_update, dense_update, name="train_op")


def fields(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Return every field as a string tensor: categoricals, bucketized numbers, pair crosses."""
    singles = {name: features[name] for name in census.STRING_COLUMNS}
    for name, boundaries in NUMERIC_BOUNDARIES.items():
        buckets = tf.raw_ops.Bucketize(
            input=tf.cast(features[name], tf.float32), boundaries=list(boundaries)
        )
        singles[name] = tf.strings.as_string(buckets)
    result = dict(singles)
    for left, right in itertools.combinations(sorted(singles), 2):
        result[f"{left}_x_{right}"] = tf.strings.join(
            [singles[left], singles[right]], separator=_SEPARATOR
        )
    return result


def build_model(
    features: Mapping[str, tf.Tensor],
    mode: str,
    params: ModelParams,
    labels: tf.Tensor | None = None,
) -> ModelOutputs:
    """Add the hashed model to the current graph and return logit, probability and loss."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != MODE_PREDICT and labels is None:
        raise ValueError(f"mode {mode!r} needs labels to compute the loss")

    field_tensors = fields(features)
    partitioner = tf.compat.v1.fixed_size_partitioner(params.num_shards)
    with tf.compat.v1.variable_scope("hashed"):
        table = tf.compat.v1.get_variable(
            "embedding",
            shape=[params.table_rows, params.embedding_dim],
            initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.01),
            partitioner=partitioner,
        )
        linear = tf.compat.v1.get_variable(
            "linear",
            shape=[params.table_rows, 1],
            initializer=tf.compat.v1.zeros_initializer(),
            partitioner=partitioner,
        )
        pooled = []
        linear_terms = []
        for name in sorted(field_tensors):
            # The field name salts the hash, so equal strings of two fields differ.
            salted = tf.strings.join([tf.constant(name), field_tensors[name]], separator=_SEPARATOR)
            ids = tf.strings.to_hash_bucket_fast(salted, params.table_rows)
            pooled.append(tf.compat.v1.nn.embedding_lookup(table, ids, partition_strategy="div"))
            linear_terms.append(
                tf.compat.v1.nn.embedding_lookup(linear, ids, partition_strategy="div")
            )
        hidden = tf.concat(pooled, axis=1)
        for index, units in enumerate(params.hidden_units):
            hidden = tf.nn.relu(_dense(f"dense_{index}", hidden, units))
        deep = tf.reshape(_dense("output", hidden, 1), [-1])
        bias = tf.compat.v1.get_variable("bias", [1], initializer=tf.compat.v1.zeros_initializer())
        wide = tf.reshape(tf.add_n(linear_terms), [-1]) + bias

    logit = tf.identity(wide + deep, name=LOGIT)
    probability = tf.identity(tf.sigmoid(logit), name=PROBABILITY)
    loss = None
    if mode != MODE_PREDICT:
        targets = tf.cast(tf.reshape(labels, [-1]), tf.float32)
        loss = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logit), name="loss"
        )
    return ModelOutputs(logit=logit, probability=probability, loss=loss)


def _dense(scope: str, inputs: tf.Tensor, units: int) -> tf.Tensor:
    with tf.compat.v1.variable_scope(scope):
        weights = tf.compat.v1.get_variable(
            "weights", [inputs.shape[-1], units],
            initializer=tf.compat.v1.glorot_uniform_initializer(),
        )
        bias = tf.compat.v1.get_variable("bias", [units], initializer=tf.compat.v1.zeros_initializer())
    return tf.matmul(inputs, weights) + bias
