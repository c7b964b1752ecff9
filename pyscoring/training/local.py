"""Single-process training of a model module: 1 worker, 0 parameter servers.

`train` loads the model module of train.model, loads the training file,
runs the step loop in a `MonitoredTrainingSession` that writes
checkpoints, evaluates the latest checkpoint on the test file and exports
it. The graph builder (`build_training_graph`), the batch order
(`iterate_batches`) and the step loop (`run_train_loop`) are separate
functions so that multi-node training can reuse them with its own session
and device placement.

Functions that take `params` and an optional `model` use the model module
that defines the class of `params` when `model` is None.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Iterator, Mapping, NamedTuple, TextIO

import numpy as np
import tensorflow as tf

from pyscoring import census, evaluation
from pyscoring.config import Config, ConfigError
from pyscoring.export import (
    ExportResult,
    build_serving_graph,
    export_model,
    resolve_checkpoint,
    restore_serving_session,
)
from pyscoring.training.model_module import (
    DEFAULT_MODEL,
    LOGIT,
    MODE_TRAIN,
    PROBABILITY,
    Model,
    TrainingSetup,
    feature_placeholders,
    load_model,
    model_of_params,
    resolve_reference,
)

logger = logging.getLogger(__name__)

PARAMS_FILE = "model_params.json"
# Name and reference of the model module whose variables the checkpoint holds.
MODEL_FILE = "model.json"
EVAL_BATCH_SIZE = 4096


class TrainingGraph(NamedTuple):
    """Tensors of the training graph that the step loop feeds and runs."""

    features: dict[str, tf.Tensor]
    labels: tf.Tensor
    loss: tf.Tensor
    train_op: tf.Operation
    # Global step after this step's update, read in the same session run.
    global_step_after: tf.Tensor


class LoopResult(NamedTuple):
    """Outcome of `run_train_loop`: last global step and loss, examples trained."""

    global_step: int
    last_loss: float
    examples: int


def is_local_topology(config: Config) -> bool:
    """Return True for 1 worker and 0 parameter servers, which train in this process."""
    return config["train.workers"] == 1 and config["train.ps"] == 0


def validate_topology(config: Config) -> None:
    """Raise ConfigError unless train.workers is 1 and train.ps is 0, as `train` here needs."""
    workers, ps = config["train.workers"], config["train.ps"]
    if not is_local_topology(config):
        raise ConfigError(
            f"train.workers={workers} and train.ps={ps} request multi-node "
            "training, which this in-process trainer does not run; call "
            "pyscoring.training.train, which runs it on the Flink ML cluster"
        )


def resolve_model(config: Config, model_params=None) -> Model:
    """Return the model module to train: that of `model_params`, else train.model.

    Raises ConfigError when train.model names another module than the one
    that defines `model_params`, or when both `model_params` and
    train.model-params are given.
    """
    configured = config["train.model"]
    if model_params is None:
        return load_model(configured)
    if config["train.model-params"].strip():
        raise ConfigError(
            "train.model-params is set and model_params is passed as well; give the "
            "hyperparameters in one of the two"
        )
    model = model_of_params(model_params)
    if resolve_reference(configured) not in (DEFAULT_MODEL, model.reference):
        if load_model(configured).module is not model.module:
            raise ConfigError(
                f"train.model is {configured!r}, but model_params is a ModelParams of "
                f"{model.reference!r}; pass params of {configured!r} or set train.model "
                f"to {model.reference!r}"
            )
    return model


def requested_params(config: Config, model: Model, model_params=None):
    """Return `model_params`, or the model's defaults with train.model-params applied."""
    if model_params is not None:
        return model_params
    return model.params_with_overrides(config["train.model-params"])


