"""Start and supervise one node's TensorFlow process.

Python operators of one Flink task manager run as threads of one Python
process, and TensorFlow's state (servers, graphs, sessions) is per process,
so every node runs in a process of its own. The supervisor starts it in a
new process group from a thread that lives as long as the process, so the
child's parent-death signal (set by the node itself, see
`pyscoring.cluster.node`) fires only when the supervising thread or the
whole Flink Python process goes away. `stop` signals the whole group, so no
grandchild outlives the node.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4000


def describe_exit(code: int) -> str:
    """Describe a Popen return code; 137 and -9 name the likely out-of-memory kill."""
    if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return (f"exit code {code}: killed by SIGKILL, likely by the kernel's "
                "out-of-memory killer or by an operator; check the memory limit "
                "and `dmesg`")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exit code {code}: killed by {name}"
    return f"exit code {code}"


def read_tail(path: str, limit: int = STDERR_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - limit))
            return file.read().decode("utf-8", errors="replace")
    except OSError as error:
        return f"(log {path} unreadable: {error})"


class NodeProcess:
    """One supervised node process.

    `on_exit(code, reason)` runs on the supervising thread when the process
    exits, with `reason` None for exit code 0 and otherwise the exit
    description plus the tail of the node's output (stdout and stderr go to
    `log_path`). It is not called after `stop`.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: str,
                 env: dict[str, str], on_exit: Callable[[int, str | None], None],
                 stdin_pipe: bool = False, pass_fds: Sequence[int] = ()):
        self.name = name
        self._argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._on_exit = on_exit
        self._stdin_pipe = stdin_pipe
        self._pass_fds = tuple(pass_fds)
        self._started = threading.Event()
        self._stopping = threading.Event()
        self._exited = threading.Event()
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"supervise-{name}", daemon=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def stdin(self):
        return self.process.stdin if self.process else None

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"node {self.name} did not start within {timeout_s:.0f} s")
        if self._start_error is not None:
            raise RuntimeError(f"cannot start node {self.name}: {self._start_error}") \
                from self._start_error

    def _run(self) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        try:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=self._env,
                    start_new_session=True, close_fds=True, pass_fds=self._pass_fds,
                )
        except OSError as error:
            self._start_error = error
            self._started.set()
            return
        logger.info("Started node %s as pid %d, output in %s",
                    self.name, self.process.pid, self.log_path)
        self._started.set()

        code = self.process.wait()
        self.returncode = code
        self._exited.set()
        # Reap anything the node left in its process group.
        self._signal_group(signal.SIGKILL)

        if self._stopping.is_set():
            logger.info("Node %s (pid %d) stopped with %s",
                        self.name, self.process.pid, describe_exit(code))
            return
        if code == 0:
            logger.info("Node %s (pid %d) exited with code 0", self.name, self.process.pid)
            self._on_exit(code, None)
            return
        tail = read_tail(self.log_path)
        reason = (f"node {self.name} (pid {self.process.pid}) failed with "
                  f"{describe_exit(code)}; its output ends with:\n{tail}")
        logger.error("%s", reason)
        self._on_exit(code, reason)

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the process group: SIGTERM, then SIGKILL after `timeout_s`."""
        self._stopping.set()
        if self.process is None or self._exited.is_set():
            self._signal_group(signal.SIGKILL)
            return
        logger.info("Stopping node %s (pid %d)", self.name, self.process.pid)
        self._signal_group(signal.SIGTERM)
        if not self._exited.wait(timeout_s):
            logger.warning("Node %s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL",
                           self.name, self.process.pid, timeout_s)
            self._signal_group(signal.SIGKILL)
            self._exited.wait(5.0)

    def wait(self, timeout_s: float | None = None) -> int | None:
        self._exited.wait(timeout_s)
        return self.returncode


def node_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a node process: this one plus TF_GRPC_REUSE_PORT and the project path."""
    from pyscoring.cluster.ports import TF_REUSE_PORT_ENV

    env = dict(os.environ)
    env.update(TF_REUSE_PORT_ENV)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, env.get("PYTHONPATH", "")) if part)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_executable() -> str:
    return sys.executable
