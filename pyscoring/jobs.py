"""Lifecycle of scoring jobs: list, stop with a savepoint, resume, rescale.

`deploy` writes checkpoints to `deploy.checkpoint-dir` and keeps them when
the job is cancelled or fails. `RestClient.stop_with_savepoint` stops a job
after writing a savepoint. A new deploy given either folder
(`--from-savepoint`) resumes from that state. The pyscoring-lines source
goes on after the last line the state covers, and rows that were in the
scorer are scored from the state. The file sinks go on with exactly the
files the state lists, so no row is lost or written twice. The new job may
run at another parallelism, which is how a job is rescaled.

`RestClient` talks to a Flink REST endpoint: a standalone cluster (see
`pyscoring.standalone`) or the mini cluster of a running deploy process,
which lives only as long as that process.

This module never imports TensorFlow or PyFlink.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pyscoring.config import Config, ConfigError

LOG = logging.getLogger(__name__)

# Flink's default REST port, which a standalone cluster binds unless configured otherwise.
DEFAULT_JOBMANAGER = "127.0.0.1:8081"

# Written into OUTPUT_DIR by deploy: the job id, its REST endpoint and state folders.
JOB_RECORD_FILE = "pyscoring-job.json"

# Flink writes a savepoint's or checkpoint's _metadata file last, so a folder
# that contains one is complete.
METADATA_FILE = "_metadata"

# Operator ids that do not depend on the parallelism. Under Flink 2.3's default
# (PLAN_ONLY) a SQL job's ids come from the stream graph's hasher, and a
# savepoint taken at parallelism 1 does not restore at parallelism 2 ("Cannot
# map checkpoint/savepoint state for operator ..."). With ALWAYS, <id> counts
# the planner's nodes from a per-JVM counter, which deploy resets before it
# plans (deploy.reset_operator_ids), so the same statements get the same ids
# in a fresh process and in a second deploy of one process.
UID_SETTINGS = {
    "table.exec.uid.generation": "ALWAYS",
    "table.exec.uid.format": "<id>_<transformation>",
}


class JobsError(ValueError):
    """A Flink REST call failed, or a savepoint or checkpoint is missing.

    A ValueError, so that the CLI reports it as an error message.
    """


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """One job as the REST endpoint's /jobs/overview lists it."""

    job_id: str
    name: str
    state: str
    start_time_ms: int
    duration_ms: int


