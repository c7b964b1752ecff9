"""Flink functions of the PS scoring path: its AM and its Python scoring workers.

The parameter servers are the ML cluster's own `ParameterServerFunction`.
The AM here differs from the training AM in one way: it is fed one tick
per second from an unbounded source and never blocks, so checkpoint
barriers pass it. On the first tick it starts the AM and emits its
address; on later ticks it raises once the cluster has failed, which
makes Flink restart every task (failover strategy "full").

A scoring worker subtask supervises one worker node. It receives batches
from the `batch-rows` operator (one element per batch: the AM address and
version and the batch's rows) and the AM broadcast. It sends each batch
to its node and yields the scored rows before it returns, so every result
is emitted before the next checkpoint barrier passes the operator.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from pyflink.datastream.functions import CoFlatMapFunction

from pyscoring.cluster.operators import (
    ApplicationManagerFunction,
    _NodeOperatorBase,
    message,
    start_application_manager,
)

logger = logging.getLogger(__name__)

PATH_LABEL = "ps"

_metrics_lock = threading.Lock()
_metrics = None


def process_metrics(host: str, port_range: tuple[int, int], targets_file: str | None):
    """Return this Python process's ScoringMetrics, serving them on first use."""
    global _metrics
    from pyscoring.metrics import ScoringMetrics

    with _metrics_lock:
        if _metrics is None:
            metrics = ScoringMetrics()
            metrics.start_server(host, port_range[0], port_range[1], targets_file)
            _metrics = metrics
        return _metrics


class ServingApplicationManagerFunction(ApplicationManagerFunction):
    """The AM of a scoring cluster (parallelism 1), driven by ticks."""

    def flat_map(self, value):
        from pyscoring.cluster.am import ClusterFailure

        if self._am is None:
            self._am, address = start_application_manager(self._job, self._version)
            yield message("am", address=address, version=self._version)
            return
        reason = self._am.failure()
        if reason is not None:
            raise ClusterFailure(f"scoring cluster version {self._version} failed: {reason}")


class ScoringWorkerFunction(CoFlatMapFunction, _NodeOperatorBase):
    """The "ps-scoring-worker" operator: input 1 carries batches, input 2 the AM broadcast.

    `serving` describes the export and the rows: "version_dir",
    "input_dtypes", "feature_positions" (where the signature inputs sit in
    a row), "carried" (how many leading row fields are copied to the
    output), "model_name", "model_version", "tensorflow_version",
    "metrics_host", "metrics_port_range" and "targets_file".
    """

    role = "worker"

    def __init__(self, job: dict[str, Any], serving: dict[str, Any]):
        self._job_description = job
        self._serving = serving

    def open(self, runtime_context):
        self._responses = None
        self._writer = None
        self._failure: str | None = None
        serving = self._serving
        self._metrics = process_metrics(serving["metrics_host"],
                                        tuple(serving["metrics_port_range"]),
                                        serving["targets_file"])
        labels = (serving["model_name"], str(serving["model_version"]), PATH_LABEL)
        self._labels = labels
        self._metrics.model_info.labels(*labels, serving["tensorflow_version"]).info({})
        self._setup(self._job_description, runtime_context)

    def _prepare_node(self, spec: dict[str, Any]) -> tuple[int, ...]:
        from pyscoring.cluster.channel import ChannelReader

        read_fd, write_fd = os.pipe()
        spec["response_fd"] = write_fd
        spec["serving"] = {key: self._serving[key]
                           for key in ("version_dir", "input_names", "input_dtypes")}
        self._responses = ChannelReader(os.fdopen(read_fd, "rb"), capacity_records=2)
        return (write_fd,)

    def _on_node_exit(self, code: int, reason: str | None) -> None:
        if code != 0:
            self._failure = reason or f"exit code {code}"
        super()._on_node_exit(code, reason)

    def _ensure_am_address(self, address: str, version: int) -> None:
        if self._am_address is None:
            logger.info("Node %s uses the AM at %s (cluster version %d)",
                        self._name, address, version)
            self._send_am_address(address, version)

    def _handle_am_message(self, value: str) -> None:
        import json

        body = json.loads(value)
        if body["kind"] == "am":
            self._ensure_am_address(body["address"], body["version"])

    def _score(self, requests: list[tuple]) -> dict[str, Any]:
        from pyscoring.cluster.channel import ChannelClosedError, ChannelWriter

        if self._writer is None:
            self._writer = ChannelWriter(self._node.stdin, frame_records=1)
        try:
            self._writer.write(requests)
            response = self._responses.read(1)
        except ChannelClosedError as error:
            response = []
            cause = str(error)
        else:
            cause = "its response channel ended"
        if not response:
            # The supervisor thread records the exit shortly after the pipe closes.
            self._node.wait(5.0)
            raise RuntimeError(
                f"scoring node {self._name} stopped while scoring a batch: "
                f"{self._failure or cause}; the log is {self._node.log_path}")
        return response[0]

    def flat_map1(self, value):
        from pyflink.common import Row

        self._ensure_am_address(value[0], value[1])
        rows = list(value[2] or ())
        if not rows:
            return
        serving = self._serving
        positions = serving["feature_positions"]
        received = time.monotonic()
        response = self._score([tuple(row[i] for i in positions) for row in rows])
        elapsed = time.monotonic() - received
        metrics, labels = self._metrics, self._labels
        # The first response shows the node restored the variables and serves.
        metrics.model_loaded.labels(*labels).set(1)
        if any(error is None for error in response["errors"]):
            metrics.last_successful_batch.labels(*labels).set(time.time())
        metrics.batch_latency.labels(*labels).observe(elapsed)
        metrics.batch_size.labels(*labels).observe(len(rows))
        carried = serving["carried"]
        version = serving["model_version"]
        outputs, errors = response["outputs"], response["errors"]
        empty = [None] * len(outputs)
        scored = 0
        for index, row in enumerate(rows):
            head = [row[i] for i in range(carried)]
            error = errors[index]
            if error is None:
                scored += 1
                metrics.prediction_latency.labels(*labels).observe(elapsed)
                yield Row(*head, *(output[index] for output in outputs), version, None, None)
            else:
                metrics.prediction_errors.labels(*labels, error[0]).inc()
                yield Row(*head, *empty, version, error[0], error[1])
        metrics.predictions.labels(*labels).inc(scored)

    def flat_map2(self, value):
        self._handle_am_message(value)
        return iter(())

    def close(self):
        if getattr(self, "_writer", None) is not None:
            self._writer.close()
        self._stop_node()
        if getattr(self, "_metrics", None) is not None:
            self._metrics.model_loaded.labels(*self._labels).set(0)
