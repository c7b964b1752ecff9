"""Entry point of a node process: `python -m pyscoring.cluster.node SPEC_JSON`.

The supervising Flink operator starts this process, passes the job secret
in the environment variable PYSCORING_CLUSTER_SECRET (never on the command
line, where other users could read it), records on stdin (workers) and the
AM's address as one JSON line on the control pipe whose descriptor is
`control_fd` in the spec. A scoring worker also gets `response_fd`, the
pipe of its responses (see pyscoring.serving.node). The node then

1. reserves its TensorFlow port (`pyscoring.cluster.ports`),
2. registers with the AM, heartbeats every train.heartbeat-interval-ms,
3. polls the AM until the cluster spec is complete,
4. starts its `tf.distribute.Server` and runs its role: a parameter server
   serves until the AM orders a stop; a worker or the chief node runs the node
   entry function; the evaluator starts no server (it is outside the
   cluster spec) and runs `trainer.run_evaluator` until the AM orders a stop,
5. reports done (with the chief's result) or failed (with the reason).

Exit codes: 0 done, 1 failed, EXIT_RESTART when the AM ordered a restart,
EXIT_AM_LOST when the AM stopped answering.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from pyscoring.cluster import protocol

logger = logging.getLogger("pyscoring.cluster.node")

EXIT_RESTART = 75
EXIT_AM_LOST = 76
SECRET_ENV = "PYSCORING_CLUSTER_SECRET"
DEFAULT_ENTRY = "pyscoring.cluster.trainer:train_worker"
EVALUATOR_ENTRY = "pyscoring.cluster.trainer:run_evaluator"

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(expected_parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent thread exits (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as error:
        logger.warning("Cannot set the parent-death signal: %s", error)
    if os.getppid() != expected_parent:
        logger.error("Parent %d exited before the node started; exiting", expected_parent)
        os._exit(1)


def load_function(reference: str) -> Callable:
    """Import "module:function"; raises ValueError naming the reference when it is invalid."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"invalid function reference {reference!r}; expected module:function")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{reference!r} is not a function of module {module_name}")
    return function


class Heartbeat(threading.Thread):
    """Send heartbeats with the latest progress and act on the AM's commands."""

    def __init__(self, client: protocol.AMClient, role: str, index: int,
                 interval_s: float, timeout_s: float):
        super().__init__(name="heartbeat", daemon=True)
        self._client = client
        self._role = role
        self._index = index
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.progress: dict[str, Any] = {}
        self.stop_requested = threading.Event()
        self.chief_ready = threading.Event()
        self.workers_done = threading.Event()
        self._closed = threading.Event()

    def run(self) -> None:
        last_ok = time.monotonic()
        failures = 0
        while not self._closed.wait(self._interval_s):
            try:
                reply = self._client.call("Heartbeat", role=self._role, index=self._index,
                                          progress=self.progress)
            except protocol.RejectedError as error:
                logger.error("AM rejected the heartbeat: %s; exiting for a restart", error)
                os._exit(EXIT_RESTART)
            except Exception as error:  # grpc.RpcError: AM not reachable
                failures += 1
                silent = time.monotonic() - last_ok
                if failures == 1 or failures % 10 == 0:
                    logger.warning("Heartbeat %d to the AM at %s failed (%s); retrying",
                                   failures, self._client.address, error)
                if silent > self._timeout_s:
                    logger.error("AM at %s unreachable for %.0f s; exiting",
                                 self._client.address, silent)
                    os._exit(EXIT_AM_LOST)
                continue
            last_ok = time.monotonic()
            failures = 0
            if reply.get("chief_ready"):
                self.chief_ready.set()
            if reply.get("workers_done"):
                self.workers_done.set()
            command = reply.get("command")
            if command == protocol.COMMAND_RESTART:
                logger.warning("AM ordered a restart (cluster %s); exiting", reply.get("state"))
                os._exit(EXIT_RESTART)
            if command == protocol.COMMAND_STOP:
                self.stop_requested.set()

    def close(self) -> None:
        self._closed.set()


def _register(client: protocol.AMClient, spec: dict, port: int, deadline: float) -> None:
    attempt = 0
    while True:
        attempt += 1
        try:
            client.call("Register", role=spec["role"], index=spec["index"], host=spec["host"],
                        port=port, pid=os.getpid())
            logger.info("Registered with the AM at %s as %s:%d, port %d (attempt %d)",
                        client.address, spec["role"], spec["index"], port, attempt)
            return
        except protocol.RejectedError:
            raise
        except Exception as error:  # grpc.RpcError while the AM starts
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot reach the AM at {client.address}: {error}") from error
            logger.warning("Registration attempt %d at %s failed (%s); retrying",
                           attempt, client.address, error)
            time.sleep(min(2.0, 0.2 * attempt))


def _wait_cluster_spec(client: protocol.AMClient, spec: dict, deadline: float) -> dict:
    while True:
        reply = client.call("GetClusterSpec", role=spec["role"], index=spec["index"])
        if reply.get("complete"):
            return reply["cluster"]
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster spec was not complete within "
                               "train.register-timeout-ms")
        time.sleep(0.2)


