"""Wide-and-deep model of the UCI Adult (census income) data in graph mode.

`build_model` adds the model to the current `tf.compat.v1` graph. It takes
the raw columns of `pyscoring.census.FEATURE_COLUMNS` (strings and int64
numbers, one value per row) and does all preprocessing in the graph, so the
serving signature takes the columns as the files contain them:

- Categorical strings, bucketized age and feature crosses are hashed with
  `tf.strings.to_hash_bucket_fast`. There are no lookup tables, so the
  graph needs no table initializer. A "?" is hashed like any other category.
- The wide side is a linear model over the hashed categoricals and crosses.
- The deep side feeds embeddings of the categoricals and normalized numbers
  into an MLP. The mean and standard deviation of each number come from the
  training data (`compute_numeric_stats`) and are constants in the graph.

Every variable is created with `tf.compat.v1.get_variable`. The embedding
tables and the wide weights are split into `ModelParams.num_shards` slices
with `fixed_size_partitioner`, so parameter servers can hold one slice each.

The module follows pyscoring's model contract
(`pyscoring.training.model_module`): `prepare_params` fills the numeric
statistics and num_shards, and `build_train_op` trains the wide side with
FTRL and the deep side with Adam.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Mapping, NamedTuple

import numpy as np
import tensorflow as tf

from pyscoring import census
# The model contract's modes and output names, which models.census_entry reads from this module.
from pyscoring.training.model_module import (  # noqa: F401
    LOGIT,
    MODE_EVAL,
    MODE_PREDICT,
    MODE_TRAIN,
    MODES,
    PROBABILITY,
)

logger = logging.getLogger(__name__)

MODEL_NAME = "census_wide_deep"

WIDE_SCOPE = "wide"
DEEP_SCOPE = "deep"

CATEGORICAL_COLUMNS: tuple[str, ...] = census.STRING_COLUMNS

# Age boundaries of the bucketized age (years), used on the wide side.
AGE_BOUNDARIES: tuple[float, ...] = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)
AGE_BUCKET = "age_bucket"

# Crosses of the wide side. Each tuple names categorical columns or AGE_BUCKET.
WIDE_CROSSES: tuple[tuple[str, ...], ...] = (
    ("education", "occupation"),
    (AGE_BUCKET, "education", "occupation"),
    ("native_country", "occupation"),
    ("marital_status", "relationship", "sex"),
)

# Transform applied to each integer column before normalization.
# log1p compresses the long right tails of capital gains, losses and fnlwgt.
NUMERIC_TRANSFORMS: dict[str, str] = {
    "age": "identity",
    "fnlwgt": "log1p",
    "education_num": "identity",
    "capital_gain": "log1p",
    "capital_loss": "log1p",
    "hours_per_week": "identity",
}

# Separator of the parts of a crossed feature before hashing. The unit
# separator does not occur in the Adult files.
_CROSS_SEPARATOR = "\x1f"

# FTRL learning rate of the wide side. The deep side's Adam learning rate is
# the configuration key train.learning-rate.
WIDE_LEARNING_RATE = 0.1


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Hyperparameters of the model and the numeric statistics it bakes in.

    `numeric_stats` maps each integer column to the (mean, std) of its
    transformed values in the training data, as `compute_numeric_stats`
    returns it.
    """

    num_shards: int = 1
    category_buckets: int = 1000
    cross_buckets: int = 10000
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = (128, 64)
    numeric_stats: Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self):
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {self.num_shards}")
        for name in ("category_buckets", "cross_buckets", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(
                f"hidden_units must be non-empty positive sizes, got {self.hidden_units}"
            )
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        if self.numeric_stats is not None:
            data["numeric_stats"] = {
                name: [float(mean), float(std)]
                for name, (mean, std) in self.numeric_stats.items()
            }
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelParams":
        data = json.loads(text)
        stats = data.get("numeric_stats")
        if stats is not None:
            data["numeric_stats"] = {
                name: (float(mean), float(std)) for name, (mean, std) in stats.items()
            }
        data["hidden_units"] = tuple(data["hidden_units"])
        return cls(**data)


class ModelOutputs(NamedTuple):
    """Tensors of the model: logit and probability of shape [-1], loss or None."""

    logit: tf.Tensor
    probability: tf.Tensor
    loss: tf.Tensor | None


def compute_numeric_stats(
    features: Mapping[str, np.ndarray],
) -> dict[str, tuple[float, float]]:
    """Compute (mean, std) of each transformed integer column.

    A column with zero variance gets std 1, so normalization only centers it.
    """
    stats = {}
    for name, transform in NUMERIC_TRANSFORMS.items():
        values = np.asarray(features[name], dtype=np.float64)
        if transform == "log1p":
            values = np.log1p(np.maximum(values, 0.0))
        mean = float(values.mean())
        std = float(values.std())
        stats[name] = (mean, std if std > 0 else 1.0)
    return stats


def prepare_params(params: ModelParams, setup) -> ModelParams:
    """Fill the numeric statistics from the training data and num_shards from the PS count.

    `setup` is a `pyscoring.training.model_module.TrainingSetup`. With
    parameter servers, num_shards becomes their number, so each stores one
    slice of every partitioned variable; without them num_shards stays as
    given. Statistics that are already set are kept. Raises ValueError when
    they are unset and `setup` has no training data (stream mode).
    """
    if setup.num_ps >= 1 and params.num_shards != setup.num_ps:
        logger.info("Setting num_shards from %d to the %d parameter servers",
                    params.num_shards, setup.num_ps)
        params = dataclasses.replace(params, num_shards=setup.num_ps)
    if params.numeric_stats is None:
        if setup.train_features is None:
            raise ValueError(
                "params.numeric_stats is missing and there is no training file to compute "
                "it from; set it to models.census_wide_deep.compute_numeric_stats(features) "
                "of sample rows"
            )
        params = dataclasses.replace(
            params, numeric_stats=compute_numeric_stats(setup.train_features))
    return params


def build_train_op(
    loss: tf.Tensor, params: ModelParams, learning_rate: float, global_step: tf.Variable,
) -> tf.Operation:
    """Return one step of FTRL on the wide side and Adam at `learning_rate` on the deep side.

    Both apply gradients of the same loss, and the Adam update increments
    `global_step`.
    """
    del params
    wide_variables = tf.compat.v1.trainable_variables(scope=WIDE_SCOPE + "/")
    deep_variables = tf.compat.v1.trainable_variables(scope=DEEP_SCOPE + "/")
    gradients = tf.gradients(loss, wide_variables + deep_variables)
    wide_gradients = gradients[: len(wide_variables)]
    deep_gradients = gradients[len(wide_variables):]

    wide_update = tf.compat.v1.train.FtrlOptimizer(WIDE_LEARNING_RATE).apply_gradients(
        zip(wide_gradients, wide_variables)
    )
    deep_update = tf.compat.v1.train.AdamOptimizer(learning_rate).apply_gradients(
        zip(deep_gradients, deep_variables), global_step=global_step
    )
    return tf.group(wide_update, deep_update, name="train_op")


def feature_placeholders() -> dict[str, tf.Tensor]:
    """Create one placeholder of shape [None] per feature column, named after it."""
    dtypes = {"int64": tf.int64, "string": tf.string}
    return {
        column.name: tf.compat.v1.placeholder(
            dtypes[column.dtype], shape=[None], name=column.name
        )
        for column in census.FEATURE_COLUMNS
    }


def build_model(
    features: Mapping[str, tf.Tensor],
    mode: str,
    params: ModelParams,
    labels: tf.Tensor | None = None,
) -> ModelOutputs:
    """Add the wide-and-deep model to the current graph and return its outputs.

    `features` maps every name in `census.FEATURE_NAMES` to a rank-1 tensor
    of that column's dtype. In MODE_TRAIN and MODE_EVAL `labels` (0/1, any
    numeric dtype, shape [-1]) is required and the loss is the mean sigmoid
    cross-entropy. In MODE_PREDICT the loss is None.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != MODE_PREDICT and labels is None:
        raise ValueError(f"mode {mode!r} needs labels to compute the loss")
    if params.numeric_stats is None:
        raise ValueError(
            "params.numeric_stats is missing; set it to "
            "compute_numeric_stats(training_features)"
        )
    missing = [name for name in census.FEATURE_NAMES if name not in features]
    if missing:
        raise ValueError(f"features are missing the columns {', '.join(missing)}")

    categories = _categorical_strings(features)
    with tf.compat.v1.variable_scope(WIDE_SCOPE):
        wide_logit = _wide_logit(categories, params)
    with tf.compat.v1.variable_scope(DEEP_SCOPE):
        deep_logit = _deep_logit(features, categories, params)

    logit = tf.identity(wide_logit + deep_logit, name=LOGIT)
    probability = tf.identity(tf.sigmoid(logit), name=PROBABILITY)

    loss = None
    if mode != MODE_PREDICT:
        targets = tf.cast(tf.reshape(labels, [-1]), tf.float32)
        loss = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logit),
            name="loss",
        )
    return ModelOutputs(logit=logit, probability=probability, loss=loss)


def _categorical_strings(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Return every categorical column and AGE_BUCKET as string tensors."""
    categories = {name: features[name] for name in CATEGORICAL_COLUMNS}
    age_bucket = tf.raw_ops.Bucketize(
        input=tf.cast(features["age"], tf.float32), boundaries=list(AGE_BOUNDARIES)
    )
    categories[AGE_BUCKET] = tf.strings.as_string(age_bucket)
    return categories


def _partitioned_variable(name, shape, initializer, params: ModelParams):
    return tf.compat.v1.get_variable(
        name,
        shape=shape,
        dtype=tf.float32,
        initializer=initializer,
        partitioner=tf.compat.v1.fixed_size_partitioner(params.num_shards),
    )


def _lookup(table, ids: tf.Tensor) -> tf.Tensor:
    # "div" gives each slice a contiguous row range, which is how
    # fixed_size_partitioner splits the table, so row i of the full variable
    # is the embedding of bucket i.
    return tf.compat.v1.nn.embedding_lookup(table, ids, partition_strategy="div")


def _wide_logit(categories: Mapping[str, tf.Tensor], params: ModelParams) -> tf.Tensor:
    zeros = tf.compat.v1.zeros_initializer()
    terms = []
    for name in CATEGORICAL_COLUMNS + (AGE_BUCKET,):
        ids = tf.strings.to_hash_bucket_fast(categories[name], params.category_buckets)
        weights = _partitioned_variable(
            f"weights/{name}", [params.category_buckets, 1], zeros, params
        )
        terms.append(_lookup(weights, ids))
    for cross in WIDE_CROSSES:
        name = "_x_".join(cross)
        joined = tf.strings.join(
            [categories[part] for part in cross], separator=_CROSS_SEPARATOR
        )
        ids = tf.strings.to_hash_bucket_fast(joined, params.cross_buckets)
        weights = _partitioned_variable(
            f"weights/{name}", [params.cross_buckets, 1], zeros, params
        )
        terms.append(_lookup(weights, ids))
    bias = tf.compat.v1.get_variable("bias", shape=[1], initializer=zeros)
    return tf.reshape(tf.add_n(terms) + bias, [-1])


def _normalized_numbers(
    features: Mapping[str, tf.Tensor], params: ModelParams
) -> tf.Tensor:
    columns = []
    for name, transform in NUMERIC_TRANSFORMS.items():
        if name not in params.numeric_stats:
            raise ValueError(f"params.numeric_stats has no entry for {name!r}")
        mean, std = params.numeric_stats[name]
        values = tf.cast(features[name], tf.float32)
        if transform == "log1p":
            values = tf.math.log1p(tf.maximum(values, 0.0))
        columns.append((values - mean) / std)
    return tf.stack(columns, axis=1)


def _deep_logit(
    features: Mapping[str, tf.Tensor],
    categories: Mapping[str, tf.Tensor],
    params: ModelParams,
) -> tf.Tensor:
    embedding_init = tf.compat.v1.truncated_normal_initializer(
        stddev=1.0 / math.sqrt(params.embedding_dim)
    )
    inputs = []
    for name in CATEGORICAL_COLUMNS:
        ids = tf.strings.to_hash_bucket_fast(categories[name], params.category_buckets)
        table = _partitioned_variable(
            f"embedding/{name}",
            [params.category_buckets, params.embedding_dim],
            embedding_init,
            params,
        )
        inputs.append(_lookup(table, ids))
    inputs.append(_normalized_numbers(features, params))
    hidden = tf.concat(inputs, axis=1)

    for index, units in enumerate(params.hidden_units):
        hidden = tf.nn.relu(_dense(f"hidden_{index}", hidden, units))
    return tf.reshape(_dense("logit", hidden, 1), [-1])


def _dense(scope: str, inputs: tf.Tensor, units: int) -> tf.Tensor:
    with tf.compat.v1.variable_scope(scope):
        kernel = tf.compat.v1.get_variable(
            "kernel",
            shape=[inputs.shape[-1], units],
            initializer=tf.compat.v1.glorot_uniform_initializer(),
        )
        bias = tf.compat.v1.get_variable(
            "bias", shape=[units], initializer=tf.compat.v1.zeros_initializer()
        )
    return tf.matmul(inputs, kernel) + bias
