"""Default worker entry: between-graph training of the train.model module on the cluster.

Every worker builds the same graph with `replica_device_setter`, so
variables live on the parameter servers and each worker computes on its own
device. The setter assigns variables round robin, and the partitions of one
variable created with a partitioner of P slices (P = number of servers) are
created one after the other, so they land on different servers. Updates
are asynchronous. The chief (worker 0, or the chief node with train.chief)
initializes or restores the variables, writes checkpoints and the exports.
The chief node trains on no records: it reads the global step every
`_CHIEF_POLL_S` seconds, which runs its checkpoint hooks, until every
worker has finished. With train.evaluator, `run_evaluator` evaluates each
new checkpoint on the test file in a node of its own.

In bounded mode a worker first reads its whole share from the channel and
then cycles over it in shuffled epochs until the global step reaches
`last_step`. In stream mode it trains on batches as records arrive, until
train.max-steps (if set) or the end of the stream; the chief also exports
every train.export-every-steps steps or train.export-every-seconds seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Iterator, Mapping

import numpy as np

from pyscoring import census
from pyscoring.cluster.context import NodeContext
from pyscoring.training.model_module import Model, load_model

logger = logging.getLogger(__name__)

# Epoch count handed to iterate_batches in bounded mode: the StopAtStepHook
# ends training long before a worker gets through this many passes.
_UNBOUNDED_EPOCHS = 1_000_000

# Seconds between the chief node's reads of the global step, and between the
# evaluator's looks for a new checkpoint.
_CHIEF_POLL_S = 0.5
_EVALUATOR_POLL_S = 1.0
EVALUATIONS_FILE = "evaluations.jsonl"


class ProgressRelay:
    """Pass progress to the AM heartbeat and log a line every train.log-every-steps."""

    def __init__(self, context: NodeContext, last_step: int | None):
        from pyscoring.training.local import ProgressReporter

        self._context = context
        self._reporter = ProgressReporter(
            log_every_steps=context.config["train.log-every-steps"],
            last_step=last_step or None, interactive=False)
        self.examples = 0

    def update(self, global_step: int, examples: int, loss: float) -> None:
        self.examples += examples
        self._reporter.update(global_step, examples, loss)
        self._context.report_progress(global_step, loss, self.examples)

    def close(self) -> None:
        self._reporter.close()


def _labels_and_features(columns: Mapping[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    features = {name: columns[name] for name in census.FEATURE_NAMES}
    return features, np.asarray(columns[census.LABEL_COLUMN], dtype=np.int64)


def _bounded_feeds(context: NodeContext) -> Iterator[tuple[dict, np.ndarray]]:
    from pyscoring.cluster.channel import records_to_columns
    from pyscoring.training.local import iterate_batches

    context.records.start_consuming()
    started = time.monotonic()
    records = context.records.read(context.share_size)
    if len(records) != context.share_size:
        raise RuntimeError(
            f"worker {context.index} received {len(records)} of its {context.share_size} "
            "records before the channel ended")
    logger.info("Received this worker's share of %d records in %.1f s",
                len(records), time.monotonic() - started)
    columns = records_to_columns(records, context.column_names, context.column_dtypes)
    features, labels = _labels_and_features(columns)
    seed = context.config["train.seed"] + 1000 * context.index + int(time.time())
    for indices in iterate_batches(len(labels), context.config["train.batch-size"],
                                   _UNBOUNDED_EPOCHS, seed):
        yield {name: values[indices] for name, values in features.items()}, labels[indices]


def _stream_feeds(context: NodeContext) -> Iterator[tuple[dict, np.ndarray]]:
    context.records.start_consuming()
    for columns in context.records.numpy_batches(
            context.config["train.batch-size"], context.column_names, context.column_dtypes):
        yield _labels_and_features(columns)


class _PeriodicExportHook:
    """Chief-only hook: checkpoint and export every N steps or T seconds (stream mode)."""

    def __init__(self, exporter: "_Exporter", saver, every_steps: int, every_seconds: float):
        self._exporter = exporter
        self._saver = saver
        self._every_steps = every_steps
        self._every_seconds = every_seconds
        self._last_step = None
        self._last_time = time.monotonic()

    def due(self, global_step: int) -> bool:
        if self._last_step is None:
            self._last_step = global_step
        if self._every_steps and global_step - self._last_step >= self._every_steps:
            return True
        return bool(self._every_seconds) and \
            time.monotonic() - self._last_time >= self._every_seconds

    def export(self, raw_session, global_step: int) -> None:
        prefix = self._saver.save(raw_session, os.path.join(self._exporter.checkpoint_dir,
                                                            "model.ckpt"),
                                  global_step=global_step)
        self._exporter.export(prefix, global_step)
        self._last_step = global_step
        self._last_time = time.monotonic()


class _Exporter:
    """Evaluate a checkpoint on the test file and write the next export version."""

    def __init__(self, context: NodeContext, model: Model, params):
        self.checkpoint_dir = context.checkpoint_dir
        self._context = context
        self._model = model
        self._params = params
        self._test_data = census.load(context.test_path) if context.test_path else None
        self.last_result: dict[str, Any] | None = None

    def export(self, checkpoint: str, global_step: int) -> dict[str, Any]:
        from pyscoring.export import export_model
        from pyscoring.training.local import evaluate_checkpoint

        if self._test_data is not None:
            metrics = evaluate_checkpoint(checkpoint, self._params, self._test_data,
                                          model=self._model)
        else:
            metrics = {"auc": math.nan, "accuracy": math.nan, "loss": math.nan}
        result = export_model(
            checkpoint, self._context.export_dir, self._params, global_step=global_step,
            workers=self._context.num_workers, ps=self._context.num_ps, metrics=metrics,
            model=self._model)
        logger.info("Exported version %d at global step %d: AUC %.4f, accuracy %.4f, loss %.4f",
                    result.version, global_step, metrics["auc"], metrics["accuracy"],
                    metrics["loss"])
        self.last_result = {"version": result.version, "path": result.path,
                            "global_step": int(global_step), "metrics": metrics}
        return self.last_result


def _follow_global_step(context: NodeContext, session, global_step_tensor,
                        periodic: _PeriodicExportHook | None) -> int:
    """Run the chief node's loop until every worker finished; return the last global step.

    Each read of the global step runs the session's hooks, so the checkpoint
    saver writes after every train.checkpoint-every-steps steps (at the first
    read past them) and every train.checkpoint-every-seconds seconds.
    """
    log_every = context.config["train.log-every-steps"]
    global_step = logged_step = int(session.run(global_step_tensor))
    while not context.workers_done() and not session.should_stop():
        global_step = int(session.run(global_step_tensor))
        context.report_progress(global_step, None, 0)
        if log_every and global_step // log_every > logged_step // log_every:
            logger.info("Global step %d", global_step)
            logged_step = global_step
        if periodic is not None and periodic.due(global_step):
            periodic.export(session._tf_sess(), global_step)  # noqa: SLF001
        time.sleep(_CHIEF_POLL_S)
    logger.info("Every worker finished; the chief node stops at global step %d", global_step)
    return global_step


def train_worker(context: NodeContext) -> dict[str, Any]:
    """Train as worker `context.index` or run the chief node; the chief returns its final export."""
    import tensorflow as tf

    from pyscoring.training.local import build_training_graph

    config = context.config
    model = load_model(config["train.model"])
    params = model.params_from_json(context.model_params_json)
    logger.info("Training %s (%s) with params %s", model.name, model.reference,
                context.model_params_json)
    cluster = tf.train.ClusterSpec(context.cluster_spec)
    worker_device = f"/job:{context.role}/task:{context.index}"
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config["train.seed"])
        setter = tf.compat.v1.train.replica_device_setter(
            cluster=cluster, worker_device=worker_device)
        with tf.compat.v1.device(setter):
            training = build_training_graph(params, config["train.learning-rate"], model=model)
            saver = tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True,
                                             max_to_keep=5)
        scaffold = tf.compat.v1.train.Scaffold(saver=saver)
        hooks = []
        # The chief node stops when every worker finished, not at last_step,
        # so its final checkpoint contains the workers' last updates.
        if context.last_step and context.role != "chief":
            hooks.append(tf.compat.v1.train.StopAtStepHook(last_step=context.last_step))
        chief_hooks = []
        if config["train.checkpoint-every-seconds"] > 0:
            chief_hooks.append(tf.compat.v1.train.CheckpointSaverHook(
                context.checkpoint_dir, save_secs=config["train.checkpoint-every-seconds"],
                scaffold=scaffold))
        session_config = tf.compat.v1.ConfigProto(
            device_filters=["/job:ps", worker_device],
            intra_op_parallelism_threads=config["train.node-threads"],
            inter_op_parallelism_threads=config["train.node-threads"])

        exporter = _Exporter(context, model, params) if context.is_chief else None
        periodic = None
        if context.is_chief and context.mode == "stream" and (
                config["train.export-every-steps"] or config["train.export-every-seconds"]):
            periodic = _PeriodicExportHook(exporter, saver, config["train.export-every-steps"],
                                           config["train.export-every-seconds"])
        if not context.is_chief:
            context.wait_for_chief()

        session = tf.compat.v1.train.MonitoredTrainingSession(
            master=context.server.target, is_chief=context.is_chief,
            checkpoint_dir=context.checkpoint_dir if context.is_chief else None,
            scaffold=scaffold, hooks=hooks, chief_only_hooks=chief_hooks,
            save_checkpoint_steps=config["train.checkpoint-every-steps"],
            save_checkpoint_secs=None, save_summaries_steps=None, save_summaries_secs=None,
            log_step_count_steps=None, config=session_config,
        )
        global_step_tensor = tf.compat.v1.train.get_global_step()
        with session:
            start_step = int(session.run(global_step_tensor))
            logger.info("Session ready at global step %d (%s)", start_step,
                        "restored from a checkpoint" if start_step else "new variables")
            if context.is_chief:
                context.report_ready()
            progress = ProgressRelay(context, context.last_step)
            global_step = start_step
            first_step_at = last_step_at = None
            if context.role == "chief":
                global_step = _follow_global_step(context, session, global_step_tensor,
                                                  periodic)
                feeds = iter(())
            elif context.mode == "bounded":
                feeds = _bounded_feeds(context)
            else:
                feeds = _stream_feeds(context)
            for features, labels in feeds:
                if session.should_stop():
                    break
                feed = {training.features[name]: values for name, values in features.items()}
                feed[training.labels] = labels
                _, loss, global_step = session.run(
                    [training.train_op, training.loss, training.global_step_after],
                    feed_dict=feed)
                last_step_at = time.time()
                first_step_at = first_step_at or last_step_at
                progress.update(int(global_step), len(labels), float(loss))
                if periodic is not None and periodic.due(int(global_step)):
                    periodic.export(session._tf_sess(), int(global_step))  # noqa: SLF001
            progress.close()
        logger.info("%s %d stopped at global step %d after %d examples",
                    context.role.capitalize(), context.index, global_step, progress.examples)

    # Wall-clock times (seconds since the epoch) of this worker's first and last step.
    result: dict[str, Any] = {"global_step": int(global_step), "start_step": start_step,
                              "examples": progress.examples, "first_step_at": first_step_at,
                              "last_step_at": last_step_at}
    if context.is_chief:
        final_checkpoint = tf.train.latest_checkpoint(context.checkpoint_dir)
        if final_checkpoint is None:
            raise RuntimeError(f"no checkpoint in {context.checkpoint_dir} after training")
        step = int(final_checkpoint.rsplit("-", 1)[1])
        result["export"] = exporter.export(final_checkpoint, step)
        result["global_step"] = step
    return result


def _checkpoint_step(checkpoint: str) -> int:
    return int(checkpoint.rsplit("-", 1)[1])


def run_evaluator(context: NodeContext) -> dict[str, Any]:
    """Evaluate the newest checkpoint on the test file whenever it changes, until a stop order.

    Checkpoints written while an evaluation runs are skipped. Runs on the
    evaluator node, which is outside the training cluster and
    only reads checkpoint files, so training never waits for it. Each
    evaluation is appended as one JSON line to RUN_DIR/evaluations.jsonl and
    logged. A checkpoint that cannot be read (removed by the saver's
    max_to_keep while it was evaluated, for example) is logged and skipped.
    After the stop order the latest checkpoint is evaluated once more if it
    is new, which covers the final checkpoint.
    """
    import tensorflow as tf

    from pyscoring.training.local import evaluate_checkpoint

    if not context.test_path:
        raise ValueError("the evaluator node needs a test file; pass test_path or set "
                         "train.evaluator=false")
    model = load_model(context.config["train.model"])
    params = model.params_from_json(context.model_params_json)
    test_data = census.load(context.test_path)
    path = os.path.join(context.run_dir, EVALUATIONS_FILE)
    logger.info("Evaluator watches %s and appends to %s", context.checkpoint_dir, path)
    last_checkpoint = None
    evaluations = 0
    while True:
        # Read before the checkpoint look-up: once the stop order has arrived,
        # the chief has written its final checkpoint, so this pass reads it.
        stopping = context.stop_requested()
        checkpoint = tf.train.latest_checkpoint(context.checkpoint_dir)
        if checkpoint is not None and checkpoint != last_checkpoint:
            last_checkpoint = checkpoint
            started = time.monotonic()
            try:
                metrics = evaluate_checkpoint(checkpoint, params, test_data, model=model)
            except (tf.errors.OpError, OSError, ValueError) as error:
                logger.warning("Skipping checkpoint %s, which could not be evaluated: %s",
                               checkpoint, error)
            else:
                record = {"time": time.time(), "global_step": _checkpoint_step(checkpoint),
                          "checkpoint": os.path.basename(checkpoint),
                          "seconds": round(time.monotonic() - started, 3), **metrics}
                with open(path, "a", encoding="utf-8") as file:
                    file.write(json.dumps(record) + "\n")
                evaluations += 1
                logger.info("Evaluated %s at global step %d in %.1f s: AUC %.4f, accuracy "
                            "%.4f, loss %.4f", record["checkpoint"], record["global_step"],
                            record["seconds"], metrics["auc"], metrics["accuracy"],
                            metrics["loss"])
        if stopping:
            break
        time.sleep(_EVALUATOR_POLL_S)
    logger.info("Evaluator stops after %d evaluations", evaluations)
    return {"evaluations": evaluations,
            "last_checkpoint": os.path.basename(last_checkpoint) if last_checkpoint else None}
