"""ML cluster on the Flink mini cluster: accuracy, sharding, failover, streaming.

Every training job runs in a subprocess, so a test can watch its run folder
(events.jsonl, status.json, node logs) and kill its node processes. The
slow tests use 1 worker and 1 parameter server on the first rows of the
data, which exercise the same code paths in less time.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyscoring import census, evaluation, manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data" / "adult"
MIN_AUC = 0.88
JOB_TIMEOUT_S = 600

_BOUNDED_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from pyscoring.config import Config
from pyscoring.training import train
arguments = json.loads(sys.argv[1])
result = train(Config(arguments["config"]), arguments["train_path"], arguments["test_path"],
               arguments["export_dir"], arguments["checkpoint_dir"])
print("EXPORTED", json.dumps({"version": result.version, "path": result.path}))
"""

_STREAM_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from models.census_wide_deep import ModelParams, compute_numeric_stats
from pyscoring import census
from pyscoring.config import Config
from pyscoring.training.cluster import train_stream
from pyscoring.cluster.job import row_to_record
arguments = json.loads(sys.argv[1])
stats = compute_numeric_stats(census.load(arguments["train_path"]).features)

def build_stream(env, table_env):
    path = arguments["train_path"].replace("'", "''")
    table_env.execute_sql(
        "CREATE TEMPORARY TABLE lines (source STRING, line_number BIGINT, `key` STRING, "
        "line STRING) WITH ('connector' = 'pyscoring-lines', 'path' = '" + path + "', "
        "'loop' = 'true', 'rows-per-second' = '" + str(arguments["rows_per_second"]) + "')")
    lines = table_env.to_data_stream(table_env.sql_query("SELECT line FROM lines"))

    def parse(row):
        parsed = census.parse_line(row[0])
        if parsed is not None:
            yield row_to_record(parsed)

    return lines.flat_map(parse)

result = train_stream(Config(arguments["config"]), build_stream, arguments["test_path"],
                      arguments["export_dir"], arguments["checkpoint_dir"],
                      model_params=ModelParams(numeric_stats=stats))
print("EXPORTED", json.dumps({"version": result.version, "path": result.path}))
"""

_TABLE_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from models.census_wide_deep import ModelParams, compute_numeric_stats
from pyscoring import census
from pyscoring.config import Config
from pyscoring.training.cluster import train_table
arguments = json.loads(sys.argv[1])
stats = compute_numeric_stats(census.load(arguments["train_path"]).features)

def build_table(table_env):
    # A filesystem CSV table of every field as text; the query trims the
    # spaces after the file's commas and types the columns.
    path = arguments["train_path"].replace("'", "''")
    fields = ", ".join(f"`{column.name}` STRING" for column in census.COLUMNS)
    table_env.execute_sql(
        f"CREATE TEMPORARY TABLE census_csv ({fields}) WITH ('connector' = 'filesystem', "
        f"'path' = '{path}', 'format' = 'csv', 'csv.ignore-parse-errors' = 'true')")
    selected = []
    for column in census.COLUMNS:
        value = f"TRIM(`{column.name}`)"
        if column.name == census.LABEL_COLUMN:
            selected.append(f"CASE WHEN {value} LIKE '>50K%' THEN 1 ELSE 0 END AS `{column.name}`")
        elif column.dtype == "int64":
            selected.append(f"CAST({value} AS BIGINT) AS `{column.name}`")
        else:
            selected.append(f"{value} AS `{column.name}`")
    return table_env.sql_query(
        f"SELECT {', '.join(selected)} FROM census_csv "
        "WHERE `income` IS NOT NULL AND TRIM(`age`) <> ''")

result = train_table(Config(arguments["config"]), build_table, arguments["test_path"],
                     arguments["export_dir"], arguments["checkpoint_dir"],
                     model_params=ModelParams(numeric_stats=stats))
print("EXPORTED", json.dumps({"version": result.version, "path": result.path}))
"""


