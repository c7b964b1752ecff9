"""Flink functions of an ML cluster job: the AM, the parameter servers, the workers,
and the optional chief and evaluator nodes.

Messages on the AM's broadcast stream are JSON strings:
{"kind": "am", "address": "host:port", "version": N} once the AM listens,
and {"kind": "final", ...} with the chief's result when the cluster has
finished. The role operators' outputs use the same form.

The AM function gets two elements. On the first it starts the AM and emits
its address. The second one arrives `AM_HOLD_DELAY_S` seconds later (see
`job.py`), after the first bundle has been flushed. The function blocks on
it until the cluster finishes. So the AM task lives as long as the cluster,
and with it the broadcast stream that keeps the role tasks running. A failing cluster makes the function raise, which fails the task
and lets Flink restart every task (failover strategy "full").
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from pyflink.datastream.functions import CoFlatMapFunction, FlatMapFunction, MapFunction

logger = logging.getLogger(__name__)

LOG_FILE = "flink-python.log"
_logging_lock = threading.Lock()
_log_handler: logging.FileHandler | None = None


def configure_logging(run_dir: str) -> None:
    """Send pyscoring's log records of this Flink Python process to RUN_DIR/flink-python.log.

    A process keeps one such file at a time: the file of an earlier run is
    closed when a run with another folder starts.
    """
    global _log_handler
    path = os.path.join(run_dir, LOG_FILE)
    with _logging_lock:
        if _log_handler is not None and _log_handler.baseFilename == os.path.abspath(path):
            return
        os.makedirs(run_dir, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
        package = logging.getLogger("pyscoring")
        if _log_handler is not None:
            package.removeHandler(_log_handler)
            _log_handler.close()
        package.addHandler(handler)
        if package.level == logging.NOTSET or package.level > logging.INFO:
            package.setLevel(logging.INFO)
        _log_handler = handler


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"kind": kind, **fields})


class HoldDelay(MapFunction):
    """Pass an element on after `seconds`, so it reaches the AM in a later bundle."""

    def __init__(self, seconds: float):
        self._seconds = seconds

    def map(self, value):
        import time

        time.sleep(self._seconds)
        return value


def start_application_manager(job: dict[str, Any], version: int):
    """Start the AM of cluster `version` of `job`; return it and its address."""
    from pyscoring.cluster.am import ApplicationManager

    if version:
        logger.warning("Starting cluster version %d: restart %d of at most %d",
                       version, version, job["restart_attempts"])
    am = ApplicationManager(
        workers=job["workers"], ps=job["ps"], secret=job["secret"],
        version=version, run_dir=job["run_dir"],
        heartbeat_timeout_s=job["config"]["train.heartbeat-timeout-ms"] / 1000,
        register_timeout_s=job["config"]["train.register-timeout-ms"] / 1000,
        chief=job.get("chief", 0), evaluator=job.get("evaluator", 0),
    )
    return am, am.start(job["am_host"])


class ApplicationManagerFunction(FlatMapFunction):
    """The AM operator (parallelism 1); `job` is the job description from job.py."""

    def __init__(self, job: dict[str, Any]):
        self._job = job
        self._am = None
        self._version = 0

    def open(self, runtime_context):
        configure_logging(self._job["run_dir"])
        self._version = runtime_context.get_attempt_number()

    def flat_map(self, value):
        if value == 0:
            self._am, address = start_application_manager(self._job, self._version)
            yield message("am", address=address, version=self._version)
            return
        if self._am is None:
            raise RuntimeError(
                "the AM received its hold element before its start element, so Flink "
                "restarts the job; if this repeats, the machine is too loaded for "
                "job.AM_HOLD_DELAY_S")
        try:
            result = self._am.wait()
        finally:
            self._am.stop()
        final = {"run_id": self._job["run_id"], "version": self._version, "result": result}
        path = os.path.join(self._job["run_dir"], "result.json")
        with open(f"{path}.tmp", "w", encoding="utf-8") as file:
            json.dump(final, file)
        os.replace(f"{path}.tmp", path)
        yield message("final", **final)

    def close(self):
        if self._am is not None:
            self._am.stop()


class _NodeOperatorBase:
    """Start, feed and supervise the node process of one role subtask."""

    role = ""

    def _setup(self, job: dict[str, Any], runtime_context) -> None:
        configure_logging(job["run_dir"])
        self._job = job
        self._index = runtime_context.get_index_of_this_subtask()
        self._version = runtime_context.get_attempt_number()
        self._node = None
        self._control = None
        self._am_address = None
        self._am_version = None
        self._finished = threading.Event()
        # Started before the AM's address arrives, so TensorFlow's import in the
        # node overlaps with the start of the other tasks.
        self._start_node()

    @property
    def _name(self) -> str:
        return f"{self.role}:{self._index}"

    def _start_node(self) -> None:
        import sys

        from pyscoring.cluster import node as node_main
        from pyscoring.cluster.supervisor import NodeProcess, node_environment

        job = self._job
        read_fd, write_fd = os.pipe()
        spec = {
            "role": self.role, "index": self._index, "host": job["node_host"],
            "control_fd": read_fd, "parent_pid": os.getpid(),
            "config": job["config"], "checkpoint_dir": job["checkpoint_dir"],
            "export_dir": job["export_dir"], "test_path": job["test_path"],
            "mode": job["mode"], "column_names": job["column_names"],
            "column_dtypes": job["column_dtypes"],
            "share_size": job["shares"][self._index] if job["mode"] == "bounded"
            and self.role == "worker" else None,
            "last_step": job["last_step"], "model_params_json": job["model_params_json"],
        }
        extra_fds = self._prepare_node(spec)
        log_path = os.path.join(job["run_dir"], "logs", f"v{self._version}",
                                f"{self.role}-{self._index}.log")
        env = node_environment({node_main.SECRET_ENV: job["secret"]})
        self._node = NodeProcess(
            self._name, [sys.executable, "-m", "pyscoring.cluster.node", json.dumps(spec)],
            log_path, env, self._on_node_exit, stdin_pipe=self.role == "worker",
            pass_fds=(read_fd, *extra_fds))
        try:
            self._node.start()
        finally:
            for fd in (read_fd, *extra_fds):
                os.close(fd)
        self._control = os.fdopen(write_fd, "wb")

    def _prepare_node(self, spec: dict[str, Any]) -> tuple[int, ...]:
        """Add role-specific fields to the node spec; return more descriptors to hand over.

        The descriptors are closed in this process once the node has started.
        """
        return ()

    def _send_am_address(self, address: str, version: int) -> None:
        self._am_address, self._am_version = address, version
        try:
            self._control.write((json.dumps({"address": address, "version": version})
                                 + "\n").encode())
            self._control.close()
        except OSError as error:
            logger.error("Cannot pass the AM address to node %s: %s", self._name, error)

    def _on_node_exit(self, code: int, reason: str | None) -> None:
        from pyscoring.cluster import node as node_main

        if code == 0:
            self._finished.set()
            return
        if code in (node_main.EXIT_RESTART, node_main.EXIT_AM_LOST):
            logger.warning("Node %s exited with code %d for a cluster restart", self._name, code)
            return
        self._report_failure(reason or f"exit code {code}")

    def _report_failure(self, reason: str) -> None:
        from pyscoring.cluster import protocol

        if self._am_address is None:
            logger.error("Node %s failed before the AM address arrived: %s", self._name, reason)
            return
        client = protocol.AMClient(self._am_address, self._job["secret"], self._am_version)
        try:
            client.call("Report", role=self.role, index=self._index, status="failed",
                        reason=reason)
            logger.info("Reported the failure of node %s to the AM", self._name)
        except Exception as error:
            logger.error("Cannot report the failure of node %s to the AM at %s: %s",
                         self._name, self._am_address, error)
        finally:
            client.close()

    def _handle_am_message(self, value: str) -> None:
        body = json.loads(value)
        if body["kind"] == "am":
            logger.info("Node %s uses the AM at %s (cluster version %d)",
                        self._name, body["address"], body["version"])
            self._send_am_address(body["address"], body["version"])

    def _stop_node(self) -> None:
        if self._control is not None and not self._control.closed:
            self._control.close()
        if self._node is not None:
            self._node.stop()
            self._node = None


class ParameterServerFunction(FlatMapFunction, _NodeOperatorBase):
    """The "ps" operator: one parameter-server node per subtask, fed the AM broadcast."""

    role = "ps"

    def __init__(self, job: dict[str, Any]):
        self._job_description = job

    def open(self, runtime_context):
        self._setup(self._job_description, runtime_context)

    def flat_map(self, value):
        self._handle_am_message(value)
        return iter(())

    def close(self):
        self._stop_node()


class ChiefFunction(ParameterServerFunction):
    """The "chief" operator (parallelism 1) of train.chief: the chief node, fed the AM broadcast.

    The chief node receives no records; it creates or restores the
    variables, writes the checkpoints and the exports.
    """

    role = "chief"


class EvaluatorFunction(ParameterServerFunction):
    """The "evaluator" operator (parallelism 1) of train.evaluator, fed the AM broadcast.

    Its node evaluates each new checkpoint and appends the metrics to
    RUN_DIR/evaluations.jsonl.
    """

    role = "evaluator"

    def _prepare_node(self, spec: dict[str, Any]) -> tuple[int, ...]:
        spec["run_dir"] = self._job["run_dir"]
        return ()


class WorkerFunction(CoFlatMapFunction, _NodeOperatorBase):
    """The "worker" operator: input 1 carries records, input 2 the AM broadcast.

    Records go to the node through the bounded channel; `flat_map1` blocks
    while the channel is full, which backpressures the upstream operators.
    Records that arrive after the node finished training are counted and
    dropped, because nothing reads them any more.
    """

    role = "worker"

    def __init__(self, job: dict[str, Any]):
        self._job_description = job

    def open(self, runtime_context):
        self._setup(self._job_description, runtime_context)
        self._writer = None
        self._dropped = 0

    def _ensure_writer(self):
        from pyscoring.cluster.channel import ChannelWriter

        if self._writer is None:
            share = self._job["shares"][self._index] if self._job["mode"] == "bounded" else None
            self._writer = ChannelWriter(
                self._node.stdin, frame_records=self._job["config"]["train.channel-frame-records"],
                expected_records=share)
        return self._writer

    def flat_map1(self, value):
        from pyscoring.cluster.channel import ChannelClosedError

        if self._finished.is_set() or (self._writer is not None and self._writer.closed):
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100000 == 0:
                logger.info("Node %s finished training; dropped %d records since",
                            self._name, self._dropped)
            return iter(())
        writer = self._ensure_writer()
        try:
            writer.write(tuple(value))
        except ChannelClosedError as error:
            writer.abort()
            if not self._finished.wait(5.0):
                logger.error("Record channel of node %s closed while it runs: %s",
                             self._name, error)
        return iter(())

    def flat_map2(self, value):
        self._handle_am_message(value)
        return iter(())

    def close(self):
        if getattr(self, "_writer", None) is not None:
            self._writer.abort()
        self._stop_node()
