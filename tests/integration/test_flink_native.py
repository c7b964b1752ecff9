"""Flink-native use of the census export: CREATE MODEL with ML_PREDICT, a savepoint stop and a
resume at another parallelism, the operator uids of concurrent deploys, pass-through and
renamed columns, and the health metrics.

Every Flink job runs in a child process, `pyscoring` CLI commands or a script, because the
pytest process may import Python TensorFlow, which must not share a process with the
TensorFlow Java that Flink's JVM loads.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyscoring import census, deploy, jobs
from pyscoring.metrics import SOURCE_PENDING_BYTES_METRIC, scrape

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 240
LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

# One job with both scorers over the same parsed rows: ML_PREDICT through the
# 'pyscoring' model provider, and the pyscoring_predict table function.
_PARITY_SCRIPT = """
import sys
from pathlib import Path
from pyscoring import cli, deploy, manifest

export_dir, test_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
version_dir = deploy.resolve_version_dir(export_dir)
inputs = [t["name"] for t in manifest.read_manifest(version_dir)["signature"]["inputs"]]
environment = deploy.create_table_environment({
    "parallelism.default": "1",
    "table.exec.async-table.max-concurrent-operations": "128",
    "table.exec.async-ml-predict.max-concurrent-operations": "128",
})
fmt = deploy.CENSUS_FORMAT
environment.execute_sql(
    "CREATE TEMPORARY TABLE lines (source STRING, line_number BIGINT, `key` STRING, line STRING) "
    f"WITH ('connector' = 'pyscoring-lines', 'path' = '{test_path}')")
environment.execute_sql(
    "CREATE TEMPORARY VIEW census_rows AS SELECT s.`key`, "
    + ", ".join(f"p.`{name}`" for name in fmt.names)
    + f" FROM lines AS s, LATERAL TABLE(pyscoring_parse(s.line, '{fmt.schema_literal()}', "
    f"'{fmt.delimiter}')) AS p({', '.join(f'`{name}`' for name in fmt.names)}, error_code, error) "
    f"WHERE p.error_code IS NULL AND s.line NOT LIKE '{fmt.comment_prefix}%'")
environment.execute_sql(cli.model_ddl(export_dir, "census", temporary=True).rstrip(";"))
for name in ("ml_predict", "java_udf"):
    environment.execute_sql(
        f"CREATE TEMPORARY TABLE {name} (`key` STRING, probability FLOAT, logit FLOAT, "
        f"error_code STRING) WITH ('connector' = 'filesystem', 'path' = '{out / name}', "
        "'format' = 'json')")
statements = environment.create_statement_set()
statements.add_insert_sql(
    "INSERT INTO ml_predict SELECT `key`, probability, logit, error_code FROM ML_PREDICT("
    f"TABLE census_rows, MODEL census, DESCRIPTOR({', '.join(f'`{n}`' for n in inputs)}))")
statements.add_insert_sql(
    "INSERT INTO java_udf SELECT v.`key`, r.probability, r.logit, r.error_code "
    f"FROM census_rows AS v, LATERAL TABLE(pyscoring_predict('{version_dir}', "
    f"{', '.join(f'v.`{n}`' for n in inputs)})) AS r(probability, logit, model_version, "
    "error_code, error)")
statements.execute().wait()
"""


def _run(arguments: list[str], timeout_s: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [sys.executable, *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout_s,
    )
    assert completed.returncode == 0, (
        f"{' '.join(arguments[:4])} exited with {completed.returncode}:\n"
        f"{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    )
    return completed


def _start_deploy(arguments: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "w", encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "pyscoring.cli", "deploy", *arguments],
        cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process: subprocess.Popen, log: Path, timeout_s: float = JOB_TIMEOUT_S) -> str:
    try:
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(encoding="utf-8")
    assert process.returncode == 0, f"deploy exited with {process.returncode}:\n{output[-5000:]}"
    return output


def _wait_for_record(output_dir: Path, process: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        record = jobs.read_job_record(output_dir)
        if record is not None:
            return record
        assert process.poll() is None, f"deploy ended early:\n{log.read_text()[-5000:]}"
        time.sleep(0.5)
    raise AssertionError(f"deploy wrote no job record into {output_dir}")


def _lines_written(folder: Path) -> int:
    """Count rows in a file sink's folder, in-progress files included."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            total += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)
    return total


def _expected_keys(census_export) -> set[str]:
    data = census.load(census_export.test_path)
    return set(census.row_keys(census_export.test_path, data.line_numbers))


