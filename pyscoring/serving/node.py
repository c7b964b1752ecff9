"""Entry of a scoring worker node on the PS path: `serve_worker(context)`.

The node imports the export's SavedModel graph under a
`replica_device_setter`, so every variable lives on a parameter server and
the worker only computes. The chief (worker 0) restores the variables with
a sharded saver: each parameter server runs the restore op of its own
variables and reads them from `<version>/variables/` itself, so no variable
passes through a worker. The other workers wait until the chief reports
that the variables are ready.

Requests arrive on the node's record channel, one batch per record: a list
of row tuples in the order of the signature's inputs. Each request gets
one response on the response channel: a dict with "outputs" (one list per
signature output, None for a failed row) and "errors" (None, or
(reason_code, reason) per row). A batch that TensorFlow rejects is split
in halves until the failing rows stand alone, so the other rows are still
scored. Errors that concern the cluster, such as an unreachable parameter
server, end the node, and the Flink job restarts the cluster.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from pyscoring.cluster.channel import records_to_columns
from pyscoring.cluster.context import NodeContext

logger = logging.getLogger(__name__)

SERVE_TAG = "serve"
SIGNATURE_KEY = "serving_default"
ROW_ERROR_CODE = "TF_ERROR"


def byte_greedy_strategy(num_tasks: int) -> Callable:
    """Return a `ps_strategy` that puts each variable on the least-loaded parameter server.

    Loads are counted in bytes of the variables' declared shapes, so the
    slices of a partitioned table spread over the servers and the small
    dense variables fill the gaps.
    """
    import tensorflow as tf

    loads = [0] * num_tasks

    def choose(op) -> int:
        task = loads.index(min(loads))
        size = 4
        if "shape" in op.node_def.attr:
            for dimension in tf.TensorShape(op.get_attr("shape")).as_list():
                size *= max(1, dimension or 1)
        loads[task] += size
        return task

    return choose


def _load_meta_graph(version_dir: str):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{version_dir} has no MetaGraph tagged {SERVE_TAG!r}; re-export the model")


def colocate_reads(graph_def) -> int:
    """Colocate each uncolocated ReadVariableOp with its variable; return how many changed.

    A SavedModel keeps colocation only where the graph asked for it. Without
    it, the reads that a saver uses to find a variable's device land on the
    worker after import, and the sharded saver would restore those
    variables through the worker instead of on their parameter servers.
    """
    handles = {node.name for node in graph_def.node if node.op == "VarHandleOp"}
    changed = 0
    for node in graph_def.node:
        if node.op != "ReadVariableOp" or "_class" in node.attr or not node.input:
            continue
        handle = node.input[0].split(":")[0].lstrip("^")
        if handle in handles:
            node.attr["_class"].list.s.append(f"loc:@{handle}".encode())
            changed += 1
    return changed


class ShardedModel:
    """The export's graph with its variables on the parameter servers of `cluster_spec`.

    `input_names` orders the signature's inputs as request rows carry them
    (the manifest's order); by default they keep the signature's order.
    """

    def __init__(self, version_dir: str, cluster_spec: dict[str, list[str]], task_index: int,
                 input_names: Sequence[str] | None = None):
        import tensorflow as tf

        self.version_dir = version_dir
        cluster = tf.train.ClusterSpec(cluster_spec)
        num_ps = len(cluster_spec.get("ps", []))
        meta_graph = _load_meta_graph(version_dir)
        colocate_reads(meta_graph.graph_def)
        signature = meta_graph.signature_def[SIGNATURE_KEY]
        self.graph = tf.Graph()
        with self.graph.as_default():
            setter = tf.compat.v1.train.replica_device_setter(
                cluster=cluster, worker_device=f"/job:worker/task:{task_index}",
                ps_strategy=byte_greedy_strategy(num_ps))
            with tf.compat.v1.device(setter):
                tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
            variables = tf.compat.v1.global_variables()
            if not variables:
                raise ValueError(f"{version_dir} has no variables to place on parameter servers")
            self.saver = tf.compat.v1.train.Saver(var_list=variables, sharded=True,
                                                  name="pyscoring_ps_restore")
            self.ready_op = tf.compat.v1.report_uninitialized_variables(variables)
            self.local_init_op = tf.group(tf.compat.v1.local_variables_initializer(),
                                          tf.compat.v1.tables_initializer())
        self.placement = {variable.op.name: variable.device for variable in variables}
        self.input_names = list(input_names or signature.inputs)
        if sorted(self.input_names) != sorted(signature.inputs):
            raise ValueError(
                f"the signature of {version_dir} has the inputs {sorted(signature.inputs)}, "
                f"not {sorted(self.input_names)}; re-export the model with its manifest")
        self.input_tensors = [signature.inputs[name].name for name in self.input_names]
        self.output_names = list(signature.outputs)
        self.output_tensors = [signature.outputs[name].name for name in self.output_names]
        self.variables_prefix = os.path.join(version_dir, "variables", "variables")

    def session(self, master: str, is_chief: bool, config) -> Any:
        """Return a session on `master`; the chief restores the variables, others wait for them."""
        import tensorflow as tf

        with self.graph.as_default():
            manager = tf.compat.v1.train.SessionManager(
                local_init_op=self.local_init_op, ready_op=self.ready_op, graph=self.graph)
            if is_chief:
                return manager.prepare_session(
                    master, saver=self.saver,
                    checkpoint_filename_with_path=self.variables_prefix, config=config)
            return manager.wait_for_session(master, config=config)


class BatchRunner:
    """Score batches in a session; isolate rows that TensorFlow rejects."""

    def __init__(self, session, model: ShardedModel, input_dtypes: Sequence[str]):
        self._session = session
        self._model = model
        self._input_dtypes = list(input_dtypes)

    def _run(self, rows: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        columns = records_to_columns(rows, self._model.input_names, self._input_dtypes)
        feed = {tensor: columns[name]
                for name, tensor in zip(self._model.input_names, self._model.input_tensors)}
        return self._session.run(self._model.output_tensors, feed)

    def score(self, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """Return the response to one request (see the module docstring)."""
        import tensorflow as tf

        count = len(rows)
        outputs: list[list[Any]] = [[None] * count for _ in self._model.output_names]
        errors: list[tuple[str, str] | None] = [None] * count
        pending = [(0, count)]
        while pending:
            start, end = pending.pop()
            try:
                values = self._run(rows[start:end])
            except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
                    tf.errors.FailedPreconditionError, ValueError, TypeError) as error:
                if isinstance(error, tf.errors.FailedPreconditionError) and \
                        "uninitialized" in str(error).lower():
                    raise
                if end - start == 1:
                    message = getattr(error, "message", None) or str(error)
                    errors[start] = (ROW_ERROR_CODE, message.splitlines()[0][:1000])
                    continue
                middle = (start + end) // 2
                pending.extend([(middle, end), (start, middle)])
                continue
            for position, array in enumerate(values):
                outputs[position][start:end] = np.asarray(array).tolist()
        return {"outputs": outputs, "errors": errors}


def serve_worker(context: NodeContext) -> dict[str, Any]:
    """Score the requests of context.records until the channel ends; return the counts."""
    import tensorflow as tf

    serving = context.serving or {}
    version_dir = serving["version_dir"]
    if context.responses is None:
        raise ValueError("serve_worker needs a response channel (response_fd in the node spec)")
    started = time.monotonic()
    model = ShardedModel(version_dir, context.cluster_spec, context.index,
                         serving["input_names"])
    logger.info("Imported %s: %d variables on %s", version_dir, len(model.placement),
                ", ".join(sorted(set(model.placement.values()))))
    threads = context.config["train.node-threads"]
    config = tf.compat.v1.ConfigProto(
        device_filters=["/job:ps", f"/job:worker/task:{context.index}"],
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    if not context.is_chief:
        context.wait_for_chief()
    session = model.session(context.server.target, context.is_chief, config)
    if context.is_chief:
        logger.info("Parameter servers restored the variables from %s", model.variables_prefix)
        context.report_ready()
    logger.info("Scoring session ready after %.1f s", time.monotonic() - started)
    runner = BatchRunner(session, model, serving["input_dtypes"])
    context.records.start_consuming()
    batches = rows = 0
    try:
        for request in context.records.records():
            context.responses.write(runner.score(request))
            context.responses.flush()
            batches += 1
            rows += len(request)
    finally:
        session.close()
    logger.info("Scoring worker %d scored %d rows in %d batches", context.index, rows, batches)
    return {"batches": batches, "rows": rows}
