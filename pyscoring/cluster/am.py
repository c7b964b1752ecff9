"""The application manager (AM): registration, cluster spec, heartbeats, state machine.

One AM runs per cluster incarnation, inside the Flink operator of
parallelism 1 (see `pyscoring.cluster.operators`). Its states are

    initializing -> running -> finished
          \\            \\
           +-> failing over (the Flink job restarts every task) 
                                          -> failed (no restart left)

Every transition is logged with the node and the reason, and appended to
`events.jsonl` in the run folder, so tests and people can count restarts.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import threading
import time
from concurrent import futures
from typing import Any

import grpc

from pyscoring.cluster import protocol
from pyscoring.cluster.protocol import RejectedError

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
STATUS_FILE = "status.json"
# Creating this file in the run folder makes the AM's task fail once, which
# restarts the cluster; used to rehearse and test recovery.
FAIL_DRILL_FILE = "fail-am"


class ClusterState(enum.Enum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FAILING_OVER = "failing over"
    FINISHED = "finished"
    FAILED = "failed"


class ClusterFailure(RuntimeError):
    """The ML cluster failed; the message names the node and the reason."""


@dataclasses.dataclass
class NodeInfo:
    """A registered node and what its heartbeats and reports carried last."""

    role: str
    index: int
    host: str
    port: int
    pid: int
    last_seen: float
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    done: bool = False
    result: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.role}:{self.index}"


class ApplicationManager:
    """AM of one cluster incarnation `version` with the expected node counts.

    `chief` and `evaluator` are 0 or 1. Without a chief node, worker 0 is
    the chief. `run_dir` receives events.jsonl and status.json. Call
    `start`, publish `address` to the nodes, then `wait`, which returns the
    chief's result or raises ClusterFailure.
    """

    def __init__(
        self, *, workers: int, ps: int, secret: str, version: int, run_dir: str,
        heartbeat_timeout_s: float, register_timeout_s: float,
        stop_grace_s: float = 5.0, chief: int = 0, evaluator: int = 0,
    ):
        if chief not in (0, 1) or evaluator not in (0, 1):
            raise ValueError(f"chief={chief} and evaluator={evaluator}: a cluster has at most "
                             "one chief node and one evaluator node; pass 0 or 1")
        self.expected = {protocol.ROLE_WORKER: workers, protocol.ROLE_PS: ps,
                         protocol.ROLE_CHIEF: chief, protocol.ROLE_EVALUATOR: evaluator}
        self.chief_key = (protocol.ROLE_CHIEF, 0) if chief else (protocol.ROLE_WORKER, 0)
        self.version = version
        self._secret = secret
        self._run_dir = run_dir
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._register_timeout_s = register_timeout_s
        self._stop_grace_s = stop_grace_s
        self._lock = threading.Condition()
        self._state = ClusterState.INITIALIZING
        self._reason = "waiting for nodes to register"
        self._nodes: dict[tuple[str, int], NodeInfo] = {}
        self._chief_ready = False
        self._created = time.monotonic()
        self._server: grpc.Server | None = None
        self._monitor: threading.Thread | None = None
        self._closed = threading.Event()
        self.address: str | None = None
        os.makedirs(run_dir, exist_ok=True)

    # Lifecycle.

    def start(self, host: str) -> str:
        """Start the gRPC server on `host` with a port the kernel picks; returns host:port."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="am-rpc"))
        server.add_generic_rpc_handlers((protocol.generic_handler({
            "Register": self._register,
            "GetClusterSpec": self._get_cluster_spec,
            "Heartbeat": self._heartbeat,
            "Report": self._report,
        }),))
        port = server.add_insecure_port(f"{host}:0")
        if port == 0:
            raise ClusterFailure(f"the AM could not bind a port on {host}; set train.am-host "
                                 "to an address of this machine")
        server.start()
        self._server = server
        self.address = f"{host}:{port}"
        self._monitor = threading.Thread(target=self._monitor_loop, name="am-monitor", daemon=True)
        self._monitor.start()
        logger.info("AM of cluster version %d listening on %s, expecting %d workers, %d ps, "
                    "%d chief and %d evaluator nodes", self.version, self.address,
                    self.expected[protocol.ROLE_WORKER], self.expected[protocol.ROLE_PS],
                    self.expected[protocol.ROLE_CHIEF], self.expected[protocol.ROLE_EVALUATOR])
        self._event("start", None, f"listening on {self.address}")
        return self.address

    def stop(self) -> None:
        self._closed.set()
        if self._server is not None:
            self._server.stop(grace=1.0).wait(2.0)
            self._server = None
            logger.info("AM of cluster version %d stopped", self.version)

    @property
    def state(self) -> ClusterState:
        with self._lock:
            return self._state

    def failure(self) -> str | None:
        """Return the reason of a failed or failing cluster, None while it is healthy."""
        with self._lock:
            if self._state in (ClusterState.FAILING_OVER, ClusterState.FAILED):
                return self._reason or "unknown reason"
            return None

    def fail(self, node: str | None, reason: str) -> None:
        """Move to failing over because of `node` and `reason` (used by the operator too)."""
        with self._lock:
            self._transition(ClusterState.FAILING_OVER, node, reason)

    def wait(self, poll_s: float = 0.5) -> dict[str, Any]:
        """Block until the cluster finished or failed; return the chief's result.

        A FAIL_DRILL_FILE in the run folder counts as a failure. On failure the nodes get `stop_grace_s` seconds to read the restart
        command from their heartbeats, then ClusterFailure is raised.
        """
        drill = os.path.join(self._run_dir, FAIL_DRILL_FILE)
        with self._lock:
            while self._state not in (ClusterState.FINISHED, ClusterState.FAILING_OVER,
                                      ClusterState.FAILED):
                self._lock.wait(poll_s)
                if os.path.exists(drill):
                    os.remove(drill)
                    self._transition(ClusterState.FAILING_OVER, None,
                                     f"failover drill: {FAIL_DRILL_FILE} appeared in the "
                                     "run folder")
            state, reason = self._state, self._reason
            chief = self._nodes.get(self.chief_key)
            result = dict(chief.result or {}) if chief else {}
            workers = {node.name: node.result for node in self._nodes.values()
                       if node.role == protocol.ROLE_WORKER}
            evaluator = self._nodes.get((protocol.ROLE_EVALUATOR, 0))
        if state is ClusterState.FINISHED:
            result["cluster_version"] = self.version
            result["workers"] = workers
            if evaluator is not None:
                result["evaluator"] = evaluator.result
            return result
        time.sleep(self._stop_grace_s)
        raise ClusterFailure(f"ML cluster version {self.version} failed: {reason}")

    # State machine; callers hold self._lock.

    def _transition(self, state: ClusterState, node: str | None, reason: str) -> None:
        if self._state is state or self._state in (ClusterState.FINISHED, ClusterState.FAILED):
            return
        if self._state is ClusterState.FAILING_OVER and state is not ClusterState.FAILED:
            return
        previous = self._state
        self._state = state
        self._reason = f"{node}: {reason}" if node else reason
        log = logger.warning if state in (ClusterState.FAILING_OVER, ClusterState.FAILED) else logger.info
        log("Cluster version %d: %s -> %s (node %s: %s)",
            self.version, previous.value, state.value, node or "-", reason)
        self._event("transition", node, reason, previous=previous.value, state=state.value)
        self._lock.notify_all()

    def _event(self, kind: str, node: str | None, reason: str, **fields: Any) -> None:
        record = {"time": time.time(), "version": self.version, "event": kind,
                  "node": node, "reason": reason, **fields}
        try:
            with open(os.path.join(self._run_dir, EVENTS_FILE), "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
        except OSError as error:
            logger.error("Cannot append to %s: %s", EVENTS_FILE, error)

    def _check(self, request: dict[str, Any]) -> tuple[str, int]:
        if request.get("secret") != self._secret:
            raise RejectedError(grpc.StatusCode.UNAUTHENTICATED,
                                "invalid job secret; only nodes of this job may call the AM")
        version = request.get("version")
        if version != self.version:
            raise RejectedError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"stale cluster version {version}; the current version is {self.version}")
        role, index = request.get("role"), request.get("index")
        if role not in self.expected or not isinstance(index, int) \
                or not 0 <= index < self.expected[role]:
            raise RejectedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown node {role}:{index}; this cluster has {self.expected}")
        return role, index

    # RPC methods.

    def _register(self, request: dict[str, Any]) -> dict[str, Any]:
        role, index = self._check(request)
        with self._lock:
            if self._state is not ClusterState.INITIALIZING:
                raise RejectedError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cluster version {self.version} is {self._state.value}; "
                    "nodes register only while it initializes")
            node = NodeInfo(role=role, index=index, host=str(request["host"]),
                            port=int(request["port"]), pid=int(request.get("pid", 0)),
                            last_seen=time.monotonic())
            self._nodes[(role, index)] = node
            logger.info("Cluster version %d: registered %s at %s:%d (pid %d)",
                        self.version, node.name, node.host, node.port, node.pid)
            self._event("register", node.name, f"{node.host}:{node.port} pid {node.pid}")
            if len(self._nodes) == sum(self.expected.values()):
                self._transition(ClusterState.RUNNING, None,
                                 f"all {len(self._nodes)} nodes registered")
        return {"ok": True}

    def _cluster_spec(self) -> dict[str, list[str]]:
        # As in TensorFlow's convention, the evaluator is not part of the
        # training cluster: it runs no server and reads checkpoint files.
        spec: dict[str, list[str]] = {}
        for role, count in self.expected.items():
            if count and role != protocol.ROLE_EVALUATOR:
                spec[role] = [f"{self._nodes[(role, i)].host}:{self._nodes[(role, i)].port}"
                              for i in range(count)]
        return spec

    def _get_cluster_spec(self, request: dict[str, Any]) -> dict[str, Any]:
        self._check(request)
        with self._lock:
            if self._state is ClusterState.INITIALIZING:
                return {"complete": False}
            return {"complete": True, "cluster": self._cluster_spec(),
                    "state": self._state.value}

    def _command_for(self, node: NodeInfo | None, role: str) -> str:
        if self._state in (ClusterState.FAILING_OVER, ClusterState.FAILED):
            return protocol.COMMAND_RESTART
        if self._state is ClusterState.FINISHED:
            return protocol.COMMAND_STOP
        if role in (protocol.ROLE_PS, protocol.ROLE_EVALUATOR) and self._training_done():
            return protocol.COMMAND_STOP
        return protocol.COMMAND_CONTINUE

    def _roles_done(self, roles: tuple[str, ...]) -> bool:
        nodes = [self._nodes.get((role, i)) for role in roles
                 for i in range(self.expected[role])]
        return all(node is not None and node.done for node in nodes)

    def _workers_done(self) -> bool:
        return self._roles_done((protocol.ROLE_WORKER,))

    def _training_done(self) -> bool:
        """Return whether every worker and the chief node (if any) finished."""
        return self._roles_done(protocol.TRAINING_ROLES)

    def _heartbeat(self, request: dict[str, Any]) -> dict[str, Any]:
        role, index = self._check(request)
        with self._lock:
            node = self._nodes.get((role, index))
            if node is not None:
                node.last_seen = time.monotonic()
                node.progress = dict(request.get("progress") or {})
            return {"command": self._command_for(node, role), "chief_ready": self._chief_ready,
                    "workers_done": self._workers_done(), "state": self._state.value}

    def _report(self, request: dict[str, Any]) -> dict[str, Any]:
        role, index = self._check(request)
        status = request.get("status")
        reason = str(request.get("reason", ""))
        name = f"{role}:{index}"
        with self._lock:
            node = self._nodes.get((role, index))
            if status == "failed":
                self._event("node-failed", name, reason)
                self._transition(ClusterState.FAILING_OVER, name, reason)
            elif status == "ready" and node is not None:
                self._chief_ready = True
                self._event("chief-ready", name, reason or "session created")
                logger.info("Cluster version %d: %s is ready", self.version, name)
                self._lock.notify_all()
            elif status == "done" and node is not None:
                node.done = True
                node.result = request.get("result")
                node.last_seen = time.monotonic()
                self._event("node-done", name, reason or "finished")
                logger.info("Cluster version %d: %s finished", self.version, name)
                if all(n.done for n in self._nodes.values()) and \
                        len(self._nodes) == sum(self.expected.values()):
                    self._transition(ClusterState.FINISHED, None, "every node finished")
                self._lock.notify_all()
            else:
                raise RejectedError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"invalid report status {status!r} from {name}; "
                                    "expected ready, done or failed")
        return {"ok": True}

    # Monitoring.

    def _monitor_loop(self) -> None:
        while not self._closed.wait(1.0):
            with self._lock:
                if self._state in (ClusterState.FINISHED, ClusterState.FAILING_OVER,
                                   ClusterState.FAILED):
                    continue
                now = time.monotonic()
                if self._state is ClusterState.INITIALIZING and \
                        now - self._created > self._register_timeout_s:
                    missing = [f"{role}:{i}" for role, count in self.expected.items()
                               for i in range(count) if (role, i) not in self._nodes]
                    self._transition(
                        ClusterState.FAILING_OVER, None,
                        f"{', '.join(missing)} did not register within "
                        f"{self._register_timeout_s:.0f} s (train.register-timeout-ms)")
                    continue
                for node in self._nodes.values():
                    silent = now - node.last_seen
                    if not node.done and silent > self._heartbeat_timeout_s:
                        self._transition(
                            ClusterState.FAILING_OVER, node.name,
                            f"no heartbeat for {silent:.0f} s (train.heartbeat-timeout-ms)")
                        break
                status = self._status()
            self._write_status(status)

    def _status(self) -> dict[str, Any]:
        chief = self._nodes.get(self.chief_key)
        workers = [n for n in self._nodes.values() if n.role == protocol.ROLE_WORKER]
        loss = chief.progress.get("loss") if chief else None
        if loss is None and workers:
            # A chief node does not train, so it has no loss; worker 0's is shown.
            first = self._nodes.get((protocol.ROLE_WORKER, 0))
            loss = first.progress.get("loss") if first else None
        return {
            "version": self.version,
            "state": self._state.value,
            "global_step": (chief.progress.get("global_step", 0) if chief else 0),
            "loss": loss,
            "examples": sum(int(n.progress.get("examples", 0)) for n in workers),
            "time": time.time(),
        }

    def _write_status(self, status: dict[str, Any]) -> None:
        path = os.path.join(self._run_dir, STATUS_FILE)
        temp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(temp, "w", encoding="utf-8") as file:
                json.dump(status, file)
            os.replace(temp, path)
        except OSError as error:
            logger.error("Cannot write %s: %s", path, error)