def test_ml_predict_matches_java_scorer(census_export, tmp_path):
    _run(["-c", _PARITY_SCRIPT, str(census_export.export_dir), str(census_export.test_path),
          str(tmp_path)])
    ml_predict = {row["key"]: row for row in deploy.read_json_lines(tmp_path / "ml_predict")}
    java_udf = {row["key"]: row for row in deploy.read_json_lines(tmp_path / "java_udf")}

    assert len(ml_predict) == 16281
    assert set(ml_predict) == set(java_udf)
    assert all(row["error_code"] is None for row in ml_predict.values())
    for output in ("probability", "logit"):
        difference = max(abs(ml_predict[key][output] - java_udf[key][output]) for key in ml_predict)
        assert difference <= 1e-5, output


def test_savepoint_resume_at_parallelism_2(census_export, tmp_path):
    output_dir = tmp_path / "out"
    savepoints = tmp_path / "savepoints"
    common = ["--model", str(census_export.export_dir), "--input", str(census_export.test_path),
              "--output", str(output_dir), "--set", "deploy.checkpoint-interval-ms=1000"]

    # 300 rows per second keeps the 16281 rows streaming for about a minute.
    first_log = tmp_path / "first.log"
    first = _start_deploy([*common, "--rows-per-second", "300"], first_log)
    record = _wait_for_record(output_dir, first, first_log)
    client = jobs.RestClient(record["rest_address"])
    jobs.wait_for_state(client, record["job_id"], {"RUNNING"})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while _lines_written(output_dir / "scores") < 1000:
        assert time.monotonic() < deadline, "the first job wrote no 1000 rows"
        time.sleep(0.5)
    stopped = _run(["-m", "pyscoring.cli", "jobs", "stop", record["job_id"],
                    "--jobmanager", record["rest_address"], "--savepoint", str(savepoints)])
    _finish(first, first_log)
    rows_before_stop = _lines_written(output_dir / "scores")
    assert 1000 <= rows_before_stop < 16281, "the stop did not land in the middle of the stream"
    assert "--from-savepoint" in stopped.stdout

    second_log = tmp_path / "second.log"
    (output_dir / jobs.JOB_RECORD_FILE).unlink()
    second = _start_deploy(
        [*common, "--parallelism", "2", "--from-savepoint", str(savepoints)], second_log
    )
    resumed = _wait_for_record(output_dir, second, second_log)
    parallelism = 0
    resumed_client = jobs.RestClient(resumed["rest_address"])
    while second.poll() is None and parallelism == 0:
        try:
            parallelism = resumed_client.job_parallelism(resumed["job_id"])
        except jobs.JobsError:
            pass
        time.sleep(0.2)
    output = _finish(second, second_log)

    assert parallelism == 2
    assert resumed["restored_from"].startswith(str(savepoints))
    assert "starting over" not in output
    written = deploy.read_json_lines(output_dir / "scores") + deploy.read_json_lines(
        output_dir / "dead-letters"
    )
    counts = collections.Counter(row["key"] for row in written)
    assert [key for key, count in counts.items() if count > 1] == [], "rows written twice"
    assert set(counts) == _expected_keys(census_export)


# Deploys twice in one process: a job stopped with a savepoint, then a job
# restored from it. Prints the job vertex ids of both jobs as JSON; a job
# vertex id is the hash of its first operator's uid.
_SAME_PROCESS_SCRIPT = """
import json, sys, time
from pathlib import Path
from pyscoring import deploy, jobs, standalone
from pyscoring.config import Config

export_dir, input_path, output_dir, savepoints = (Path(arg) for arg in sys.argv[1:5])
config = Config({"deploy.checkpoint-interval-ms": 500, "source.rows-per-second": 150})
request = deploy.DeployRequest(model_dir=export_dir, output_dir=output_dir,
                               input_path=input_path, config=config)

def vertex_ids(job):
    jobs.wait_for_state(jobs.RestClient(job.rest_address), job.job_id, {"RUNNING"})
    plan = standalone.rest_get(job.rest_address, f"/jobs/{job.job_id}/plan")["plan"]
    return sorted(node["id"] for node in plan["nodes"])

def rows_written(folder):
    return sum(len(path.read_text().splitlines()) for path in folder.rglob("*") if path.is_file())

first = deploy.deploy(request)
first_ids = vertex_ids(first)
deadline = time.monotonic() + 180
while rows_written(output_dir / "scores") < 300:
    assert time.monotonic() < deadline, "the first job wrote no 300 rows"
    time.sleep(0.2)
savepoint = jobs.RestClient(first.rest_address).stop_with_savepoint(first.job_id, savepoints)
first.wait(180)
first.targets_writer.clear()

request.restore_path = savepoint
second = deploy.deploy(request)
second_ids = vertex_ids(second)
second.wait(180)
second.targets_writer.clear()
print(json.dumps({"first": first_ids, "second": second_ids, "savepoint": str(savepoint)}))
"""