def _read_am_address(control_fd: int, timeout_s: float) -> dict:
    result: dict = {}

    def read():
        with os.fdopen(control_fd, "rb") as control:
            line = control.readline()
        if line:
            result.update(json.loads(line))

    thread = threading.Thread(target=read, name="control", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not result:
        raise TimeoutError(f"the AM's address did not arrive within {timeout_s:.0f} s")
    return result


def run(spec: dict, secret: str) -> int:
    from pyscoring.cluster.channel import ChannelReader, ChannelWriter
    from pyscoring.cluster.context import NodeContext
    from pyscoring.cluster.ports import reserve_port
    from pyscoring.config import Config

    # TensorFlow's import takes seconds; it runs while the node waits for the AM.
    threading.Thread(target=importlib.import_module, args=("tensorflow",),
                     name="import-tensorflow", daemon=True).start()
    config = Config(spec["config"])
    role, index = spec["role"], spec["index"]
    register_timeout_s = config["train.register-timeout-ms"] / 1000
    reservation = reserve_port(spec["host"])
    records = responses = None
    if role == protocol.ROLE_WORKER:
        records = ChannelReader(sys.stdin.buffer,
                                capacity_records=config["train.channel-capacity"],
                                startup_records=config["train.channel-startup-capacity"])
    if spec.get("response_fd") is not None:
        # One response per request, so each is sent at once.
        responses = ChannelWriter(os.fdopen(spec["response_fd"], "wb"), frame_records=1)
    am = _read_am_address(spec["control_fd"], register_timeout_s)
    client = protocol.AMClient(am["address"], secret, am["version"])
    deadline = time.monotonic() + register_timeout_s
    _register(client, spec, reservation.port, deadline)

    heartbeat = Heartbeat(client, role, index,
                          interval_s=config["train.heartbeat-interval-ms"] / 1000,
                          timeout_s=config["train.heartbeat-timeout-ms"] / 1000)
    heartbeat.start()
    try:
        cluster = _wait_cluster_spec(client, spec, deadline)
        logger.info("Cluster spec of version %d: %s", am["version"], cluster)

        import tensorflow as tf

        server = None
        if role != protocol.ROLE_EVALUATOR:
            server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=role,
                                          task_index=index, protocol="grpc", start=True)
            logger.info("TensorFlow server %s:%d started at %s", role, index, server.target)

        if role == protocol.ROLE_PS:
            heartbeat.stop_requested.wait()
            logger.info("AM ordered a stop; parameter server %d exits", index)
            client.call("Report", role=role, index=index, status="done")
            return 0

        def report_progress(global_step: int, loss: float | None, examples: int) -> None:
            # The chief node runs no training step, so it reports no loss.
            heartbeat.progress = {"global_step": int(global_step),
                                  "loss": None if loss is None else float(loss),
                                  "examples": int(examples)}

        def report_ready() -> None:
            client.call("Report", role=role, index=index, status="ready")

        def wait_for_chief() -> None:
            while not heartbeat.chief_ready.wait(60.0):
                logger.info("Waiting for the chief to initialize the variables")

        context = NodeContext(
            role=role, index=index, cluster_spec=cluster, server=server, config=config,
            checkpoint_dir=spec["checkpoint_dir"], export_dir=spec["export_dir"],
            test_path=spec.get("test_path"), mode=spec["mode"], records=records,
            column_names=tuple(spec["column_names"]), column_dtypes=tuple(spec["column_dtypes"]),
            share_size=spec.get("share_size"), last_step=spec["last_step"],
            model_params_json=spec["model_params_json"],
            report_progress=report_progress, report_ready=report_ready,
            wait_for_chief=wait_for_chief, responses=responses, serving=spec.get("serving"),
            workers_done=heartbeat.workers_done.is_set,
            stop_requested=heartbeat.stop_requested.is_set, run_dir=spec.get("run_dir"),
        )
        if role == protocol.ROLE_EVALUATOR:
            entry = load_function(EVALUATOR_ENTRY)
        else:
            entry = load_function(config["train.node-entry"] or DEFAULT_ENTRY)
        result = entry(context) or {}
        client.call("Report", role=role, index=index, status="done", result=result)
        logger.info("Node %s:%d finished", role, index)
        return 0
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        logger.error("Node %s:%d failed: %s\n%s", role, index, reason, traceback.format_exc())
        try:
            client.call("Report", role=role, index=index, status="failed",
                        reason=f"{reason}\n{traceback.format_exc(limit=5)}")
        except Exception as report_error:
            logger.error("Cannot report the failure to the AM: %s", report_error)
        return 1
    finally:
        heartbeat.close()


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {spec['role']}:{spec['index']} %(name)s: %(message)s")
    set_parent_death_signal(spec["parent_pid"])
    secret = os.environ.pop(SECRET_ENV, "")
    if not secret:
        logger.error("%s is not set; the node cannot register", SECRET_ENV)
        os._exit(1)
    code = run(spec, secret)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit skips TensorFlow's teardown, which can hang while servers run.
    os._exit(code)


if __name__ == "__main__":
    main()
