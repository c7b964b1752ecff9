"""Run a standalone Flink cluster on loopback from the PyFlink wheel's own distribution.

`start(conf_dir)` writes a Flink configuration into `conf_dir`, starts one
job manager with the wheel's `bin/jobmanager.sh` and N task managers with
`bin/taskmanager.sh`, and waits until the REST API reports every task
manager. `conf_dir` is FLINK_CONF_DIR for all of them and also contains their
logs (`log/`), process-id files (`run/`), checkpoints, savepoints and the
cluster's state file `cluster.json`, which `attach()`, `status()` and
`stop()` read.

The lib folder is `build/flink-lib/` (FLINK_LIB_DIR): Flink's own jars plus
pyscoring's jar, TensorFlow Java and the Prometheus client, so the scorer's
classes load from the task managers' parent classpath. Every endpoint binds
127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from pyscoring._internal import flink_env
from pyscoring.config import Config, ConfigError, parse_port_range
from pyscoring.metrics import backlog_reporter_settings

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_CLUSTER_DIR = flink_env.PROJECT_ROOT / "build" / "flink-cluster"
STATE_FILE = "cluster.json"
# FLINK_IDENT_STRING of every process; Flink puts it into pid-file and log names.
IDENT = "pyscoring"
# HOSTNAME as the Flink scripts see it; it is the last part of every log file name.
LOG_HOSTNAME = "localhost"
TASKMANAGER_ID_PREFIX = "pyscoring-tm-"

# Keys under which the cluster's configuration advertises the metric settings
# that jobs submitted to it should use (see `cluster_job_defaults`).
ADVERTISED_KEYS = {
    "pyscoring.metrics.host": "metrics.host",
    "pyscoring.metrics.port-range": "metrics.port-range",
}

# Configuration files of the wheel's conf/ that every cluster folder copies.
_COPIED_CONF_FILES = (
    "log4j.properties",
    "log4j-console.properties",
    "log4j-cli.properties",
    "logback.xml",
    "logback-console.xml",
)

_SCRIPT_TIMEOUT_S = 120


class ClusterError(RuntimeError):
    """The standalone cluster could not be started, found or stopped."""


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Sizes, ports and paths of one standalone cluster, set by the `cluster.*` configuration keys."""

    taskmanagers: int = 1
    slots_per_taskmanager: int = 1
    jobmanager_rpc_port: int = 6123
    rest_port: int = 8081
    blob_port: str = "0"
    taskmanager_rpc_ports: str = "0"
    jobmanager_memory_mb: int = 1024
    taskmanager_memory_mb: int = 2048
    tensorflow_memory_mb: int = 512
    metrics_host: str = LOOPBACK
    metrics_port_range: str = "9250-9299"
    python_executable: str = sys.executable
    # PYSCORING_FLINK_LIB_DIR when set, else build/flink-lib.
    lib_dir: str = dataclasses.field(default_factory=lambda: str(flink_env.flink_lib_dir()))
    # Flink configuration entries written last into config.yaml, so they
    # override the generated ones.
    flink_options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, **overrides) -> "ClusterSettings":
        """Build settings from the `cluster.*` and `metrics.*` keys, then apply `overrides`."""
        values = {
            "taskmanagers": config["cluster.taskmanagers"],
            "slots_per_taskmanager": config["cluster.taskmanager.slots"],
            "jobmanager_rpc_port": config["cluster.jobmanager.rpc-port"],
            "rest_port": config["cluster.rest-port"],
            "blob_port": config["cluster.blob-port"],
            "taskmanager_rpc_ports": config["cluster.taskmanager.rpc-ports"],
            "jobmanager_memory_mb": config["cluster.jobmanager.memory-mb"],
            "taskmanager_memory_mb": config["cluster.taskmanager.memory-mb"],
            "tensorflow_memory_mb": config["cluster.taskmanager.tensorflow-memory-mb"],
            "metrics_host": config["metrics.host"],
            "metrics_port_range": config["metrics.port-range"],
            "lib_dir": str(flink_env.flink_lib_dir()),
        }
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        """Raise ConfigError for a setting the cluster cannot start with."""
        for key, port in (
            ("cluster.jobmanager.rpc-port", self.jobmanager_rpc_port),
            ("cluster.rest-port", self.rest_port),
        ):
            if not 1 <= port <= 65535:
                raise ConfigError(f"{key}: {port} is not a port; choose one within 1-65535")
        if self.jobmanager_rpc_port == self.rest_port:
            raise ConfigError(
                f"cluster.jobmanager.rpc-port and cluster.rest-port are both {self.rest_port}; "
                "give them different ports"
            )
        for key, value in (
            ("cluster.blob-port", self.blob_port),
            ("cluster.taskmanager.rpc-ports", self.taskmanager_rpc_ports),
        ):
            if value.strip() != "0":
                try:
                    parse_port_range(value if "-" in value else f"{value}-{value}")
                except ConfigError:
                    raise ConfigError(
                        f"{key}: expected 0, a port or FIRST-LAST, got {value!r}"
                    ) from None
        first, last = parse_port_range(self.metrics_port_range)
        if last - first + 1 < self.taskmanagers:
            raise ConfigError(
                f"metrics.port-range {self.metrics_port_range} has {last - first + 1} port(s) "
                f"for {self.taskmanagers} task managers, and each task manager's scorer "
                "binds its own port; widen the range"
            )
        # Flink's own defaults: 256 MiB metaspace, at least 192 MiB JVM overhead,
        # 128 MiB framework heap and 128 MiB framework off-heap memory.
        fixed_mb = 256 + max(192, self.taskmanager_memory_mb // 10) + 128 + 128
        if self.tensorflow_memory_mb + fixed_mb + 256 > self.taskmanager_memory_mb:
            raise ConfigError(
                f"cluster.taskmanager.tensorflow-memory-mb={self.tensorflow_memory_mb} leaves "
                f"too little of cluster.taskmanager.memory-mb={self.taskmanager_memory_mb} for "
                "Flink's heap, metaspace and network buffers; raise the task manager memory "
                f"to at least {self.tensorflow_memory_mb + fixed_mb + 256} MiB"
            )


@dataclasses.dataclass
class TaskManagerProcess:
    """One task-manager JVM of the cluster."""

    resource_id: str
    pid: int
    log_file: str

    def is_alive(self) -> bool:
        return _process_alive(self.pid)


def flink_configuration(settings: ClusterSettings, conf_dir: Path) -> dict[str, str]:
    """Return the entries of the cluster's config.yaml."""
    conf_dir = Path(conf_dir)
    home = flink_env.flink_home()
    physical_bytes = settings.taskmanager_memory_mb * 1024 * 1024
    entries = {
        "jobmanager.rpc.address": LOOPBACK,
        "jobmanager.rpc.port": str(settings.jobmanager_rpc_port),
        "jobmanager.bind-host": LOOPBACK,
        "jobmanager.memory.process.size": f"{settings.jobmanager_memory_mb}m",
        "jobmanager.execution.failover-strategy": "region",
        "rest.address": LOOPBACK,
        "rest.bind-address": LOOPBACK,
        "rest.port": str(settings.rest_port),
        "blob.server.port": settings.blob_port,
        "taskmanager.host": LOOPBACK,
        "taskmanager.bind-host": LOOPBACK,
        "taskmanager.rpc.port": settings.taskmanager_rpc_ports,
        "taskmanager.numberOfTaskSlots": str(settings.slots_per_taskmanager),
        # Spreads a job's subtasks over all task managers instead of filling
        # one task manager's slots first.
        "taskmanager.load-balance.mode": "SLOTS",
        "taskmanager.memory.process.size": f"{settings.taskmanager_memory_mb}m",
        # TensorFlow Java allocates its runtime, variables and tensors outside
        # the Java heap; Flink reserves this budget and adds it to
        # -XX:MaxDirectMemorySize.
        "taskmanager.memory.task.off-heap.size": f"{settings.tensorflow_memory_mb}m",
        # Managed memory serves RocksDB and batch operators, which the scoring
        # job does not use; 40 % by default would take memory TensorFlow needs.
        "taskmanager.memory.managed.fraction": "0.1",
        # JavaCPP (under TensorFlow Java) raises OutOfMemoryError when the
        # process's resident memory passes maxPhysicalBytes. Its default is
        # 4 x the maximum heap (JavaCPP 1.5.11), which can exceed the budget.
        "env.java.opts.taskmanager": f"-Dorg.bytedeco.javacpp.maxPhysicalBytes={physical_bytes}",
        "env.log.dir": str(conf_dir / "log"),
        "env.pid.dir": str(conf_dir / "run"),
        "io.tmp.dirs": str(conf_dir / "tmp"),
        "execution.checkpointing.dir": (conf_dir / "checkpoints").as_uri(),
        "execution.checkpointing.savepoint-dir": (conf_dir / "savepoints").as_uri(),
        # A killed task manager is declared lost after two failed heartbeat
        # RPCs, so 2 s heartbeats let a job restart a few seconds after a
        # crash; Flink's 10 s default takes about 20 s.
        "heartbeat.interval": "2000",
        "heartbeat.timeout": "20000",
        "parallelism.default": "1",
        "python.executable": settings.python_executable,
        "python.client.executable": settings.python_executable,
        "pyscoring.metrics.host": settings.metrics_host,
        "pyscoring.metrics.port-range": settings.metrics_port_range,
        # Serves the sources' backlog gauges (pendingRecords, pendingBytes,
        # Kafka's records-lag-max) on each task manager's pyscoring endpoint.
        **backlog_reporter_settings(settings.metrics_host, settings.metrics_port_range),
    }
    java_opts = _wheel_java_opts(home)
    if java_opts:
        entries["env.java.opts.all"] = java_opts
    entries.update({key: str(value) for key, value in settings.flink_options.items()})
    return entries


def _wheel_java_opts(home: Path) -> str:
    """Return env.java.opts.all of the wheel's config.yaml: the --add-opens flags Flink needs on JDK 17."""
    path = home / "conf" / "config.yaml"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        LOG.warning("Failed to read %s for env.java.opts.all: %s", path, error)
        return ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("all:") and "--add-opens" in stripped:
            return stripped[len("all:"):].strip()
    return ""


def _yaml_lines(entries: Mapping[str, str]) -> list[str]:
    # A JSON string is a valid YAML scalar, so quoting through json.dumps keeps
    # colons, '#' and spaces in values literal.
    return [f"{key}: {json.dumps(str(value))}" for key, value in entries.items()]


def write_configuration(settings: ClusterSettings, conf_dir: Path) -> Path:
    """Write config.yaml, the log configuration, masters and workers into `conf_dir`."""
    conf_dir = Path(conf_dir)
    conf_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("log", "run", "tmp"):
        (conf_dir / folder).mkdir(exist_ok=True)
    wheel_conf = flink_env.flink_home() / "conf"
    for name in _COPIED_CONF_FILES:
        source = wheel_conf / name
        if source.is_file():
            shutil.copyfile(source, conf_dir / name)
    header = [
        "# Generated by `pyscoring cluster start`; rewritten on every start.",
        "# Flink reads flattened keys as well as nested ones.",
    ]
    path = conf_dir / "config.yaml"
    path.write_text(
        "\n".join(header + _yaml_lines(flink_configuration(settings, conf_dir))) + "\n",
        encoding="utf-8",
    )
    # bin/start-cluster.sh and bin/stop-cluster.sh read these two files; the
    # scripts start processes on 127.0.0.1 without ssh.
    (conf_dir / "masters").write_text(f"{LOOPBACK}:{settings.rest_port}\n", encoding="utf-8")
    (conf_dir / "workers").write_text(f"{LOOPBACK}\n" * settings.taskmanagers, encoding="utf-8")
    return path


def _script_environment(settings: ClusterSettings, conf_dir: Path) -> dict[str, str]:
    home = flink_env.flink_home()
    environment = {
        key: value for key, value in os.environ.items()
        if not key.startswith("FLINK_") and key not in ("JVM_ARGS", "HOSTNAME")
    }
    environment.update({
        "FLINK_CONF_DIR": str(conf_dir),
        "FLINK_LIB_DIR": settings.lib_dir,
        "FLINK_PLUGINS_DIR": str(home / "plugins"),
        "FLINK_OPT_DIR": str(home / "opt"),
        "FLINK_LOG_DIR": str(conf_dir / "log"),
        "FLINK_PID_DIR": str(conf_dir / "run"),
        "FLINK_IDENT_STRING": IDENT,
        "HOSTNAME": LOG_HOSTNAME,
    })
    # A PyFlink job that does not set python.executable runs its Python
    # workers with `python` from the task manager's PATH; Flink 2.3 does not
    # fall back to the cluster's python.executable. The environment's bin/
    # comes first, so that `python` is the project's interpreter.
    python_bin = str(Path(settings.python_executable).parent)
    environment["PATH"] = os.pathsep.join([python_bin, environment.get("PATH", "")])
    return environment


def _pid_file(conf_dir: Path, daemon: str) -> Path:
    return Path(conf_dir) / "run" / f"flink-{IDENT}-{daemon}.pid"


def _read_pids(conf_dir: Path, daemon: str) -> list[int]:
    path = _pid_file(conf_dir, daemon)
    if not path.is_file():
        return []
    return [int(line) for line in path.read_text(encoding="utf-8").split() if line.isdigit()]


def _log_file(conf_dir: Path, daemon: str, index: int) -> Path:
    return Path(conf_dir) / "log" / f"flink-{IDENT}-{daemon}-{index}-{LOG_HOSTNAME}.log"


def _process_alive(pid: int) -> bool:
    """Return True while `pid` runs; a zombie left for its parent to reap counts as ended."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _is_cluster_process(pid: int, conf_dir: Path) -> bool:
    """Return True if `pid` is a JVM that Flink's scripts started with `conf_dir`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            arguments = handle.read().split(b"\0")
    except OSError:
        return False
    return str(conf_dir).encode() in arguments and _process_alive(pid)


def _run_scripts(
    script: str, argument_lists: list[list[str]], environment: Mapping[str, str]
) -> None:
    """Run one of the wheel's bin/ scripts once per argument list, all at once, and wait for them.

    The scripts start their daemon in the background and return. The
    daemons run in a session of their own, so a Ctrl-C in the caller's
    terminal does not reach them.
    """
    path = flink_env.flink_home() / "bin" / script
    running = []
    for arguments in argument_lists:
        running.append((arguments, subprocess.Popen(
            ["bash", str(path), *arguments], env=dict(environment), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )))
    failures = []
    for arguments, process in running:
        command = f"{script} {' '.join(arguments)}"
        try:
            output, _ = process.communicate(timeout=_SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            failures.append(f"{command} did not return within {_SCRIPT_TIMEOUT_S} s")
            continue
        if process.returncode != 0:
            failures.append(f"{command} failed with exit code {process.returncode}: {output.strip()}")
        else:
            LOG.debug("%s: %s", command, output.strip())
    if failures:
        raise ClusterError("; ".join(failures))


def _process_arguments(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0")]
    except OSError:
        return []


def _argument_value(arguments: list[str], prefix: str) -> str | None:
    """Return the rest of the first argument that starts with `prefix`, if any."""
    for argument in arguments:
        if argument.startswith(prefix):
            return argument[len(prefix):]
    return None


def _check_port_free(port: int, key: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Java's server sockets set SO_REUSEADDR, so connections of an earlier
        # cluster in TIME_WAIT do not keep Flink from binding; the probe does the same.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            raise ClusterError(
                f"port {LOOPBACK}:{port} ({key}) is not free: {error}; stop what uses it "
                f"or choose another port with --set {key}=PORT"
            ) from None


def rest_get(address: str, path: str, timeout_s: float = 5.0) -> dict:
    """GET http://ADDRESS/PATH from Flink's REST API and return the decoded JSON."""
    url = f"http://{address}/{path.lstrip('/')}"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode("utf-8"))


def parse_address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT of a job manager's REST endpoint."""
    host, separator, port = text.rpartition(":")
    host = host.strip("[]")
    if not separator or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"invalid job manager address {text!r}; expected HOST:PORT of the REST endpoint, "
            "for example 127.0.0.1:8081"
        )
    return host, int(port)


def cluster_job_defaults(address: str, timeout_s: float = 5.0) -> dict[str, str]:
    """Return the pyscoring settings a cluster advertises for its jobs, keyed by pyscoring key.

    A cluster started by `start()` advertises its metric host and port range
    in its configuration. Other clusters advertise nothing, and an empty
    dict is returned.
    """
    try:
        entries = rest_get(address, "/jobmanager/config", timeout_s)
    except (OSError, ValueError) as error:
        raise ClusterError(
            f"no Flink REST API at http://{address}: {error}; start a cluster with "
            "`pyscoring cluster start` or pass the REST address of a running job manager"
        ) from None
    defaults = {}
    for entry in entries:
        key = ADVERTISED_KEYS.get(entry.get("key"))
        if key:
            defaults[key] = entry["value"]
    return defaults


class StandaloneCluster:
    """A standalone cluster whose state lives in `conf_dir/cluster.json`."""

    def __init__(
        self,
        conf_dir: Path,
        settings: ClusterSettings,
        jobmanager_pid: int,
        taskmanagers: list[TaskManagerProcess],
        next_taskmanager_index: int,
    ):
        self.conf_dir = Path(conf_dir)
        self.settings = settings
        self.jobmanager_pid = jobmanager_pid
        self.taskmanagers = taskmanagers
        self.next_taskmanager_index = next_taskmanager_index
        self._save_lock = threading.Lock()

    @property
    def rest_address(self) -> str:
        """HOST:PORT of the REST API, the value of `--jobmanager`."""
        return f"{LOOPBACK}:{self.settings.rest_port}"

    @property
    def web_ui_url(self) -> str:
        return f"http://{self.rest_address}"

    @property
    def jobmanager_rpc_address(self) -> str:
        return f"{LOOPBACK}:{self.settings.jobmanager_rpc_port}"

    @property
    def log_dir(self) -> Path:
        return self.conf_dir / "log"

    @property
    def jobmanager_log_file(self) -> Path:
        return _log_file(self.conf_dir, "standalonesession", 0)

    def _environment(self) -> dict[str, str]:
        return _script_environment(self.settings, self.conf_dir)

    def save(self) -> None:
        with self._save_lock:
            self._save_locked()

    def _save_locked(self) -> None:
        state = {
            "settings": dataclasses.asdict(self.settings),
            "jobmanager_pid": self.jobmanager_pid,
            "taskmanagers": [dataclasses.asdict(process) for process in self.taskmanagers],
            "next_taskmanager_index": self.next_taskmanager_index,
        }
        temporary = self.conf_dir / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.conf_dir / STATE_FILE)

    @classmethod
    def load(cls, conf_dir: Path) -> "StandaloneCluster":
        conf_dir = Path(conf_dir).resolve()
        path = conf_dir / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClusterError(
                f"no cluster in {conf_dir}: {STATE_FILE} is missing; start one with "
                f"`pyscoring cluster start --dir {conf_dir}`"
            ) from None
        except ValueError as error:
            raise ClusterError(f"{path} is not valid JSON ({error}); stop the cluster's "
                               "processes by hand and start it again") from None
        return cls(
            conf_dir,
            ClusterSettings(**state["settings"]),
            state["jobmanager_pid"],
            [TaskManagerProcess(**process) for process in state["taskmanagers"]],
            state["next_taskmanager_index"],
        )

    def start_jobmanager(self) -> None:
        before = len(_read_pids(self.conf_dir, "standalonesession"))
        _run_scripts("jobmanager.sh", [["start"]], self._environment())
        pids = _read_pids(self.conf_dir, "standalonesession")
        if len(pids) <= before:
            raise ClusterError(f"jobmanager.sh recorded no process id; see {self.log_dir}")
        self.jobmanager_pid = pids[-1]
        self.save()
        LOG.info("Started the job manager (pid %d) at %s, web UI %s", self.jobmanager_pid,
                 self.jobmanager_rpc_address, self.web_ui_url)

    def add_taskmanagers(self, count: int = 1) -> list[TaskManagerProcess]:
        """Start `count` more task managers at once and return them.

        Each gets the resource id pyscoring-tm-<n>, with n counting on from
        the task managers this cluster started before. `wait_for_taskmanagers`
        waits for them to register.
        """
        resource_ids = [
            f"{TASKMANAGER_ID_PREFIX}{self.next_taskmanager_index + offset}" for offset in range(count)
        ]
        self.next_taskmanager_index += count
        known = {process.pid for process in self.taskmanagers}
        _run_scripts(
            "taskmanager.sh",
            [["start", "-D", f"taskmanager.resource-id={resource_id}"] for resource_id in resource_ids],
            self._environment(),
        )
        started = self._match_taskmanagers(resource_ids, known)
        missing = [resource_id for resource_id in resource_ids if resource_id not in started]
        new = [started[resource_id] for resource_id in resource_ids if resource_id in started]
        self.taskmanagers.extend(new)
        self.save()
        for process in new:
            LOG.info("Started task manager %s (pid %d), log %s", process.resource_id, process.pid,
                     process.log_file)
        if missing:
            raise ClusterError(
                f"task manager(s) {', '.join(missing)} ended right after their start; see the "
                f"taskexecutor logs in {self.log_dir}"
            )
        return new

    def _match_taskmanagers(
        self, resource_ids: list[str], known: set[int], timeout_s: float = 30.0
    ) -> dict[str, TaskManagerProcess]:
        """Map each new task-manager process to its resource id by its command line.

        The scripts append to one pid file in the order they win its lock.
        A pid is recorded as soon as the script has forked. Until the fork
        has executed java, its command line is the script's or empty, so
        the lookup repeats until each process shows its Java arguments,
        ends, or `timeout_s` passes.
        """
        started: dict[str, TaskManagerProcess] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in _read_pids(self.conf_dir, "taskexecutor"):
                if pid in known:
                    continue
                arguments = _process_arguments(pid)
                resource_id = _argument_value(arguments, "taskmanager.resource-id=")
                log_file = _argument_value(arguments, "-Dlog.file=")
                if resource_id in resource_ids and log_file:
                    started[resource_id] = TaskManagerProcess(resource_id, pid, log_file)
                    known.add(pid)
            pending = [pid for pid in _read_pids(self.conf_dir, "taskexecutor")
                       if pid not in known and _process_alive(pid)]
            if len(started) == len(resource_ids) or not pending or time.monotonic() >= deadline:
                return started
            time.sleep(0.1)

    def add_taskmanager(self) -> TaskManagerProcess:
        """Start one more task manager and return it; `wait_for_taskmanagers` waits for it to register."""
        return self.add_taskmanagers(1)[0]

    def registered_taskmanagers(self) -> list[dict]:
        """Return the task managers the job manager lists, as the REST API describes them."""
        return rest_get(self.rest_address, "/taskmanagers")["taskmanagers"]

    def wait_for_taskmanagers(self, count: int, timeout_s: float = 120.0) -> list[dict]:
        """Wait until `count` task managers of this cluster's running processes are registered.

        Raises ClusterError when a process ends or `timeout_s` passes first.
        """
        deadline = time.monotonic() + timeout_s
        last_error = None
        while True:
            if not _process_alive(self.jobmanager_pid):
                raise ClusterError(
                    f"the job manager (pid {self.jobmanager_pid}) ended; its log "
                    f"{self.jobmanager_log_file} ends with:\n{_tail(self.jobmanager_log_file)}"
                )
            alive_ids = set()
            for process in self.taskmanagers:
                if process.is_alive():
                    alive_ids.add(process.resource_id)
            if len(alive_ids) < count:
                dead = [process for process in self.taskmanagers if not process.is_alive()]
                details = "".join(
                    f"\n{process.resource_id} (pid {process.pid}), log {process.log_file}:\n"
                    f"{_tail(Path(process.log_file))}" for process in dead[-2:]
                )
                raise ClusterError(
                    f"only {len(alive_ids)} of {count} task managers are running{details}"
                )
            try:
                registered = [
                    entry for entry in self.registered_taskmanagers() if entry["id"] in alive_ids
                ]
                if len(registered) >= count:
                    return registered
            except (OSError, ValueError, KeyError) as error:
                LOG.debug("The REST API at %s did not list the task managers yet: %s",
                          self.rest_address, error)
                last_error = error
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"{count} task managers did not register at {self.rest_address} within "
                    f"{timeout_s:.0f} s (last REST error: {last_error}); see the logs in "
                    f"{self.log_dir}"
                )
            time.sleep(0.5)

    def processes(self) -> list[int]:
        """Return the process ids of this cluster's JVMs that still run."""
        candidates = [self.jobmanager_pid] + [process.pid for process in self.taskmanagers]
        for daemon in ("standalonesession", "taskexecutor"):
            candidates.extend(_read_pids(self.conf_dir, daemon))
        pids = []
        for pid in candidates:
            if pid and pid not in pids and _is_cluster_process(pid, self.conf_dir):
                pids.append(pid)
        return pids

    def stop(self, timeout_s: float = 30.0) -> list[int]:
        """Stop every JVM of the cluster: SIGTERM, then SIGKILL after `timeout_s`; return their ids."""
        pids = self.processes()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(_process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _process_alive(pid):
                LOG.warning("Process %d did not stop within %.0f s of SIGTERM; sending SIGKILL",
                            pid, timeout_s)
                _signal(pid, signal.SIGKILL)
        for daemon in ("standalonesession", "taskexecutor"):
            _pid_file(self.conf_dir, daemon).unlink(missing_ok=True)
        (self.conf_dir / STATE_FILE).unlink(missing_ok=True)
        LOG.info("Stopped the cluster in %s (processes %s)", self.conf_dir,
                 ", ".join(map(str, pids)) or "none")
        return pids


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(unreadable: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _check_lib_dir(lib_dir: Path) -> None:
    if not list(lib_dir.glob("flink-dist-*.jar")) or not list(lib_dir.glob("pyscoring-jvm-*.jar")):
        raise ClusterError(
            f"{lib_dir} lacks Flink's flink-dist jar or pyscoring's jar; run `make install` "
            f"in {flink_env.PROJECT_ROOT} or set PYSCORING_FLINK_LIB_DIR to such a folder"
        )


def start(
    conf_dir: Path | None = None,
    settings: ClusterSettings | None = None,
    timeout_s: float = 180.0,
) -> StandaloneCluster:
    """Start a job manager and `settings.taskmanagers` task managers; return once all registered.

    `conf_dir` is created if needed and becomes the cluster's FLINK_CONF_DIR.
    On failure every process started here is stopped again and ClusterError
    names the log to read.
    """
    conf_dir = Path(conf_dir or DEFAULT_CLUSTER_DIR).resolve()
    settings = settings or ClusterSettings()
    settings.validate()
    _check_lib_dir(Path(settings.lib_dir))
    if (conf_dir / STATE_FILE).is_file():
        running = StandaloneCluster.load(conf_dir)
        if running.processes():
            raise ClusterError(
                f"a cluster already runs in {conf_dir} (REST API {running.rest_address}); "
                f"stop it with `pyscoring cluster stop --dir {conf_dir}` first"
            )
    conf_dir.mkdir(parents=True, exist_ok=True)
    # Process ids of an earlier run that ended without `stop` are stale now.
    for daemon in ("standalonesession", "taskexecutor"):
        for pid in _read_pids(conf_dir, daemon):
            if _is_cluster_process(pid, conf_dir):
                raise ClusterError(
                    f"process {pid} of an earlier cluster still runs with {conf_dir}; "
                    f"stop it with `pyscoring cluster stop --dir {conf_dir}`"
                )
        _pid_file(conf_dir, daemon).unlink(missing_ok=True)
    _check_port_free(settings.jobmanager_rpc_port, "cluster.jobmanager.rpc-port")
    _check_port_free(settings.rest_port, "cluster.rest-port")

    write_configuration(settings, conf_dir)
    cluster = StandaloneCluster(conf_dir, settings, 0, [], 0)
    cluster.save()
    started = time.monotonic()
    try:
        # Task managers retry until the job manager answers, so all start at once.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            jobmanager = pool.submit(cluster.start_jobmanager)
            taskmanagers = pool.submit(cluster.add_taskmanagers, settings.taskmanagers)
            jobmanager.result()
            taskmanagers.result()
        cluster.wait_for_taskmanagers(settings.taskmanagers, timeout_s)
    except BaseException as error:
        LOG.error("Starting the cluster in %s failed: %s; stopping its processes", conf_dir, error)
        cluster.stop(timeout_s=10)
        raise
    LOG.info("Cluster ready in %.1f s: %d task manager(s), REST API %s", time.monotonic() - started,
             settings.taskmanagers, cluster.rest_address)
    return cluster


def attach(conf_dir: Path | None = None) -> StandaloneCluster:
    """Return the cluster recorded in `conf_dir` (which may have stopped since)."""
    return StandaloneCluster.load(Path(conf_dir or DEFAULT_CLUSTER_DIR))


def stop(conf_dir: Path | None = None, timeout_s: float = 30.0) -> list[int]:
    """Stop the cluster recorded in `conf_dir`; return the ids of the processes that were running."""
    conf_dir = Path(conf_dir or DEFAULT_CLUSTER_DIR).resolve()
    if (conf_dir / STATE_FILE).is_file():
        return StandaloneCluster.load(conf_dir).stop(timeout_s)
    # Without a state file, the pid files still name the processes.
    orphan = StandaloneCluster(conf_dir, ClusterSettings(), 0, [], 0)
    return orphan.stop(timeout_s) if orphan.processes() else []


@dataclasses.dataclass
class ClusterStatus:
    """What `pyscoring cluster status` reports."""

    conf_dir: Path
    running: bool
    rest_address: str = ""
    jobmanager_rpc_address: str = ""
    jobmanager_pid: int = 0
    flink_version: str = ""
    # From the REST API: one dict per registered task manager.
    taskmanagers: list[dict] = dataclasses.field(default_factory=list)
    slots_total: int = 0
    slots_available: int = 0
    jobs_running: int = 0
    # Local task-manager processes by resource id, with whether each runs.
    processes: list[tuple[TaskManagerProcess, bool]] = dataclasses.field(default_factory=list)
    metrics_port_range: str = ""
    log_dir: Path | None = None
    error: str = ""


def status(conf_dir: Path | None = None) -> ClusterStatus:
    """Report the cluster in `conf_dir` from its state file, its processes and its REST API."""
    conf_dir = Path(conf_dir or DEFAULT_CLUSTER_DIR).resolve()
    try:
        cluster = StandaloneCluster.load(conf_dir)
    except ClusterError as error:
        return ClusterStatus(conf_dir, running=False, error=str(error))
    result = ClusterStatus(
        conf_dir,
        running=_is_cluster_process(cluster.jobmanager_pid, conf_dir),
        rest_address=cluster.rest_address,
        jobmanager_rpc_address=cluster.jobmanager_rpc_address,
        jobmanager_pid=cluster.jobmanager_pid,
        processes=[(process, process.is_alive()) for process in cluster.taskmanagers],
        metrics_port_range=cluster.settings.metrics_port_range,
        log_dir=cluster.log_dir,
    )
    if not result.running:
        result.error = f"the job manager (pid {cluster.jobmanager_pid}) does not run"
        return result
    try:
        overview = rest_get(cluster.rest_address, "/overview")
        result.taskmanagers = cluster.registered_taskmanagers()
    except (OSError, ValueError, KeyError) as error:
        result.error = f"the REST API at {cluster.rest_address} did not answer: {error}"
        return result
    result.flink_version = overview.get("flink-version", "")
    result.slots_total = overview.get("slots-total", 0)
    result.slots_available = overview.get("slots-available", 0)
    result.jobs_running = overview.get("jobs-running", 0)
    return result
