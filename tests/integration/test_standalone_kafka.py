"""Scoring from Kafka to Kafka on a standalone cluster of one job manager and two task managers.

The model is trained with 2 workers and 2 parameter servers on the Flink ML
cluster, which `pyscoring train --workers 2 --ps 2 --jobmanager` submits to
the standalone cluster. `pyscoring deploy --jobmanager` then submits the
scorer to the same cluster: census rows come from a Kafka topic and
scores go to another through Flink's Kafka SQL connector in exactly-once
mode, read back with isolation.level=read_committed. Every process (Flink,
Kafka, the deploy client) runs on 127.0.0.1 and is stopped by the fixtures.

The module took 6 min 16 s on a 2-core machine that was running other work.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pyscoring import census, deploy, manifest, standalone
from pyscoring.metrics import (
    SOURCE_PENDING_RECORDS_METRIC,
    SOURCE_RECORDS_LAG_MAX_METRIC,
    counter_total,
    scrape,
)
from tests.integration.conftest import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = REPO_ROOT / "data" / "adult" / "adult.test"
TRAIN_TIMEOUT_S = 1200
CLUSTER_TIMEOUT_S = 240
DELIVERY_TIMEOUT_S = 600
# After the last expected key arrived, the consumer reads this long more, so
# a duplicate written late is still seen.
QUIET_S = 10.0
PARTITIONS = 2
# Ports the task managers' scorers pick from; each takes the first free one.
METRICS_PORT_RANGE = "19250-19299"
# The census columns deploy reads from the JSON records, after the row key.
FEATURE_COLUMNS = [(name, sql_type) for name, sql_type in deploy.CENSUS_FORMAT.columns
                   if name != census.LABEL_COLUMN]
COLUMNS_SPEC = "key STRING, " + ", ".join(f"{name} {sql_type}" for name, sql_type in FEATURE_COLUMNS)


def _census_records() -> list[tuple[str, str]]:
    """Return (key, JSON value) of every row of adult.test, keyed as the line source keys them."""
    records = []
    with open(TEST_DATA, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            row = census.parse_line(line)
            if row is None:
                continue
            key = census.row_key(TEST_DATA, line_number)
            value = {"key": key, **{name: row[name] for name, _ in FEATURE_COLUMNS}}
            records.append((key, json.dumps(value)))
    return records


@dataclasses.dataclass
class ClusterTraining:
    export_dir: Path
    # Output of the train command, stdout then stderr.
    output: str


@pytest.fixture(scope="module")
def cluster_training(flink_cluster, tmp_path_factory) -> ClusterTraining:
    """Train the census model with 2 workers and 2 PS as a job of the standalone cluster."""
    folder = tmp_path_factory.mktemp("ml-cluster-training")
    completed = subprocess.run(
        [sys.executable, "-m", "pyscoring.cli", "train", "--workers", "2", "--ps", "2",
         "--jobmanager", flink_cluster.rest_address, "--export-dir", str(folder / "exports")],
        capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, cwd=REPO_ROOT,
    )
    output = completed.stdout + completed.stderr
    (folder / "train.log").write_text(output)
    assert completed.returncode == 0, output[-4000:]
    version = manifest.latest_version(folder / "exports")
    assert version is not None, completed.stdout
    model = manifest.read_manifest(manifest.version_path(folder / "exports", version))
    assert model["training"]["workers"] == 2
    assert model["training"]["ps"] == 2
    return ClusterTraining(folder / "exports", output)


@pytest.fixture(scope="module")
def cluster_trained_export(cluster_training) -> Path:
    """Return the export directory of a census model trained with 2 workers and 2 PS."""
    return cluster_training.export_dir


def test_training_runs_on_standalone_cluster(cluster_training, flink_cluster):
    lines = [line for line in cluster_training.output.splitlines()
             if "runs on the Flink cluster at " + flink_cluster.rest_address in line]
    assert lines, "train printed no job id and web UI address of the cluster"
    job_id = lines[0].split("Training job ", 1)[1].split()[0]
    assert f"http://{flink_cluster.rest_address}/#/job/running/{job_id}/overview" in lines[0]
    job = _job(flink_cluster, job_id)
    assert job["state"] == "FINISHED"
    assert job["name"].startswith("pyscoring-train 2w+2ps")


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory):
    """One job manager and two task managers of one slot each, on free loopback ports."""
    settings = standalone.ClusterSettings(
        taskmanagers=2,
        slots_per_taskmanager=1,
        rest_port=free_port(),
        jobmanager_rpc_port=free_port(),
        metrics_port_range=METRICS_PORT_RANGE,
    )
    cluster = standalone.start(tmp_path_factory.mktemp("flink-cluster"), settings,
                               timeout_s=CLUSTER_TIMEOUT_S)
    try:
        yield cluster
    finally:
        cluster.stop()


def _create_topics(broker, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names],
                                  operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)


def _produce(broker, topic: str, records: list[tuple[str, str]]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap_servers,
                                         "linger.ms": 20})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value.encode())
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records to {topic} were not acknowledged"


class CommittedKeys:
    """Reads a topic with isolation.level=read_committed and counts the `key` of every record."""

    def __init__(self, broker, topic: str):
        self.topic = topic
        self.counts: collections.Counter[str] = collections.Counter()
        self.rows: dict[str, dict] = {}
        self._consumer = confluent_kafka.Consumer({
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"check-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        })
        self._consumer.subscribe([topic])

    def poll_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.5)
            if message is None or message.error():
                continue
            row = json.loads(message.value())
            self.counts[row["key"]] += 1
            self.rows[row["key"]] = row

    def wait_for(self, expected: set[str], timeout_s: float, process=None,
                 on_poll=None) -> None:
        """Read until every expected key arrived, then QUIET_S more; fail on timeout.

        `on_poll` is called after every second of reading until the keys arrived.
        """
        deadline = time.monotonic() + timeout_s
        while not expected <= self.counts.keys():
            if process is not None and process.poll() is not None:
                pytest.fail(f"the deploy command ended with {process.returncode} after "
                            f"{len(self.counts)} of {len(expected)} keys arrived in {self.topic}")
            if time.monotonic() >= deadline:
                missing = len(expected - self.counts.keys())
                pytest.fail(f"{missing} of {len(expected)} keys did not arrive in {self.topic} "
                            f"within {timeout_s:.0f} s")
            self.poll_for(1.0)
            if on_poll is not None:
                on_poll()
        self.poll_for(QUIET_S)

    def close(self) -> None:
        self._consumer.close()


@dataclasses.dataclass
class DeployProcess:
    process: subprocess.Popen
    job_id: str
    output_dir: Path
    log_file: Path


def _start_deploy(cluster, broker, export_dir: Path, source_topic: str, sink_topic: str,
                  output_dir: Path, *settings: str) -> DeployProcess:
    """Run `pyscoring deploy --jobmanager` against the cluster; return once it printed the job id."""
    bootstrap = broker.bootstrap_servers
    source = {
        "connector": "kafka", "topic": source_topic, "format": "json",
        "properties.bootstrap.servers": bootstrap,
        "properties.group.id": f"pyscoring-{source_topic}",
        "scan.startup.mode": "earliest-offset",
    }
    sink = {
        "connector": "kafka", "topic": sink_topic, "format": "json",
        "properties.bootstrap.servers": bootstrap,
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": f"pyscoring-test-{uuid.uuid4().hex[:12]}",
    }
    command = [
        sys.executable, "-m", "pyscoring.cli", "deploy", "--jobmanager", cluster.rest_address,
        "--model", str(export_dir), "--output", str(output_dir), "--columns", COLUMNS_SPEC,
        "--parallelism", "2", "--set", "deploy.checkpoint-interval-ms=1000",
    ]
    for option in settings:
        command += ["--set", option]
    for key, value in source.items():
        command += ["--source-option", f"{key}={value}"]
    for key, value in sink.items():
        command += ["--sink-option", f"{key}={value}"]
    output_dir.mkdir(parents=True, exist_ok=True)
    log_file = output_dir / "deploy.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for line in log_file.read_text().splitlines():
            if line.startswith("job ") and " scores model " in line:
                return DeployProcess(process, line.split()[1], output_dir, log_file)
        if process.poll() is not None:
            break
        time.sleep(0.5)
    _stop_deploy(DeployProcess(process, "", output_dir, log_file))
    pytest.fail(f"deploy printed no job id; its output ends with:\n{log_file.read_text()[-4000:]}")


def _stop_deploy(run: DeployProcess) -> None:
    """SIGTERM the deploy command, which cancels its job, and wait for it to end."""
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(60)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait(10)


def _job(cluster, job_id: str) -> dict:
    return standalone.rest_get(cluster.rest_address, f"/jobs/{job_id}")


def _assert_exactly_once(counts: collections.Counter, expected: set[str]) -> None:
    duplicates = {key: count for key, count in counts.items() if count > 1}
    unexpected = counts.keys() - expected
    missing = expected - counts.keys()
    assert not missing, f"{len(missing)} keys missing, for example {sorted(missing)[:5]}"
    assert not duplicates, f"{len(duplicates)} keys arrived more than once: {list(duplicates.items())[:5]}"
    assert not unexpected, f"unexpected keys: {sorted(unexpected)[:5]}"


@dataclasses.dataclass
class KafkaRun:
    expected: set[str]
    counts: collections.Counter
    rows: dict[str, dict]
    dead_letters: collections.Counter
    model_version: int
    job_state: str
    # Task-manager process id to the pyscoring_predictions_total its endpoint served.
    predictions_by_pid: dict[int, float]
    taskmanager_pids: set[int]
    # Backlog gauges of the Kafka source by metric name: (operator, subtask) to
    # the value in each scrape, in order. Scraped while the scores arrived.
    backlog: dict[str, dict[tuple[str, str], list[float]]]


@pytest.fixture(scope="module")
def kafka_run(flink_cluster, kafka_broker, cluster_trained_export, tmp_path_factory) -> KafkaRun:
    records = _census_records()
    _create_topics(kafka_broker, "census-rows", "census-scores", "census-scores-dead-letters")
    _produce(kafka_broker, "census-rows", records)
    expected = {key for key, _ in records}

    scores = CommittedKeys(kafka_broker, "census-scores")
    dead_letters = CommittedKeys(kafka_broker, "census-scores-dead-letters")
    run = _start_deploy(flink_cluster, kafka_broker, cluster_trained_export, "census-rows",
                        "census-scores", tmp_path_factory.mktemp("kafka-deploy"))
    backlog: dict[str, dict[tuple[str, str], list[float]]] = {
        SOURCE_PENDING_RECORDS_METRIC: collections.defaultdict(list),
        SOURCE_RECORDS_LAG_MAX_METRIC: collections.defaultdict(list),
    }
    endpoints_dir = Path(f"{run.output_dir / 'prometheus-targets.json'}.d")

    def scrape_backlog() -> None:
        for path in endpoints_dir.glob("jvm-*.json"):
            try:
                families = scrape(json.loads(path.read_text())["target"])
            except (OSError, ValueError):
                continue
            for name, series in backlog.items():
                family = families.get(name)
                for sample in family.samples if family else []:
                    key = (sample.labels["operator_name"], sample.labels["subtask_index"])
                    series[key].append(sample.value)

    try:
        scores.wait_for(expected, DELIVERY_TIMEOUT_S, run.process, on_poll=scrape_backlog)
        scrape_backlog()
        dead_letters.poll_for(2.0)
        job_state = _job(flink_cluster, run.job_id)["state"]

        # Each task manager's scorer records its endpoint in the targets
        # folder as jvm-<pid>.json, so endpoints map to processes.
        predictions_by_pid = {}
        for path in endpoints_dir.glob("jvm-*.json"):
            endpoint = json.loads(path.read_text())
            family = scrape(endpoint["target"]).get("pyscoring_predictions")
            predictions_by_pid[endpoint["pid"]] = counter_total(family) if family else 0.0
    finally:
        _stop_deploy(run)
        scores.close()
        dead_letters.close()
    version = manifest.latest_version(cluster_trained_export)
    return KafkaRun(
        expected=expected,
        counts=scores.counts,
        rows=scores.rows,
        dead_letters=dead_letters.counts,
        model_version=version,
        job_state=job_state,
        predictions_by_pid=predictions_by_pid,
        taskmanager_pids={process.pid for process in flink_cluster.taskmanagers},
        backlog={name: dict(series) for name, series in backlog.items()},
    )


def test_kafka_scores_arrive_exactly_once(kafka_run):
    assert kafka_run.job_state == "RUNNING"
    assert len(kafka_run.expected) == 16281
    _assert_exactly_once(kafka_run.counts, kafka_run.expected)
    assert not kafka_run.dead_letters


def test_kafka_scores_are_probabilities(kafka_run):
    for key, row in kafka_run.rows.items():
        assert 0.0 <= row["probability"] <= 1.0, row
        assert row["model_version"] == kafka_run.model_version, row


def test_both_taskmanagers_serve_scored_rows(kafka_run):
    assert set(kafka_run.predictions_by_pid) == kafka_run.taskmanager_pids
    for pid, predictions in kafka_run.predictions_by_pid.items():
        assert predictions > 0, f"task manager {pid} served no scored rows"
    assert sum(kafka_run.predictions_by_pid.values()) >= len(kafka_run.expected)


def test_kafka_backlog_in_scrape(kafka_run):
    pending = kafka_run.backlog[SOURCE_PENDING_RECORDS_METRIC]
    lag_max = kafka_run.backlog[SOURCE_RECORDS_LAG_MAX_METRIC]
    # One series per source subtask; each reads one of the 2 partitions.
    assert {subtask for _, subtask in pending} == {"0", "1"}, pending.keys()
    assert set(lag_max) == set(pending)
    for key, values in pending.items():
        assert all(value >= 0 for value in values), (key, values)
        assert values[-1] == 0, f"{key} still had {values[-1]} pending records after the last score"


def test_taskmanager_kill_keeps_exactly_once(
    kafka_run, flink_cluster, kafka_broker, cluster_trained_export, tmp_path
):
    records = _census_records()
    half = len(records) // 2
    _create_topics(kafka_broker, "kill-rows", "kill-scores", "kill-scores-dead-letters")
    _produce(kafka_broker, "kill-rows", records[:half])
    expected = {key for key, _ in records}

    scores = CommittedKeys(kafka_broker, "kill-scores")
    # Until the replacement task manager registers, restarts can fail for
    # want of a slot. The default restart strategy on a cluster
    # (exponential-delay, about 13 minutes of restarts) outlasts the
    # replacement's start, up to a minute on a busy 2-core machine.
    run = _start_deploy(flink_cluster, kafka_broker, cluster_trained_export, "kill-rows",
                        "kill-scores", tmp_path / "deploy")
    try:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while sum(scores.counts.values()) < 1000:
            assert time.monotonic() < deadline, "no scores arrived before the kill"
            assert run.process.poll() is None, run.log_file.read_text()[-4000:]
            scores.poll_for(1.0)
        assert _job(flink_cluster, run.job_id)["state"] == "RUNNING"

        victim = next(process for process in flink_cluster.taskmanagers if process.is_alive())
        os.kill(victim.pid, signal.SIGKILL)
        replacement = flink_cluster.add_taskmanager()
        flink_cluster.wait_for_taskmanagers(2, CLUSTER_TIMEOUT_S)
        assert not victim.is_alive()
        assert replacement.is_alive()

        _produce(kafka_broker, "kill-rows", records[half:])
        scores.wait_for(expected, DELIVERY_TIMEOUT_S, run.process)

        job = _job(flink_cluster, run.job_id)
        exceptions = standalone.rest_get(flink_cluster.rest_address,
                                         f"/jobs/{run.job_id}/exceptions")
    finally:
        _stop_deploy(run)
        scores.close()

    assert job["state"] == "RUNNING"
    assert exceptions["exceptionHistory"]["entries"], "the job recorded no failure of the kill"
    _assert_exactly_once(scores.counts, expected)