def start_job(script: str, tmp_path: Path, config: dict, train_path=None, test_path=None,
              **extra) -> tuple[subprocess.Popen, dict]:
    arguments = {
        "config": config,
        "train_path": str(train_path or DATA_DIR / "adult.data"),
        "test_path": str(test_path or DATA_DIR / "adult.test"),
        "export_dir": str(tmp_path / "exports"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        **extra,
    }
    log = open(tmp_path / "driver.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(arguments)], cwd=REPO_ROOT,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return process, arguments


def finish_job(process: subprocess.Popen, tmp_path: Path, timeout_s: float = JOB_TIMEOUT_S):
    try:
        code = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"training did not finish within {timeout_s} s; "
                             f"see {tmp_path / 'driver.log'}")
    output = (tmp_path / "driver.log").read_text(errors="replace")
    assert code == 0, f"training failed with exit code {code}:\n{output[-6000:]}"
    return output


def read_events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def latest_checkpoint_step(checkpoint_dir: Path) -> int:
    steps = [int(path.split("-")[-1].split(".")[0])
             for path in glob.glob(str(checkpoint_dir / "model.ckpt-*.index"))]
    return max(steps, default=-1)


def wait_for(condition, timeout_s: float, description: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {description}")


def node_pid(run_dir: Path, node: str, version: int) -> int:
    for event in read_events(run_dir):
        if event["event"] == "register" and event["node"] == node \
                and event["version"] == version:
            return int(event["reason"].rsplit(" ", 1)[1])
    raise AssertionError(f"{node} of version {version} has not registered")


def node_processes(marker: str) -> list[int]:
    """Return pids of live node processes whose command line contains `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                command = file.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "pyscoring.cluster.node" in command and marker in command and state != "Z":
            pids.append(int(entry))
    return pids


def write_head(source: Path, target: Path, count: int) -> Path:
    with open(source, "rb") as file:
        lines = [next(file) for _ in range(count)]
    target.write_bytes(b"".join(lines))
    return target


def transitions(run_dir: Path, state: str) -> list[dict]:
    return [event for event in read_events(run_dir)
            if event["event"] == "transition" and event["state"] == state]


def final_result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


# The shared 2-worker, 2-parameter-server export.

def test_census_2w2ps_manifest_topology(census_export_2w2ps):
    training = census_export_2w2ps.manifest["training"]
    variables = census_export_2w2ps.manifest["variables"]
    assert training["workers"] == 2
    assert training["ps"] == 2
    assert training["global_step"] > 0
    assert variables["partitioned"] is True
    assert variables["ps_shards"] == 2
    assert "deep/embedding/workclass" in variables["partitioned_variables"]


def test_census_2w2ps_reaches_auc(census_export_2w2ps):
    from pyscoring.export import score_with_python_tf

    data = census.load(census_export_2w2ps.test_path)
    scores = score_with_python_tf(census_export_2w2ps.version_dir, data.features)
    auc = evaluation.roc_auc(data.labels, scores["probability"])

    assert auc >= MIN_AUC
    assert census_export_2w2ps.manifest["training"]["metrics"]["auc"] == pytest.approx(
        auc, abs=1e-6)


def test_census_2w2ps_embeddings_split_over_ps(census_export_2w2ps):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(census_export_2w2ps.checkpoint_dir))
    shards = sorted(glob.glob(prefix + ".data-*"))
    assert [Path(path).name[-19:] for path in shards] == [
        "data-00000-of-00002", "data-00001-of-00002"]

    reader = tf.train.load_checkpoint(prefix)
    contents = [Path(path).read_bytes() for path in shards]
    for column in ("workclass", "occupation", "native_country"):
        table = reader.get_tensor(f"deep/embedding/{column}")
        half = table.shape[0] // 2
        first, second = table[:half].tobytes(), table[half:].tobytes()
        # fixed_size_partitioner(2) gives each slice half of the rows, and the
        # sharded saver writes each parameter server's slices to its own file.
        assert first in contents[0], f"{column} slice 0 is not on ps 0"
        assert second in contents[1], f"{column} slice 1 is not on ps 1"
        assert first not in contents[1]
        assert second not in contents[0]


def test_census_2w2ps_cluster_ran_once(census_export_2w2ps):
    run_dir = census_export_2w2ps.run_dir
    registered = {event["node"] for event in read_events(run_dir)
                  if event["event"] == "register"}

    assert registered == {"worker:0", "worker:1", "ps:0", "ps:1"}
    assert transitions(run_dir, "failing over") == []
    assert len(transitions(run_dir, "finished")) == 1
    assert final_result(run_dir)["version"] == 0


# Failover.

def test_worker_sigkill_restarts_from_checkpoint(tmp_path):
    config = {"train.workers": 2, "train.ps": 2, "train.epochs": 4,
              "train.checkpoint-every-steps": 50}
    process, arguments = start_job(_BOUNDED_SCRIPT, tmp_path, config)
    run_dir = tmp_path / "checkpoints" / "cluster"
    checkpoints = tmp_path / "checkpoints"
    try:
        wait_for(lambda: latest_checkpoint_step(checkpoints) >= 50, 400,
                 "a checkpoint at step 50 or later")
        status = read_status(run_dir)
        killed_at_step = latest_checkpoint_step(checkpoints)
        os.kill(node_pid(run_dir, "worker:1", 0), signal.SIGKILL)
        output = finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    failovers = transitions(run_dir, "failing over")
    assert len(failovers) == 1, failovers
    assert failovers[0]["node"] == "worker:1"
    assert "exit code -9" in failovers[0]["reason"]
    assert "out-of-memory" in failovers[0]["reason"]
    assert status.get("global_step", 0) < 4 * 128, "training ended before the kill"

    result = final_result(run_dir)
    assert result["version"] == 1
    assert result["result"]["start_step"] >= killed_at_step > 0
    assert result["result"]["global_step"] > result["result"]["start_step"]

    exported = json.loads(output.rsplit("EXPORTED ", 1)[1].splitlines()[0])
    metrics = manifest.read_manifest(exported["path"])["training"]["metrics"]
    assert metrics["auc"] >= MIN_AUC


# Streaming input.

def test_stream_exports_several_versions(tmp_path):
    config = {"train.workers": 1, "train.ps": 1, "train.batch-size": 128,
              "train.max-steps": 90, "train.export-every-steps": 30}
    test_path = write_head(DATA_DIR / "adult.test", tmp_path / "adult.test", 2000)
    process, arguments = start_job(_STREAM_SCRIPT, tmp_path, config, test_path=test_path,
                                   rows_per_second=2000)
    try:
        finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    versions = manifest.list_versions(tmp_path / "exports")
    assert len(versions) >= 2
    steps = [manifest.read_manifest(manifest.version_path(tmp_path / "exports", version))
             ["training"]["global_step"] for version in versions]
    assert steps == sorted(steps)
    assert steps[-1] >= 90
    assert node_processes(str(tmp_path)) == []


def test_stream_exports_every_seconds(tmp_path):
    max_steps = 120
    config = {"train.workers": 1, "train.ps": 1, "train.batch-size": 128,
              "train.max-steps": max_steps, "train.export-every-seconds": 2}
    test_path = write_head(DATA_DIR / "adult.test", tmp_path / "adult.test", 2000)
    # 800 rows/s are about 6 steps/s, so training lasts about 20 s.
    process, _ = start_job(_STREAM_SCRIPT, tmp_path, config, test_path=test_path,
                           rows_per_second=800)
    try:
        finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    exports = tmp_path / "exports"
    trainings = [manifest.read_manifest(manifest.version_path(exports, version))["training"]
                 for version in manifest.list_versions(exports)]
    steps = [training["global_step"] for training in trainings]
    # Only the seconds trigger writes versions before max-steps; the last
    # version is the export at the end of training.
    periodic = [step for step in steps if step < max_steps]
    assert len(periodic) >= 2, steps
    assert steps == sorted(steps)
    assert steps[-1] >= max_steps
    assert node_processes(str(tmp_path)) == []


# Chief and evaluator nodes.

def test_chief_and_evaluator_nodes(tmp_path):
    config = {"train.workers": 1, "train.ps": 1, "train.chief": True, "train.evaluator": True,
              "train.epochs": 2, "train.checkpoint-every-steps": 100}
    process, _ = start_job(_BOUNDED_SCRIPT, tmp_path, config)
    try:
        output = finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    run_dir = tmp_path / "checkpoints" / "cluster"
    registered = {event["node"] for event in read_events(run_dir)
                  if event["event"] == "register"}
    assert registered == {"worker:0", "ps:0", "chief:0", "evaluator:0"}
    assert transitions(run_dir, "failing over") == []
    assert len(transitions(run_dir, "finished")) == 1

    logs = run_dir / "logs" / "v0"
    assert "Exported version 1 " in (logs / "chief-0.log").read_text()
    assert "Exported version" not in (logs / "worker-0.log").read_text()
    result = final_result(run_dir)["result"]
    assert result["examples"] == 0, "the chief node trained on records"
    assert result["workers"]["worker:0"]["examples"] > 0

    exported = json.loads(output.rsplit("EXPORTED ", 1)[1].splitlines()[0])
    training = manifest.read_manifest(exported["path"])["training"]
    assert training["workers"] == 1
    assert training["ps"] == 1
    assert training["metrics"]["auc"] >= 0.85

    evaluations = [json.loads(line) for line in
                   (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert len(evaluations) >= 1
    assert result["evaluator"]["evaluations"] == len(evaluations)
    assert {"auc", "accuracy", "loss", "global_step"} <= set(evaluations[-1])
    assert evaluations[-1]["global_step"] == training["global_step"]
    assert evaluations[-1]["auc"] == pytest.approx(training["metrics"]["auc"], abs=1e-6)
    assert "Evaluated model.ckpt-" in (logs / "evaluator-0.log").read_text()
    assert node_processes(str(tmp_path)) == []


# Bounded input from a Flink table.

def test_table_input_trains_hash_shares(tmp_path):
    config = {"train.workers": 2, "train.ps": 1, "train.epochs": 2, "train.batch-size": 256}
    process, arguments = start_job(_TABLE_SCRIPT, tmp_path, config)
    try:
        output = finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    counted = re.search(r"Counted (\d+) rows of the training table .* shares per worker: "
                        r"\[(\d+), (\d+)\]", output)
    assert counted, output[-3000:]
    rows, shares = int(counted[1]), [int(counted[2]), int(counted[3])]
    assert rows == census.load(arguments["train_path"]).num_rows
    assert sum(shares) == rows
    assert min(shares) > rows // 4, f"the hash split {rows} rows unevenly: {shares}"

    run_dir = tmp_path / "checkpoints" / "cluster"
    last_step = 2 * sum(math.ceil(share / 256) for share in shares)
    result = final_result(run_dir)
    assert result["version"] == 0
    assert result["result"]["global_step"] >= last_step

    exported = json.loads(output.rsplit("EXPORTED ", 1)[1].splitlines()[0])
    training = manifest.read_manifest(exported["path"])["training"]
    assert training["workers"] == 2
    assert training["ps"] == 1
    assert training["metrics"]["auc"] >= 0.85


# Slow tests: 1 worker and 1 parameter server on the first 3000 rows.

SMALL_CONFIG = {"train.workers": 1, "train.ps": 1, "train.epochs": 10,
                "train.batch-size": 64, "train.checkpoint-every-steps": 20}
SMALL_LAST_STEP = 10 * 47  # ceil(3000 / 64) = 47 steps per epoch


@pytest.fixture
def small_files(tmp_path):
    return (write_head(DATA_DIR / "adult.data", tmp_path / "adult.data", 3000),
            write_head(DATA_DIR / "adult.test", tmp_path / "adult.test", 1000))


def kill_mid_training_and_finish(tmp_path, small_files, kill):
    """Start a small job, call `kill(run_dir)` after the checkpoint at step 20, finish it."""
    train_path, test_path = small_files
    process, _ = start_job(_BOUNDED_SCRIPT, tmp_path, SMALL_CONFIG, train_path, test_path)
    run_dir = tmp_path / "checkpoints" / "cluster"
    try:
        wait_for(lambda: latest_checkpoint_step(tmp_path / "checkpoints") >= 20, 400,
                 "a checkpoint at step 20 or later")
        checkpoint_step = latest_checkpoint_step(tmp_path / "checkpoints")
        kill(run_dir)
        finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return run_dir, checkpoint_step


@pytest.mark.slow
def test_two_jobs_on_one_host_finish(tmp_path, small_files):
    train_path, test_path = small_files
    jobs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        config = dict(SMALL_CONFIG, **{"train.epochs": 2})
        jobs.append((folder, *start_job(_BOUNDED_SCRIPT, folder, config, train_path,
                                        test_path)))
    for folder, process, _ in jobs:
        finish_job(process, folder)

    ports = []
    for folder, _, _ in jobs:
        run_dir = folder / "checkpoints" / "cluster"
        assert final_result(run_dir)["version"] == 0
        assert manifest.list_versions(folder / "exports") == [1]
        ports += [event["reason"].split(" ")[0] for event in read_events(run_dir)
                  if event["event"] == "register"]
    assert len(set(ports)) == len(ports) == 4


@pytest.mark.slow
def test_cancel_leaves_no_node_process(tmp_path, small_files):
    train_path, test_path = small_files
    checkpoints = tmp_path / "checkpoints"
    log = open(tmp_path / "cli.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pyscoring.cli", "train", "--workers", "1", "--ps", "1",
         "--epochs", "200", "--data", str(train_path), "--test-data", str(test_path),
         "--export-dir", str(tmp_path / "exports"), "--checkpoint-dir", str(checkpoints)],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: read_status(checkpoints / "cluster").get("global_step", 0) > 0, 400,
                 "the first training step")
        assert len(node_processes(str(checkpoints))) == 2
        process.send_signal(signal.SIGTERM)
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 130
    wait_for(lambda: node_processes(str(checkpoints)) == [], 30, "the node processes to exit")
    assert manifest.list_versions(tmp_path / "exports") == []


@pytest.mark.slow
def test_ps_sigkill_restarts_from_checkpoint(tmp_path, small_files):
    run_dir, checkpoint_step = kill_mid_training_and_finish(
        tmp_path, small_files,
        lambda run_dir: os.kill(node_pid(run_dir, "ps:0", 0), signal.SIGKILL))

    failovers = transitions(run_dir, "failing over")
    assert len(failovers) == 1
    assert failovers[0]["node"] == "ps:0"
    result = final_result(run_dir)
    assert result["version"] == 1
    assert result["result"]["start_step"] >= checkpoint_step > 0
    assert result["result"]["global_step"] >= SMALL_LAST_STEP


@pytest.mark.slow
def test_am_task_failure_restarts_from_checkpoint(tmp_path, small_files):
    run_dir, checkpoint_step = kill_mid_training_and_finish(
        tmp_path, small_files, lambda run_dir: (run_dir / "fail-am").touch())

    failovers = transitions(run_dir, "failing over")
    assert len(failovers) == 1
    assert "failover drill" in failovers[0]["reason"]
    result = final_result(run_dir)
    assert result["version"] == 1
    assert result["result"]["start_step"] >= checkpoint_step > 0
    assert result["result"]["global_step"] >= SMALL_LAST_STEP


@pytest.mark.slow
def test_node_entry_example_exports(tmp_path, small_files):
    train_path, test_path = small_files
    config = {"train.workers": 2, "train.ps": 1, "train.epochs": 2,
              "train.node-entry": "models.census_entry:main"}
    process, _ = start_job(_BOUNDED_SCRIPT, tmp_path, config, train_path, test_path)
    try:
        finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    version_dir = manifest.version_path(tmp_path / "exports", 1)
    training = manifest.read_manifest(version_dir)["training"]
    assert training["workers"] == 2
    assert training["ps"] == 1
    assert training["global_step"] >= 24  # 2 epochs of 2 shares of 6 batches
    assert training["metrics"]["auc"] > 0.8


@pytest.mark.slow
def test_exhausted_restarts_fail_with_reason(tmp_path, small_files):
    train_path, test_path = small_files
    config = dict(SMALL_CONFIG, **{"train.restart-attempts": 0})
    process, _ = start_job(_BOUNDED_SCRIPT, tmp_path, config, train_path, test_path)
    run_dir = tmp_path / "checkpoints" / "cluster"
    try:
        wait_for(lambda: read_status(run_dir).get("global_step", 0) > 0, 400,
                 "the first training step")
        os.kill(node_pid(run_dir, "worker:0", 0), signal.SIGKILL)
        code = process.wait(JOB_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    output = (tmp_path / "driver.log").read_text(errors="replace")
    assert code != 0
    assert "ClusterTrainingError" in output
    assert "worker:0" in output
    assert "exit code -9" in output
    wait_for(lambda: node_processes(str(tmp_path)) == [], 30, "the node processes to exit")


@pytest.mark.slow
def test_chief_node_sigkill_restarts_from_checkpoint(tmp_path, small_files):
    train_path, test_path = small_files
    config = dict(SMALL_CONFIG, **{"train.chief": True, "train.evaluator": True})
    process, _ = start_job(_BOUNDED_SCRIPT, tmp_path, config, train_path, test_path)
    run_dir = tmp_path / "checkpoints" / "cluster"
    try:
        wait_for(lambda: latest_checkpoint_step(tmp_path / "checkpoints") >= 20, 400,
                 "a checkpoint at step 20 or later")
        checkpoint_step = latest_checkpoint_step(tmp_path / "checkpoints")
        os.kill(node_pid(run_dir, "chief:0", 0), signal.SIGKILL)
        finish_job(process, tmp_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    failovers = transitions(run_dir, "failing over")
    assert len(failovers) == 1
    assert failovers[0]["node"] == "chief:0"
    result = final_result(run_dir)
    assert result["version"] == 1
    assert result["result"]["start_step"] >= checkpoint_step > 0
    assert result["result"]["global_step"] >= SMALL_LAST_STEP
    assert "Exported version 1 " in (run_dir / "logs" / "v1" / "chief-0.log").read_text()