def parse_address(address: str) -> tuple[str, int]:
    """Split HOST:PORT; raises JobsError naming the value when it is malformed."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise JobsError(
            f"invalid REST address {address!r}; expected HOST:PORT such as {DEFAULT_JOBMANAGER}"
        )
    return host.strip("[]"), int(port)


class RestClient:
    """The parts of Flink's REST API that the job lifecycle needs."""

    def __init__(self, address: str = DEFAULT_JOBMANAGER, timeout_s: float = 10.0):
        self.host, self.port = parse_address(address)
        self.address = f"{self.host}:{self.port}"
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"http://{self.address}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", errors="replace")
            try:
                detail = "; ".join(json.loads(detail).get("errors", [detail]))
            except ValueError:
                pass
            raise JobsError(f"{method} {url} failed with HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise JobsError(
                f"no Flink REST endpoint responds at {self.address} ({error}); start a cluster "
                "or pass the address that `pyscoring deploy` printed"
            ) from None
        return json.loads(text) if text.strip() else {}

    def list_jobs(self) -> list[JobInfo]:
        """Return every job the cluster lists, newest first."""
        overview = self._request("GET", "/jobs/overview")
        jobs = [
            JobInfo(
                job_id=job["jid"],
                name=job.get("name", ""),
                state=job.get("state", "UNKNOWN"),
                start_time_ms=int(job.get("start-time", 0)),
                duration_ms=int(job.get("duration", 0)),
            )
            for job in overview.get("jobs", [])
        ]
        return sorted(jobs, key=lambda job: job.start_time_ms, reverse=True)

    def job_parallelism(self, job_id: str) -> int:
        """Return the largest parallelism of the job's operators, or 0 before they are known."""
        details = self._request("GET", f"/jobs/{_quote(job_id)}")
        return max((vertex.get("parallelism", 0) for vertex in details.get("vertices", [])), default=0)

    def job_state(self, job_id: str) -> str:
        return self._request("GET", f"/jobs/{_quote(job_id)}").get("state", "UNKNOWN")

    def vertex_states(self, job_id: str) -> dict[str, str]:
        """Map each vertex name of the job to its status (RUNNING, FINISHED, ...)."""
        details = self._request("GET", f"/jobs/{_quote(job_id)}")
        return {vertex.get("name", ""): vertex.get("status", "UNKNOWN")
                for vertex in details.get("vertices", [])}

    def stop_with_savepoint(
        self, job_id: str, target_dir: Path, timeout_s: float = 300.0, drain: bool = False,
    ) -> Path:
        """Write a savepoint into `target_dir`, stop the job, and return the savepoint folder.

        By default the job stops without draining: event-time timers do not
        fire, so the job can resume from the savepoint as if it had never
        stopped. With `drain` every source ends first, every operator
        finishes its input, and the savepoint is the job's last checkpoint.
        """
        target_dir = Path(target_dir).resolve()
        LOG.info("Stopping job %s with a savepoint into %s", job_id, target_dir)
        earlier = set(target_dir.glob("savepoint-*")) if target_dir.is_dir() else set()
        trigger = self._request(
            "POST",
            f"/jobs/{_quote(job_id)}/stop",
            {"targetDirectory": target_dir.as_uri(), "drain": drain},
        )
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status = self._request(
                    "GET", f"/jobs/{_quote(job_id)}/savepoints/{_quote(request_id)}"
                )
            except JobsError as error:
                # The mini cluster of a deploy process shuts down as soon as its
                # job ends, which a completed stop-with-savepoint does. The
                # status response can be lost then, and the savepoint folder shows the outcome.
                written = _new_savepoint(target_dir, earlier, job_id)
                if written is None:
                    raise
                LOG.info(
                    "The REST endpoint went away after the stop (%s); job %s wrote the "
                    "savepoint %s",
                    error,
                    job_id,
                    written,
                )
                return written
            if status.get("status", {}).get("id") == "COMPLETED":
                break
            if time.monotonic() > deadline:
                raise JobsError(
                    f"the savepoint of job {job_id} did not complete within {timeout_s:.0f} s; "
                    "the job may still be running: check `pyscoring jobs list`"
                )
            time.sleep(0.5)
        operation = status.get("operation", {})
        if "failure-cause" in operation:
            cause = operation["failure-cause"]
            first_line = str(cause.get("stack-trace", cause)).splitlines()[0]
            raise JobsError(f"stopping job {job_id} with a savepoint failed: {first_line}")
        location = _local_path(operation["location"])
        LOG.info("Stopped job %s; its savepoint is %s", job_id, location)
        return location

    def cancel(self, job_id: str) -> None:
        """Cancel the job without a savepoint; its retained checkpoints stay."""
        LOG.info("Cancelling job %s", job_id)
        self._request("PATCH", f"/jobs/{_quote(job_id)}?mode=cancel")

    def latest_checkpoint(self, job_id: str) -> Path | None:
        """Return the folder of the job's newest completed checkpoint, if any was written."""
        checkpoints = self._request("GET", f"/jobs/{_quote(job_id)}/checkpoints")
        completed = (checkpoints.get("latest") or {}).get("completed") or {}
        path = completed.get("external_path")
        return _local_path(path) if path else None


def _new_savepoint(target_dir: Path, earlier: set[Path], job_id: str) -> Path | None:
    """Return the complete savepoint of `job_id` that appeared in `target_dir`, if any.

    Flink names a savepoint folder savepoint-<first 6 characters of the job
    id>-<random>, and writes its _metadata last.
    """
    prefix = f"savepoint-{job_id[:6]}-"
    written = [
        folder
        for folder in target_dir.glob(f"{prefix}*")
        if folder not in earlier and (folder / METADATA_FILE).is_file()
    ]
    return max(written, key=lambda folder: folder.stat().st_mtime) if written else None


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _local_path(location: str) -> Path:
    """Convert a Flink file location (file:/..., file:///... or a plain path) to a Path."""
    if location.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
    return Path(location)


