"""The same scoring job submitted twice to one standalone cluster with one task manager.

TensorFlow's native library loads parent-first from the cluster's lib folder,
once per task-manager JVM, so the second job must reuse it instead of
loading it again from a new user classloader. The cluster is started and
stopped with `pyscoring cluster start|stop` in a temporary folder on free
loopback ports, and each job is submitted with `pyscoring deploy
--jobmanager`, which waits for the job to finish.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pyscoring import deploy, standalone
from pyscoring.metrics import counter_total, scrape
from tests.integration.conftest import free_port, listening_addresses

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 600
INPUT_LINES = 500
# Ports the task manager's scorer picks its metrics endpoint from.
METRICS_FIRST_PORT, METRICS_LAST_PORT = 19300, 19349
# Log lines of a failed native-library load or of scorer classes that a
# user classloader could not link.
NATIVE_LIBRARY_ERRORS = (
    "UnsatisfiedLinkError",
    "already loaded in another classloader",
    "NoClassDefFoundError",
    "ExceptionInInitializerError",
)


def _mapped_tensorflow_libraries(pid: int) -> dict[str, set[str]]:
    """Return the paths of every libtensorflow* file that process `pid` maps, by file name."""
    libraries: dict[str, set[str]] = {}
    with open(f"/proc/{pid}/maps", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split(maxsplit=5)
            if len(fields) < 6:
                continue
            path = fields[5].strip()
            name = Path(path).name
            if name.startswith("libtensorflow"):
                libraries.setdefault(name, set()).add(path)
    return libraries


def _pyscoring(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyscoring.cli", *arguments],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def one_taskmanager_cluster(tmp_path_factory):
    """A cluster of one job manager and one task manager of one slot, stopped after the module."""
    cluster_dir = tmp_path_factory.mktemp("resubmit-cluster")
    started = _pyscoring(
        "cluster", "start", "--dir", str(cluster_dir), "--taskmanagers", "1", "--slots", "1",
        "--rest-port", str(free_port()), "--rpc-port", str(free_port()),
        "--set", f"metrics.port-range={METRICS_FIRST_PORT}-{METRICS_LAST_PORT}",
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield standalone.attach(cluster_dir)
    finally:
        stopped = _pyscoring("cluster", "stop", "--dir", str(cluster_dir))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@dataclasses.dataclass
class Submission:
    job_id: str
    output: str
    keys: list[str]
    dead_letters: list[dict]
    # Task-manager resource ids that ran the job's subtasks, from the REST API.
    taskmanager_ids: set[str]
    job_state: str
    failures: int


def _submit(cluster, export_dir: Path, input_path: Path, output_dir: Path) -> Submission:
    completed = _pyscoring(
        "deploy", "--jobmanager", cluster.rest_address, "--model", str(export_dir),
        "--input", str(input_path), "--output", str(output_dir),
        "--set", "deploy.checkpoint-interval-ms=1000",
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    job_lines = [line for line in completed.stdout.splitlines()
                 if line.startswith("job ") and " scores model " in line]
    assert job_lines, completed.stdout
    job_id = job_lines[0].split()[1]

    job = standalone.rest_get(cluster.rest_address, f"/jobs/{job_id}")
    taskmanager_ids = set()
    for vertex in job["vertices"]:
        details = standalone.rest_get(
            cluster.rest_address, f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        taskmanager_ids.update(entry["taskmanager-id"] for entry in details["taskmanagers"])
    exceptions = standalone.rest_get(cluster.rest_address, f"/jobs/{job_id}/exceptions")
    return Submission(
        job_id=job_id,
        output=output,
        keys=[row["key"] for row in deploy.read_json_lines(output_dir / "scores")],
        dead_letters=deploy.read_json_lines(output_dir / "dead-letters"),
        taskmanager_ids=taskmanager_ids,
        job_state=job["state"],
        failures=len(exceptions["exceptionHistory"]["entries"]),
    )


@dataclasses.dataclass
class Resubmission:
    submissions: list[Submission]
    expected_keys: set[str]
    taskmanager: standalone.TaskManagerProcess
    pids_after: list[int]
    registered_ids: list[str]
    taskmanager_log: str
    # File name to the paths it is mapped from in the task manager after both jobs.
    tensorflow_libraries: dict[str, set[str]]
    # pyscoring_predictions_total of the model, from the endpoint the task manager listens on.
    predictions: float


@pytest.fixture(scope="module")
def resubmission(one_taskmanager_cluster, census_export, tmp_path_factory) -> Resubmission:
    cluster = one_taskmanager_cluster
    [taskmanager] = cluster.taskmanagers
    folder = tmp_path_factory.mktemp("resubmit")
    input_path = folder / "resubmit.test"
    lines = census_export.test_path.read_bytes().splitlines(keepends=True)[:INPUT_LINES]
    input_path.write_bytes(b"".join(lines))
    # The census format skips lines that start with "|", as adult.test's first line does.
    expected_keys = {f"{input_path.name}:{number}" for number, line in enumerate(lines, start=1)
                     if not line.startswith(b"|")}

    submissions = [
        _submit(cluster, census_export.export_dir, input_path, folder / f"out-{run}")
        for run in (1, 2)
    ]

    metrics_ports = [port for host, port in listening_addresses(taskmanager.pid)
                     if METRICS_FIRST_PORT <= port <= METRICS_LAST_PORT]
    assert len(metrics_ports) == 1, f"task manager {taskmanager.pid} listens on {metrics_ports}"
    family = scrape(f"127.0.0.1:{metrics_ports[0]}").get("pyscoring_predictions")
    labels = {"model": census_export.manifest["model_name"], "path": "jvm"}
    log_text = Path(taskmanager.log_file).read_text(encoding="utf-8", errors="replace")
    out_file = Path(taskmanager.log_file).with_suffix(".out")
    if out_file.is_file():
        log_text += out_file.read_text(encoding="utf-8", errors="replace")
    return Resubmission(
        submissions=submissions,
        expected_keys=expected_keys,
        taskmanager=taskmanager,
        pids_after=[process.pid for process in standalone.attach(cluster.conf_dir).taskmanagers],
        registered_ids=[entry["id"] for entry in cluster.registered_taskmanagers()],
        taskmanager_log=log_text,
        tensorflow_libraries=_mapped_tensorflow_libraries(taskmanager.pid),
        predictions=counter_total(family, labels) if family else 0.0,
    )


def test_both_jobs_score_every_key_once(resubmission):
    for number, submission in enumerate(resubmission.submissions, start=1):
        assert submission.job_state == "FINISHED", number
        assert submission.failures == 0, f"job {number} recorded failures"
        assert not submission.dead_letters, f"job {number}: {submission.dead_letters[:3]}"
        assert len(submission.keys) == len(set(submission.keys)), f"job {number} scored a row twice"
        assert set(submission.keys) == resubmission.expected_keys, number
        assert f"{len(resubmission.expected_keys)} rows scored, 0 dead letters" in submission.output


def test_one_taskmanager_jvm_serves_both_jobs(resubmission):
    taskmanager = resubmission.taskmanager
    assert taskmanager.is_alive(), f"task manager {taskmanager.pid} ended"
    assert resubmission.pids_after == [taskmanager.pid]
    assert resubmission.registered_ids == [taskmanager.resource_id]
    for submission in resubmission.submissions:
        assert submission.taskmanager_ids == {taskmanager.resource_id}, submission.job_id
        assert submission.job_id in resubmission.taskmanager_log, submission.job_id
    # The scorer's registry is one per JVM, so the process that ran both jobs counts both.
    assert resubmission.predictions == 2 * len(resubmission.expected_keys)


def test_native_library_loads_once_without_error(resubmission):
    log = resubmission.taskmanager_log
    for error in NATIVE_LIBRARY_ERRORS:
        assert error not in log, f"the task manager's log contains {error}"
    libraries = resubmission.tensorflow_libraries
    assert "libtensorflow_cc.so.2" in libraries, sorted(libraries)
    for name, paths in libraries.items():
        assert len(paths) == 1, f"{name} is mapped from {len(paths)} copies: {sorted(paths)}"
    # Each job loads the model and closes it when its task ends.
    assert log.count("Loaded model ") == 2
    assert log.count("Closed model ") == 2