def test_savepoint_resumes_in_same_process(census_export, tmp_path):
    input_path = tmp_path / "rows.txt"
    lines = census_export.test_path.read_text(encoding="utf-8").splitlines(keepends=True)
    input_path.write_text("".join(lines[:1200]), encoding="utf-8")
    output_dir = tmp_path / "out"

    completed = _run(["-c", _SAME_PROCESS_SCRIPT, str(census_export.export_dir), str(input_path),
                      str(output_dir), str(tmp_path / "savepoints")])
    printed = json.loads(completed.stdout.strip().splitlines()[-1])

    assert printed["first"], "the first job's plan lists no vertices"
    assert printed["second"] == printed["first"], "the restored job has other operator uids"
    assert Path(printed["savepoint"]).is_dir()
    written = deploy.read_json_lines(output_dir / "scores") + deploy.read_json_lines(
        output_dir / "dead-letters"
    )
    counts = collections.Counter(row["key"] for row in written)
    assert [key for key, count in counts.items() if count > 1] == [], "rows written twice"
    data = census.load(input_path)
    assert set(counts) == set(census.row_keys(input_path, data.line_numbers))


# Deploys once alone, then twice at the same moment from two threads of one
# process. Prints each job's planner node labels ("Calc[12]") as JSON: the
# number is the node id in the job's operator uids.
_CONCURRENT_SCRIPT = """
import json, re, sys, threading
from pathlib import Path
from pyscoring import deploy

export_dir, input_path, output_root = (Path(arg) for arg in sys.argv[1:4])

def plan_nodes(name, plans):
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=export_dir, output_dir=output_root / name, input_path=input_path))
    plans[name] = sorted(re.findall(r'"type" : "([^"]*\\[\\d+\\][^"]*)"', job.execution_plan))
    job.wait(180)
    job.targets_writer.clear()

plans = {}
plan_nodes("alone", plans)
threads = [threading.Thread(target=plan_nodes, args=(name, plans)) for name in ("a", "b")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert set(plans) == {"alone", "a", "b"}, f"a deploy failed; planned only {sorted(plans)}"
print(json.dumps(plans))
"""


def test_concurrent_deploys_plan_same_uids(census_export, tmp_path):
    input_path = tmp_path / "rows.txt"
    lines = census_export.test_path.read_text(encoding="utf-8").splitlines(keepends=True)
    input_path.write_text("".join(lines[:40]), encoding="utf-8")

    completed = _run(["-c", _CONCURRENT_SCRIPT, str(census_export.export_dir), str(input_path),
                      str(tmp_path)])
    plans = json.loads(completed.stdout.strip().splitlines()[-1])

    assert plans["alone"], "the plan lists no planner nodes"
    assert plans["a"] == plans["alone"]
    assert plans["b"] == plans["alone"]


@dataclasses.dataclass
class ColumnsRun:
    scores: list[dict]
    scrape: dict
    # Values of pyscoring_source_pending_bytes by source operator, one per scrape, in order.
    # The job reads its input with two line-source operators, because the
    # dead-letter insert scans the parsed rows again beside the DataStream
    # round trip of the scored rows (deploy.register_scored_view).
    pending_bytes: dict[str, list[float]]
    started_at: float
    rows: int
    output_dir: Path
    input_path: Path
    model: dict


@pytest.fixture(scope="module")
def columns_run(census_export, tmp_path_factory) -> ColumnsRun:
    """Deploy 400 census rows with an event-time column, scraping metrics while the job runs."""
    folder = tmp_path_factory.mktemp("columns")
    lines = [
        line for line in census_export.test_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(census.COMMENT_PREFIX)
    ][:400]
    now_ms = int(time.time() * 1000)
    input_path = folder / "events.txt"
    input_path.write_text(
        "".join(f"{line.rstrip('.')}, {now_ms}\n" for line in lines), encoding="utf-8"
    )
    columns = ", ".join(
        f"{name} {sql_type}" for name, sql_type in deploy.CENSUS_FORMAT.columns
    ) + ", event_time BIGINT"

    output_dir = folder / "out"
    log = folder / "deploy.log"
    started_at = time.time()
    process = _start_deploy([
        "--model", str(census_export.export_dir), "--input", str(input_path),
        "--output", str(output_dir), "--columns", columns, "--delimiter", ",",
        "--pass-through", "age,workclass,hours_per_week", "--rename", "probability=score",
        "--event-time-column", "event_time", "--rows-per-second", "50",
    ], log)
    # The first scrape with an end-to-end latency sample is kept: rows still
    # stream then, while a later scrape may come after the job released its model.
    # The source's backlog is scraped until the job ends.
    families: dict = {}
    pending_bytes: dict[str, list[float]] = collections.defaultdict(list)
    targets_file = output_dir / "prometheus-targets.json"
    try:
        while process.poll() is None:
            targets = json.loads(targets_file.read_text()) if targets_file.is_file() else []
            if targets and targets[0]["targets"]:
                try:
                    scraped = scrape(targets[0]["targets"][0])
                except OSError:
                    scraped = {}
                backlog = scraped.get(SOURCE_PENDING_BYTES_METRIC)
                if backlog is not None:
                    for sample in backlog.samples:
                        pending_bytes[sample.labels["operator_name"]].append(sample.value)
                latency = scraped.get("pyscoring_end_to_end_latency_seconds")
                if not families and latency is not None and any(
                    sample.name.endswith("_count") and sample.value > 0 for sample in latency.samples
                ):
                    families = scraped
            time.sleep(0.2)
    finally:
        _finish(process, log)
    return ColumnsRun(
        scores=deploy.read_json_lines(output_dir / "scores"),
        scrape=families,
        pending_bytes=dict(pending_bytes),
        started_at=started_at,
        rows=len(lines),
        output_dir=output_dir,
        input_path=input_path,
        model=census_export.manifest,
    )


