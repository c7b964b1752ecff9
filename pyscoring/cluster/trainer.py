"""Default worker entry: between-graph training of the census model on the cluster.

Every worker builds the same graph with `replica_device_setter`, so
variables live on the parameter servers and each worker computes on its own
device. The setter assigns variables round robin, and the `num_shards`
partitions of one embedding table are created one after the other, so they
land on different servers. Updates are asynchronous. The chief (worker 0) initializes or
restores the variables, writes checkpoints and the exports.

In bounded mode a worker first reads its whole share from the channel and
then cycles over it in shuffled epochs until the global step reaches
`last_step`. In stream mode it trains on batches as records arrive, until
train.max-steps (if set) or the end of the stream; the chief also exports
every train.export-every-steps steps or train.export-every-seconds seconds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Iterator, Mapping

import numpy as np

from models import census_wide_deep as model
from pyscoring import census
from pyscoring.cluster.context import NodeContext

logger = logging.getLogger(__name__)

# Epoch count handed to iterate_batches in bounded mode: the StopAtStepHook
# ends training long before a worker gets through this many passes.
_UNBOUNDED_EPOCHS = 1_000_000


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

    def __init__(self, context: NodeContext, params: model.ModelParams):
        self.checkpoint_dir = context.checkpoint_dir
        self._context = context
        self._params = params
        self._test_data = census.load(context.test_path) if context.test_path else None
        self.last_result: dict[str, Any] | None = None

    def export(self, checkpoint: str, global_step: int) -> dict[str, Any]:
        from pyscoring.export import export_model
        from pyscoring.training.local import evaluate_checkpoint

        if self._test_data is not None:
            metrics = evaluate_checkpoint(checkpoint, self._params, self._test_data)
        else:
            metrics = {"auc": math.nan, "accuracy": math.nan, "loss": math.nan}
        result = export_model(
            checkpoint, self._context.export_dir, self._params, global_step=global_step,
            workers=self._context.num_workers, ps=self._context.num_ps, metrics=metrics)
        logger.info("Exported version %d at global step %d: AUC %.4f, accuracy %.4f, loss %.4f",
                    result.version, global_step, metrics["auc"], metrics["accuracy"],
                    metrics["loss"])
        self.last_result = {"version": result.version, "path": result.path,
                            "global_step": int(global_step), "metrics": metrics}
        return self.last_result


def train_worker(context: NodeContext) -> dict[str, Any]:
    """Train as worker `context.index`; the chief returns its final export."""
    import tensorflow as tf

    from pyscoring.training.local import build_training_graph

    config = context.config
    params = model.ModelParams.from_json(context.model_params_json)
    cluster = tf.train.ClusterSpec(context.cluster_spec)
    worker_device = f"/job:worker/task:{context.index}"
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config["train.seed"])
        setter = tf.compat.v1.train.replica_device_setter(
            cluster=cluster, worker_device=worker_device)
        with tf.compat.v1.device(setter):
            training = build_training_graph(params, config["train.learning-rate"])
            saver = tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True,
                                             max_to_keep=5)
        scaffold = tf.compat.v1.train.Scaffold(saver=saver)
        hooks = []
        if context.last_step:
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

        exporter = _Exporter(context, params) if context.is_chief else None
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
            feeds = _bounded_feeds(context) if context.mode == "bounded" \
                else _stream_feeds(context)
            progress = ProgressRelay(context, context.last_step)
            global_step = start_step
            first_step_at = last_step_at = None
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
        logger.info("Worker %d stopped at global step %d after %d examples",
                    context.index, global_step, progress.examples)

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