def train(
    config: Config,
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> ExportResult:
    """Train the model of train.model, evaluate it on `test_path` and export the next version.

    Reads train.model, train.model-params, train.epochs, train.batch-size,
    train.learning-rate, train.checkpoint-every-steps,
    train.log-every-steps and train.seed from `config`. `model_params`, a
    ModelParams of the model module, sets the model's hyperparameters; the
    module's `prepare_params` fills its data-dependent fields from
    `train_path`. Training resumes from the latest checkpoint in
    `checkpoint_dir`, if any, with the model parameters saved there (see
    `resolve_model_params`). It stops at epochs * ceil(rows / batch size)
    global steps.
    """
    validate_topology(config)
    checkpoint_dir = os.fspath(checkpoint_dir)
    model = resolve_model(config, model_params)

    train_data = census.load(train_path)
    test_data = census.load(test_path)
    params = resolve_model_params(
        requested_params(config, model, model_params), train_data.features, checkpoint_dir,
        model=model)

    logger.info(
        "Training %s (%s) on %d rows of %s for %d epochs, batch size %d",
        model.name, model.reference, train_data.num_rows, train_path,
        config["train.epochs"], config["train.batch-size"],
    )
    started = time.monotonic()
    result = train_in_process(config, params, train_data, checkpoint_dir, model=model)
    train_seconds = time.monotonic() - started

    metrics = evaluate_checkpoint(checkpoint_dir, params, test_data, model=model)
    logger.info(
        "Trained %d steps in %.1f s; on %s: AUC %.4f, accuracy %.4f, loss %.4f",
        result.global_step, train_seconds, test_path,
        metrics["auc"], metrics["accuracy"], metrics["loss"],
    )
    return export_model(
        checkpoint_dir, export_dir, params,
        global_step=result.global_step, workers=1, ps=0, metrics=metrics, model=model,
    )


def resolve_model_params(
    model_params,
    train_features: Mapping[str, np.ndarray] | None,
    checkpoint_dir: str,
    *,
    model: Model | None = None,
    num_workers: int = 1,
    num_ps: int = 0,
):
    """Return the model parameters to train with and save them in `checkpoint_dir`.

    `model_params` None means the defaults of `model` (DEFAULT_MODEL when
    `model` is None too). The module's `prepare_params` fills the
    data-dependent fields from `train_features` and the topology. When
    `checkpoint_dir` already contains a checkpoint and its saved parameters,
    those are used, because the checkpoint's variables were trained with
    them. Fields left None in `model_params` take their saved values. Raises
    ValueError when the checkpoint belongs to another model, or when
    `model_params` differs from the saved parameters.
    """
    if model is None:
        model = model_of_params(model_params) if model_params is not None \
            else load_model(DEFAULT_MODEL)
    requested = model_params if model_params is not None else model.default_params()
    setup = TrainingSetup(train_features=train_features, num_workers=num_workers,
                          num_ps=num_ps)
    params = model.prepare_params(requested, setup)

    if tf.train.latest_checkpoint(checkpoint_dir) and os.path.isfile(
        os.path.join(checkpoint_dir, PARAMS_FILE)
    ):
        _check_checkpoint_model(checkpoint_dir, model)
        saved = read_model_params(checkpoint_dir, model=model)
        unset = {
            field.name: getattr(saved, field.name)
            for field in dataclasses.fields(requested)
            if getattr(requested, field.name) is None
        }
        if dataclasses.replace(params, **unset) != saved:
            raise ValueError(
                f"{checkpoint_dir} contains a checkpoint trained with other model "
                f"parameters ({PARAMS_FILE}); pass an empty checkpoint folder to "
                "train with new parameters"
            )
        return saved

    os.makedirs(checkpoint_dir, exist_ok=True)
    with open(os.path.join(checkpoint_dir, PARAMS_FILE), "w", encoding="utf-8") as file:
        file.write(params.to_json())
    with open(os.path.join(checkpoint_dir, MODEL_FILE), "w", encoding="utf-8") as file:
        json.dump({"model_name": model.name, "module": model.reference}, file, indent=2)
    return params


def _check_checkpoint_model(checkpoint_dir: str, model: Model) -> None:
    # Checkpoint folders written before MODEL_FILE existed hold census_wide_deep.
    path = os.path.join(checkpoint_dir, MODEL_FILE)
    saved_name = "census_wide_deep"
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            saved_name = json.load(file)["model_name"]
    if saved_name != model.name:
        raise ValueError(
            f"{checkpoint_dir} contains a checkpoint of the model {saved_name!r}, not of "
            f"{model.name!r} ({model.reference}); pass an empty checkpoint folder or "
            f"train {saved_name!r}"
        )


def read_model_params(checkpoint_dir: str | os.PathLike[str], *, model: Model | None = None):
    """Read the model parameters that training saved in `checkpoint_dir`.

    `model` parses them; None means DEFAULT_MODEL.
    """
    model = model or load_model(DEFAULT_MODEL)
    path = os.path.join(os.fspath(checkpoint_dir), PARAMS_FILE)
    with open(path, encoding="utf-8") as file:
        return model.params_from_json(file.read())


def build_training_graph(
    params, learning_rate: float, *, model: Model | None = None,
) -> TrainingGraph:
    """Add the model, its loss and its training operation to the current graph.

    The training operation comes from the module's `build_train_op` with
    `learning_rate`, or is Adam over every trainable variable (see
    `Model.build_train_op`); it increments the global step.
    """
    model = model or model_of_params(params)
    global_step = tf.compat.v1.train.get_or_create_global_step()
    features = feature_placeholders()
    labels = tf.compat.v1.placeholder(tf.int64, shape=[None], name="labels")
    outputs = model.build_model(features, MODE_TRAIN, params, labels=labels)
    train_op = model.build_train_op(outputs.loss, params, learning_rate, global_step)
    with tf.control_dependencies([train_op]):
        global_step_after = tf.identity(global_step.read_value(), name="global_step_after")
    return TrainingGraph(
        features=features,
        labels=labels,
        loss=outputs.loss,
        train_op=train_op,
        global_step_after=global_step_after,
    )


def steps_per_epoch(num_rows: int, batch_size: int) -> int:
    return math.ceil(num_rows / batch_size)


def iterate_batches(
    num_rows: int, batch_size: int, epochs: int, seed: int, start_step: int = 0
) -> Iterator[np.ndarray]:
    """Yield row indices of each step: every epoch is a new permutation of the rows.

    The last batch of an epoch has the remaining rows and may be smaller.
    The order depends only on the arguments, so resuming at `start_step`
    yields the batches that an uninterrupted run would have yielded next.
    """
    rng = np.random.default_rng(seed)
    per_epoch = steps_per_epoch(num_rows, batch_size)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(num_rows)
        for index in range(per_epoch):
            if step >= start_step:
                yield order[index * batch_size: (index + 1) * batch_size]
            step += 1


def run_train_loop(
    session,
    graph: TrainingGraph,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batches: Iterator[np.ndarray],
    progress: "ProgressReporter",
) -> LoopResult:
    """Run one training step per batch of row indices until the batches or the session end.

    `session` is a `MonitoredSession` or a plain `Session`. The loop stops
    early when the session's `should_stop()` returns True, for example after
    a `StopAtStepHook`.
    """
    global_step = 0
    last_loss = math.nan
    examples = 0
    should_stop = getattr(session, "should_stop", lambda: False)
    for indices in batches:
        if should_stop():
            break
        feed = {graph.features[name]: values[indices] for name, values in features.items()}
        feed[graph.labels] = labels[indices]
        _, loss, global_step = session.run(
            [graph.train_op, graph.loss, graph.global_step_after], feed_dict=feed
        )
        last_loss = float(loss)
        examples += len(indices)
        progress.update(int(global_step), len(indices), last_loss)
    progress.close()
    return LoopResult(global_step=int(global_step), last_loss=last_loss, examples=examples)


def train_in_process(
    config: Config, params, data: census.CensusData, checkpoint_dir: str,
    *, model: Model | None = None,
) -> LoopResult:
    """Run the training steps of one chief worker in this process.

    Checkpoints go to `checkpoint_dir` every train.checkpoint-every-steps
    steps and at the end. Returns the final global step, which is the step
    of the latest checkpoint.
    """
    batch_size = config["train.batch-size"]
    last_step = config["train.epochs"] * steps_per_epoch(data.num_rows, batch_size)

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config["train.seed"])
        training = build_training_graph(params, config["train.learning-rate"], model=model)
        # Relative paths in the "checkpoint" state file keep the folder
        # usable after it is moved or copied.
        saver = tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True)
        session = tf.compat.v1.train.MonitoredTrainingSession(
            checkpoint_dir=checkpoint_dir,
            scaffold=tf.compat.v1.train.Scaffold(saver=saver),
            hooks=[tf.compat.v1.train.StopAtStepHook(last_step=last_step)],
            save_checkpoint_steps=config["train.checkpoint-every-steps"],
            save_checkpoint_secs=None,
            save_summaries_steps=None,
            save_summaries_secs=None,
            log_step_count_steps=None,
        )
        with session:
            start_step = int(session.run(tf.compat.v1.train.get_global_step()))
            if start_step:
                logger.info("Resuming from global step %d in %s", start_step, checkpoint_dir)
            batches = iterate_batches(
                data.num_rows, batch_size, config["train.epochs"],
                config["train.seed"], start_step=start_step,
            )
            progress = ProgressReporter(
                log_every_steps=config["train.log-every-steps"], last_step=last_step
            )
            result = run_train_loop(
                session, training, data.features, data.labels, batches, progress
            )
    if result.examples == 0:
        result = result._replace(global_step=start_step)
    return result