def test_pass_through_and_renamed_columns(columns_run):
    assert len(columns_run.scores) == columns_run.rows
    expected_types = {
        "key": str, "age": int, "workclass": str, "hours_per_week": int,
        "score": float, "logit": float, "model_version": int,
    }
    for row in columns_run.scores:
        assert set(row) == set(expected_types), row
        for name, python_type in expected_types.items():
            assert isinstance(row[name], python_type), (name, row)
        assert 0.0 <= row["score"] <= 1.0
    first = next(row for row in columns_run.scores if row["key"] == "events.txt:1")
    fields = [field.strip() for field in columns_run.input_path.read_text().splitlines()[0].split(",")]
    assert first["age"] == int(fields[0])
    assert first["workclass"] == fields[1]
    assert first["hours_per_week"] == int(fields[12])


def _samples(family, suffix: str = "") -> list:
    return [sample for sample in family.samples if sample.name == family.name + suffix]


def test_readiness_and_latency_in_scrape(columns_run):
    families = columns_run.scrape
    assert families, "no scrape during the run saw the end-to-end latency histogram"
    labels = {"model": columns_run.model["model_name"], "version": str(columns_run.model["version"]),
              "path": "jvm"}

    loaded = _samples(families["pyscoring_model_loaded"])
    assert [sample.value for sample in loaded if sample.labels == labels] == [1.0]

    last_batch = _samples(families["pyscoring_last_successful_batch_timestamp_seconds"])
    timestamps = [sample.value for sample in last_batch if sample.labels == labels]
    assert len(timestamps) == 1
    assert columns_run.started_at <= timestamps[0] <= time.time()

    latency = families["pyscoring_end_to_end_latency_seconds"]
    buckets = [sample for sample in _samples(latency, "_bucket")
               if {key: value for key, value in sample.labels.items() if key != "le"} == labels]
    bounds = sorted(float(sample.labels["le"]) for sample in buckets)
    assert bounds == [*LATENCY_BUCKETS_SECONDS, math.inf]
    count = next(s.value for s in _samples(latency, "_count") if s.labels == labels)
    total = next(s.value for s in _samples(latency, "_sum") if s.labels == labels)
    assert count >= 1
    # Every event time is the moment the input file was written, before the job started.
    assert 0 < total / count < time.time() - columns_run.started_at + 5


def test_line_source_backlog_falls_while_reading(columns_run):
    series = columns_run.pending_bytes
    assert series, f"no scrape served {SOURCE_PENDING_BYTES_METRIC}"
    assert max(max(values) for values in series.values()) > 0, "no scrape saw a backlog"
    for operator, values in series.items():
        assert values == sorted(values, reverse=True), f"the backlog of {operator} grew"
        # Flink removes the gauge when the source task finishes, soon after the
        # last line is read, so the last scrape can come before the value 0.
        # LinesSourceReaderTest checks that the gauge ends at 0.
        assert values[-1] <= values[0] / 2, (
            f"the backlog of {operator} fell only from {values[0]} to {values[-1]} bytes")


def test_restart_without_savepoint_warns(columns_run, census_export, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("".join(columns_run.input_path.read_text().splitlines(True)[:3]))
    columns = ", ".join(
        f"{name} {sql_type}" for name, sql_type in deploy.CENSUS_FORMAT.columns
    ) + ", event_time BIGINT"
    completed = _run(["-m", "pyscoring.cli", "deploy", "--model", str(census_export.export_dir),
                      "--input", str(small), "--output", str(columns_run.output_dir),
                      "--columns", columns])
    printed = [line for line in completed.stdout.splitlines() if line.startswith("WARNING:")]
    assert len(printed) == 1
    assert "starting over without a savepoint" in printed[0]
    assert "WARNING pyscoring.jobs: Job starting over without a savepoint" in completed.stderr
