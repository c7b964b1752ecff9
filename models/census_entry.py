"""Node entry function for the ML cluster: the census model with a tf.data input.

Run it with `--set train.node-entry=models.census_entry:main`. It shows the
full-control style: this function owns the graph, the session, the input
pipeline and the export, and pyscoring only starts it on every worker with
a `NodeContext`. The default entry, `pyscoring.cluster.trainer`, trains the
same model from numpy batches with the same model function.

In bounded mode the worker's share arrives once and the dataset ends after
it, so caching and repeating it gives the further epochs. The
StopAtStepHook ends training.
In stream mode the dataset follows the stream.
"""

from __future__ import annotations

import tensorflow as tf

from models import census_wide_deep as model
from pyscoring import census


def main(context) -> dict:
    """Train as one worker of the cluster; the chief returns its export."""
    from pyscoring.export import export_model
    from pyscoring.training.local import evaluate_checkpoint

    config = context.config
    batch_size = config["train.batch-size"]
    params = model.ModelParams.from_json(context.model_params_json)
    worker_device = f"/job:worker/task:{context.index}"

    graph = tf.Graph()
    with graph.as_default():
        setter = tf.compat.v1.train.replica_device_setter(
            cluster=tf.train.ClusterSpec(context.cluster_spec), worker_device=worker_device)
        with tf.compat.v1.device(setter):
            dataset = context.dataset(batch_size)
            if context.mode == "bounded":
                dataset = dataset.cache().shuffle(16).repeat()
            batch = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
            features = {name: batch[name] for name in census.FEATURE_NAMES}
            labels = batch[census.LABEL_COLUMN]

            global_step = tf.compat.v1.train.get_or_create_global_step()
            outputs = model.build_model(features, model.MODE_TRAIN, params, labels=labels)
            train_op = tf.compat.v1.train.AdamOptimizer(
                config["train.learning-rate"]).minimize(outputs.loss, global_step=global_step)
            saver = tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True)

        hooks = [tf.compat.v1.train.StopAtStepHook(last_step=context.last_step)] \
            if context.last_step else []
        if not context.is_chief:
            context.wait_for_chief()
        session = tf.compat.v1.train.MonitoredTrainingSession(
            master=context.server.target, is_chief=context.is_chief,
            checkpoint_dir=context.checkpoint_dir if context.is_chief else None,
            scaffold=tf.compat.v1.train.Scaffold(saver=saver), hooks=hooks,
            save_checkpoint_steps=config["train.checkpoint-every-steps"],
            save_checkpoint_secs=None, save_summaries_steps=None, save_summaries_secs=None,
            log_step_count_steps=None,
            config=tf.compat.v1.ConfigProto(device_filters=["/job:ps", worker_device]))
        examples = 0
        step = 0
        with session:
            if context.is_chief:
                context.report_ready()
            while not session.should_stop():
                _, loss, step = session.run([train_op, outputs.loss, global_step])
                examples += batch_size
                context.report_progress(step, loss, examples)

    if not context.is_chief:
        return {"global_step": int(step), "examples": examples}
    checkpoint = tf.train.latest_checkpoint(context.checkpoint_dir)
    step = int(checkpoint.rsplit("-", 1)[1])
    metrics = evaluate_checkpoint(checkpoint, params, census.load(context.test_path))
    result = export_model(checkpoint, context.export_dir, params, global_step=step,
                          workers=context.num_workers, ps=context.num_ps, metrics=metrics)
    return {"global_step": step, "examples": examples,
            "export": {"version": result.version, "path": result.path,
                       "global_step": step, "metrics": metrics}}