def predict_checkpoint(
    checkpoint: str | os.PathLike[str], params,
    features: Mapping[str, np.ndarray], batch_size: int = EVAL_BATCH_SIZE,
    *, model: Model | None = None,
) -> dict[str, np.ndarray]:
    """Score `features` with the serving graph restored from `checkpoint`."""
    serving = build_serving_graph(params, model=model)
    num_rows = len(next(iter(features.values())))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in serving.outputs}
    with restore_serving_session(serving, checkpoint) as session:
        for start in range(0, num_rows, batch_size):
            feed = {
                serving.inputs[name]: values[start: start + batch_size]
                for name, values in features.items()
            }
            values = session.run(serving.outputs, feed_dict=feed)
            for name, value in values.items():
                chunks[name].append(value)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str], params, data: census.CensusData,
    *, model: Model | None = None,
) -> dict[str, float]:
    """Return ROC AUC, accuracy at 0.5 and mean log loss of `checkpoint` on `data`."""
    prefix = resolve_checkpoint(checkpoint)
    outputs = predict_checkpoint(prefix, params, data.features, model=model)
    return evaluation.binary_metrics(data.labels, outputs[PROBABILITY], outputs[LOGIT])


class ProgressReporter:
    """Report training progress: global step, examples per second and loss.

    On a terminal it rewrites one status line at most every
    `refresh_seconds`. Otherwise it logs a line each time the global step
    passes a multiple of `log_every_steps`.
    """

    def __init__(
        self, log_every_steps: int, last_step: int | None = None,
        stream: TextIO | None = None, interactive: bool | None = None,
        refresh_seconds: float = 0.25,
    ):
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = (
            self._stream.isatty() if interactive is None else interactive
        )
        self._log_every_steps = log_every_steps
        self._last_step = last_step
        self._refresh_seconds = refresh_seconds
        self._interval_start = time.monotonic()
        self._interval_examples = 0
        self._reported_step: int | None = None
        self._latest: tuple[int, float] | None = None
        self._wrote_line = False

    def update(self, global_step: int, examples: int, loss: float) -> None:
        self._interval_examples += examples
        self._latest = (global_step, loss)
        elapsed = time.monotonic() - self._interval_start
        if self._interactive:
            if elapsed >= self._refresh_seconds:
                self._report()
        else:
            previous = self._reported_step or 0
            if global_step // self._log_every_steps > previous // self._log_every_steps:
                self._report()

    def close(self) -> None:
        """End the status line on a terminal, first showing the last step if it is not shown."""
        if not self._interactive:
            return
        if self._latest is not None and self._latest[0] != self._reported_step:
            self._report()
        if self._wrote_line:
            self._stream.write("\n")
            self._stream.flush()

    def _report(self) -> None:
        global_step, loss = self._latest
        now = time.monotonic()
        elapsed = now - self._interval_start
        rate = self._interval_examples / elapsed if elapsed > 0 else 0.0
        step_text = str(global_step)
        if self._last_step is not None:
            step_text += f"/{self._last_step}"
        text = f"step {step_text}  {rate:,.0f} examples/s  loss {loss:.4f}"
        if self._interactive:
            self._stream.write("\r\x1b[K" + text)
            self._stream.flush()
            self._wrote_line = True
        else:
            logger.info("Training %s", text)
        self._reported_step = global_step
        self._interval_start = now
        self._interval_examples = 0