def wait_for_state(
    client: RestClient, job_id: str, states: set[str], timeout_s: float = 120.0
) -> str:
    """Poll until the job reaches one of `states`; return it. Raises JobsError on timeout."""
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        try:
            state = client.job_state(job_id)
        except JobsError as error:
            LOG.debug("Job %s is not listed yet: %s", job_id, error)
        if state in states:
            return state
        time.sleep(0.5)
    raise JobsError(
        f"job {job_id} is {state} after {timeout_s:.0f} s, expected one of {sorted(states)}"
    )


# ---------------------------------------------------------------- state folders


def retained_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Return the complete checkpoints under `checkpoint_dir/<job id>/chk-N/`, oldest first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = [metadata.parent for metadata in checkpoint_dir.glob(f"*/chk-*/{METADATA_FILE}")]
    return sorted(found, key=lambda folder: (folder / METADATA_FILE).stat().st_mtime)


def resolve_restore_path(path: Path | str) -> Path:
    """Return the savepoint or checkpoint folder to resume from.

    `path` is a savepoint or checkpoint folder (it contains `_metadata`), or a
    folder above them: the savepoint folder of `jobs stop --savepoint`, or
    `deploy.checkpoint-dir`. Then the newest complete one is taken.
    """
    path = _local_path(str(path)).resolve()
    if (path / METADATA_FILE).is_file():
        return path
    if not path.is_dir():
        raise JobsError(
            f"savepoint or checkpoint {path} does not exist; pass the folder that "
            "`pyscoring jobs stop --savepoint` printed, or the job's checkpoint folder"
        )
    candidates = [m.parent for m in path.glob(f"*/{METADATA_FILE}")]
    candidates += [m.parent for m in path.glob(f"*/*/{METADATA_FILE}")]
    if not candidates:
        raise JobsError(
            f"no savepoint or retained checkpoint in {path}: expected a folder holding "
            f"{METADATA_FILE}, such as savepoint-*/ or <job id>/chk-N/"
        )
    newest = max(candidates, key=lambda folder: (folder / METADATA_FILE).stat().st_mtime)
    LOG.info("Resuming from %s, the newest of %d found under %s", newest, len(candidates), path)
    return newest


def _has_committed_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    for _, _, files in os.walk(folder):
        if any(not name.startswith((".", "_")) for name in files):
            return True
    return False


def starting_over_notice(output_dir: Path, checkpoint_dir: Path) -> str | None:
    """Return a warning when a deploy without a savepoint repeats the work of an earlier job.

    An earlier job left its record, output or checkpoints in `output_dir` or
    `checkpoint_dir`. A job that starts without state reads its input from
    the beginning, so it writes those rows again.
    """
    output_dir = Path(output_dir)
    record = read_job_record(output_dir)
    checkpoints = retained_checkpoints(checkpoint_dir)
    committed = _has_committed_files(output_dir / "scores") or _has_committed_files(
        output_dir / "dead-letters"
    )
    if record is None and not checkpoints and not committed:
        return None
    earlier = f" (earlier job: {record['job_id']})" if record else ""
    notice = (
        "starting over without a savepoint: the job reads its input from the beginning, "
        f"so rows that an earlier job wrote to {output_dir}{earlier} are written again"
    )
    if checkpoints:
        notice += (
            f"; to resume instead, pass --from-savepoint {checkpoint_dir} "
            f"(newest retained checkpoint: {checkpoints[-1]})"
        )
    return notice


def checkpoint_dir_of(config, output_dir: Path) -> Path:
    """Return deploy.checkpoint-dir of `config`, or OUTPUT_DIR/checkpoints when it is empty."""
    return Path(config["deploy.checkpoint-dir"] or Path(output_dir) / "checkpoints").resolve()


def state_settings(checkpoint_dir: Path, restore_path: Path | None) -> dict[str, str]:
    """Return the Flink settings for retained checkpoints, stable operator ids and a restore."""
    settings = {
        "execution.checkpointing.dir": Path(checkpoint_dir).resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        **UID_SETTINGS,
    }
    if restore_path is not None:
        settings["execution.state-recovery.path"] = str(restore_path)
    return settings


# ---------------------------------------------------------------- where the job runs


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port of `host` that is free now, chosen by the operating system.

    Another process may take the port before Flink binds it; Flink then fails
    to start with the port in its error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def cluster_settings(jobmanager: str, bind_host: str = "127.0.0.1") -> tuple[dict[str, str], str]:
    """Return the Flink settings that pick where the job runs, and its REST address.

    An empty `jobmanager` runs the job in the deploy process's mini cluster,
    whose REST endpoint binds a free port of `bind_host`; HOST:PORT submits
    the job to that cluster.
    """
    if jobmanager:
        host, port = parse_address(jobmanager)
        settings = {"execution.target": "remote", "rest.address": host, "rest.port": str(port)}
        return settings, f"{host}:{port}"
    port = free_port(bind_host)
    reachable = "127.0.0.1" if bind_host == "0.0.0.0" else bind_host
    settings = {
        "rest.address": reachable,
        "rest.bind-address": bind_host,
        "rest.port": str(port),
        "rest.bind-port": str(port),
    }
    return settings, f"{reachable}:{port}"


def restart_settings(config: Config, prefix: str, on_cluster: bool,
                     extra_attempts: int = 0) -> dict[str, str]:
    """Return Flink's restart-strategy settings from the `<prefix>.restart-*` keys.

    `prefix` is "deploy" or "train". The strategy "auto" is fixed-delay in
    an embedded mini cluster and exponential-delay on a cluster
    (`on_cluster`), where every restart fails until a lost task manager is
    replaced. `extra_attempts` adds restarts to either budget.
    """
    strategy = config[f"{prefix}.restart-strategy"]
    if strategy == "auto":
        strategy = "exponential-delay" if on_cluster else "fixed-delay"
    delay_ms = config[f"{prefix}.restart-delay-ms"]
    if strategy == "fixed-delay":
        return {
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": str(
                config[f"{prefix}.restart-attempts"] + extra_attempts),
            "restart-strategy.fixed-delay.delay": f"{delay_ms} ms",
        }
    max_delay_ms = config[f"{prefix}.restart-max-delay-ms"]
    if max_delay_ms < delay_ms:
        raise ConfigError(
            f"{prefix}.restart-max-delay-ms={max_delay_ms} is below "
            f"{prefix}.restart-delay-ms={delay_ms}; raise it to at least {delay_ms}"
        )
    return {
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{delay_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{max_delay_ms} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": str(
            config[f"{prefix}.restart-backoff-attempts"] + extra_attempts),
    }


def write_job_record(output_dir: Path, record: dict) -> Path:
    """Write the deployed job's record into OUTPUT_DIR atomically; return its path."""
    path = Path(output_dir) / JOB_RECORD_FILE
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_job_record(output_dir: Path) -> dict | None:
    """Return the record of the job last deployed into OUTPUT_DIR, or None."""
    path = Path(output_dir) / JOB_RECORD_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class Placement:
    """The cluster that runs a deploy's job, and the state the job starts from.

    `settings` are the Flink settings for both; `restore_path` is None for a
    job that starts without state.
    """

    settings: dict[str, str]
    rest_address: str
    embedded: bool
    checkpoint_dir: Path
    restore_path: Path | None

    def describe(self) -> str:
        if self.embedded:
            return f"the embedded Flink mini cluster (REST endpoint {self.rest_address})"
        return f"the Flink cluster at {self.rest_address}"


def place_job(
    jobmanager: str,
    output_dir: Path,
    checkpoint_dir: Path,
    restore_path: Path | None,
    bind_host: str = "127.0.0.1",
) -> Placement:
    """Resolve the restore path and return the job's Flink settings for cluster and state.

    A job that starts without state logs a WARNING when an earlier job left
    output or checkpoints in the same folders (see starting_over_notice).
    """
    checkpoint_dir = Path(checkpoint_dir).resolve()
    resolved = resolve_restore_path(restore_path) if restore_path else None
    if resolved is None:
        notice = starting_over_notice(output_dir, checkpoint_dir)
        if notice:
            LOG.warning("Job %s", notice)
    settings = state_settings(checkpoint_dir, resolved)
    cluster, rest_address = cluster_settings(jobmanager, bind_host)
    settings.update(cluster)
    if resolved is not None:
        LOG.info("Resuming from %s", resolved)
    return Placement(settings, rest_address, not jobmanager, checkpoint_dir, resolved)
