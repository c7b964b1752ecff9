"""The PS scoring path: sharded restore, scores, routing and the deploy job."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from pyscoring import census, deploy
from pyscoring.config import Config
from pyscoring.evaluation import roc_auc
from pyscoring.metrics import LATENCY_METRIC, scrape
from tests.conftest import TEST_PATH
from tests.integration.jvm_process import jvm_metrics_target, metric_shape, scorer_loads


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def in_process_cluster():
    """Two parameter servers and one worker as TensorFlow servers inside this process."""
    import tensorflow as tf

    ports = _free_ports(3)
    spec = {"ps": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"],
            "worker": [f"127.0.0.1:{ports[2]}"]}
    cluster = tf.train.ClusterSpec(spec)
    servers = [tf.distribute.Server(cluster, job_name="ps", task_index=index, start=True)
               for index in range(2)]
    worker = tf.distribute.Server(cluster, job_name="worker", task_index=0, start=True)
    return spec, worker, servers


def _test_rows(count: int) -> list[tuple]:
    rows = []
    with open(TEST_PATH, encoding="utf-8") as file:
        for line in file:
            row = census.parse_line(line)
            if row is not None:
                rows.append(tuple(row[name] for name in census.FEATURE_NAMES))
            if len(rows) == count:
                break
    return rows


def test_sharded_restore_matches_saved_model(
        census_export, in_process_cluster):
    import tensorflow as tf

    from pyscoring.export import score_with_python_tf
    from pyscoring.serving.node import BatchRunner, ShardedModel

    spec, worker, _ = in_process_cluster
    model = ShardedModel(str(census_export.version_dir), spec, 0, census.FEATURE_NAMES)
    assert set(model.placement.values()) == {"/job:ps/task:0", "/job:ps/task:1"}
    restores = {op.device for op in model.graph.get_operations()
                if op.type == "RestoreV2" and op.name.startswith("pyscoring_ps_restore")}
    assert {device.split("/device:")[0] for device in restores} == \
        {"/job:ps/task:0", "/job:ps/task:1"}

    session = model.session(worker.target, is_chief=True,
                            config=tf.compat.v1.ConfigProto())
    dtypes = [tensor["dtype"] for tensor in census_export.manifest["signature"]["inputs"]]
    rows = _test_rows(1000)
    response = BatchRunner(session, model, dtypes).score(rows)
    session.close()
    assert response["errors"] == [None] * len(rows)

    columns = {name: np.asarray([row[i] for row in rows], dtype=object if dtype == "string"
                                else dtype)
               for i, (name, dtype) in enumerate(zip(model.input_names, dtypes))}
    expected = score_with_python_tf(census_export.version_dir, columns)
    for name, values in zip(model.output_names, response["outputs"]):
        np.testing.assert_allclose(np.asarray(values, dtype=np.float64),
                                   expected[name].astype(np.float64), atol=1e-5, rtol=0)


def test_rejected_row_is_isolated_and_the_rest_scored(census_export, in_process_cluster):
    import tensorflow as tf

    from pyscoring.serving.node import ROW_ERROR_CODE, BatchRunner, ShardedModel

    spec, worker, _ = in_process_cluster
    model = ShardedModel(str(census_export.version_dir), spec, 0, census.FEATURE_NAMES)
    session = model.session(worker.target, is_chief=True,
                            config=tf.compat.v1.ConfigProto())
    dtypes = [tensor["dtype"] for tensor in census_export.manifest["signature"]["inputs"]]
    rows = _test_rows(9)
    age = model.input_names.index("age")
    bad = list(rows[4])
    bad[age] = "forty"
    rows[4] = tuple(bad)
    response = BatchRunner(session, model, dtypes).score(rows)
    session.close()
    assert [error is None for error in response["errors"]] == [True] * 4 + [False] + [True] * 4
    assert response["errors"][4][0] == ROW_ERROR_CODE
    assert all(value is not None for output in response["outputs"]
               for index, value in enumerate(output) if index != 4)


# The deploy job on the PS path, in a Flink mini cluster.

MALFORMED_LINES = [
    "",
    "39, State-gov, 77516, Bachelors",
    "abc, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, "
    "White, Male, 0, 0, 40, United-States, <=50K",
]
TEST_ROWS = 16281
PARITY_ROWS = 1000
RUN_TIMEOUT_S = 600


@dataclasses.dataclass
class PsRun:
    version_dir: Path
    model: dict
    scores: list[dict]
    dead_letters: list[dict]
    families: dict
    target: str
    scorer_loads: int
    log: str


def _collect(job, output_dir: Path) -> tuple:
    """Scrape a PS endpoint while the job runs; wait for the drain at the end of the input."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    families, target = {}, None
    while not job.done():
        assert time.monotonic() < deadline, f"the PS-path job ran longer than {RUN_TIMEOUT_S} s"
        if not families:
            for endpoint in job.targets_writer.refresh():
                scraped = scrape(endpoint)
                series = scraped.get(LATENCY_METRIC)
                if series and any(sample.labels.get("path") == "ps" for sample in series.samples):
                    families, target = scraped, endpoint
        time.sleep(0.5)
    job.wait(0)
    return (deploy.read_json_lines(output_dir / "scores"),
            deploy.read_json_lines(output_dir / "dead-letters"), families, target)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _captured_log(name: str):
    handler = _Records()
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _run_ps(export_dir: Path, version_dir: Path, model: dict, input_dir: Path,
            output_dir: Path, overrides: dict) -> PsRun:
    config = Config({"deploy.checkpoint-interval-ms": 1000, **overrides})
    with _captured_log("pyscoring") as log:
        job = deploy.deploy(deploy.DeployRequest(
            model_dir=export_dir, output_dir=output_dir, input_path=input_dir, config=config))
        try:
            scores, dead, families, target = _collect(job, output_dir)
        finally:
            job.cancel()
            job.targets_writer.stop()
    loads = scorer_loads(version_dir)
    return PsRun(version_dir=version_dir, model=model, scores=scores, dead_letters=dead,
                 families=families, target=target, scorer_loads=loads, log="\n".join(log))


def _input_dir(folder: Path, rows: int | None = None, malformed: bool = True) -> Path:
    lines = TEST_PATH.read_bytes().splitlines(keepends=True)
    if rows is not None:
        selected, count = [], 0
        for line in lines:
            selected.append(line)
            count += census.parse_line(line.decode()) is not None
            if count == rows:
                break
        lines = selected
    (folder / "adult.test").write_bytes(b"".join(lines))
    if malformed:
        (folder / "malformed.txt").write_text("\n".join(MALFORMED_LINES) + "\n",
                                              encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ps_census_run(census_export, tmp_path_factory) -> PsRun:
    """The census export, small enough for both paths, forced onto the PS path with 2 PS nodes."""
    input_dir = _input_dir(tmp_path_factory.mktemp("ps-input"))
    return _run_ps(census_export.export_dir, census_export.version_dir,
                   census_export.manifest, input_dir, tmp_path_factory.mktemp("ps-output"),
                   {"scoring.path": "ps", "scoring.ps.parameter-servers": 2})


@pytest.fixture(scope="module")
def jvm_parity_run(census_export, tmp_path_factory):
    """The first PARITY_ROWS rows of adult.test scored on the JVM path; returns (scores, target)."""
    input_dir = _input_dir(tmp_path_factory.mktemp("jvm-parity-input"), PARITY_ROWS,
                           malformed=False)
    output_dir = tmp_path_factory.mktemp("jvm-parity-output")
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=output_dir, input_path=input_dir,
        config=Config({"scoring.path": "jvm", "deploy.checkpoint-interval-ms": 1000})))
    try:
        assert job.wait(timeout_s=RUN_TIMEOUT_S), "the JVM-path job did not finish"
    finally:
        job.targets_writer.stop()
    return deploy.read_json_lines(output_dir / "scores"), jvm_metrics_target()


def _by_key(rows: list[dict]) -> dict[str, dict]:
    return {row["key"]: row for row in rows}


def test_ps_path_scores_every_row_exactly_once(ps_census_run):
    keys = [row["key"] for row in ps_census_run.scores]
    assert len(keys) == len(set(keys)) == TEST_ROWS
    assert len(ps_census_run.dead_letters) == len(MALFORMED_LINES)
    version = ps_census_run.model["version"]
    assert {row["model_version"] for row in ps_census_run.scores} == {version}
    assert "on the PS path: scoring.path=ps" in ps_census_run.log
    assert "stopping it with a draining savepoint" in ps_census_run.log


def test_ps_and_jvm_paths_give_equal_scores(ps_census_run, jvm_parity_run):
    jvm_scores, _ = jvm_parity_run
    assert len(jvm_scores) == PARITY_ROWS
    ps_scores = _by_key(ps_census_run.scores)
    outputs = [tensor["name"] for tensor in ps_census_run.model["signature"]["outputs"]]
    for name in outputs:
        jvm_values = np.asarray([row[name] for row in jvm_scores], dtype=np.float64)
        ps_values = np.asarray([ps_scores[row["key"]][name] for row in jvm_scores],
                               dtype=np.float64)
        np.testing.assert_allclose(ps_values, jvm_values, atol=1e-5, rtol=0, err_msg=name)


def test_ps_path_metrics_match_jvm_path_metrics(ps_census_run, jvm_parity_run):
    _, jvm_target = jvm_parity_run
    ps_shape = metric_shape(ps_census_run.families)
    jvm_shape = metric_shape(scrape(jvm_target))
    names = ("pyscoring_prediction_latency_seconds", "pyscoring_batch_latency_seconds",
             "pyscoring_batch_size", "pyscoring_predictions", "pyscoring_model_info",
             "pyscoring_model_loaded", "pyscoring_last_successful_batch_timestamp_seconds")
    for name in names:
        assert ps_shape.get(name) == jvm_shape.get(name), name
    paths = {sample.labels["path"] for sample in ps_census_run.families[LATENCY_METRIC].samples}
    assert paths == {"ps"}


def test_default_budget_keeps_jvm_path(census_export_2w2ps):
    model = census_export_2w2ps.manifest
    assert model["variables"]["partitioned"]
    path, reason = deploy.choose_path(Config(), model)
    assert path == "jvm"
    assert "within scoring.jvm.max-model-bytes" in reason


def _node_pids(role: str, run_dir: Path) -> list[int]:
    """Return the pids of this run's node processes of `role`, read from /proc."""
    return [pid for pid, _ in _node_pids_with_index(role, run_dir)]


def _node_pids_with_index(role: str, run_dir: Path) -> list[tuple[int, int]]:
    """Return (pid, node index) of this run's node processes of `role`, read from /proc."""
    import json

    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pyscoring.cluster.node" in argv and len(argv) > 3:
            try:
                spec = json.loads(argv[3].decode(errors="replace"))
            except ValueError:
                continue
            if spec.get("role") == role and str(run_dir) in argv[3].decode(errors="replace"):
                pids.append((int(entry.name), spec["index"]))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("role, index", [("ps", 1), ("worker", 0)])
def test_node_killed_mid_stream_recovers_exactly_once(census_export, tmp_path, role, index):
    """SIGKILL of a PS node, or of the Python worker node that scores, while rows stream."""
    import os
    import signal

    (tmp_path / "input").mkdir()
    input_dir = _input_dir(tmp_path / "input", malformed=False)
    output_dir = tmp_path / "output"
    config = Config({"scoring.path": "ps", "scoring.ps.parameter-servers": 2,
                     "deploy.checkpoint-interval-ms": 1000, "source.rows-per-second": 1500,
                     "deploy.restart-attempts": 5})
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=output_dir, input_path=input_dir,
        config=config))
    run_dir = (output_dir / "ps-cluster").resolve()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(deploy.read_json_lines(output_dir / "scores")) < 2000:
            assert not job.done(), "the job ended before the kill"
            assert time.monotonic() < deadline, "no scores before the kill"
            time.sleep(0.5)
        victims = {spec_index: pid for pid, spec_index in _node_pids_with_index(role, run_dir)}
        assert len(victims) == (2 if role == "ps" else 1), victims
        os.kill(victims[index], signal.SIGKILL)
        # The job recovers, reads to the end of its input and ends with a drain.
        assert job.wait(timeout_s=RUN_TIMEOUT_S), "the job did not recover and finish"
        scores = deploy.read_json_lines(output_dir / "scores")
    finally:
        job.cancel()
        job.targets_writer.stop()
    keys = [row["key"] for row in scores]
    assert len(keys) == len(set(keys)) == TEST_ROWS
    events = (run_dir / "events.jsonl").read_text(encoding="utf-8")
    assert "node-failed" in events or "failing" in events
    assert f"{role}:{index}" in events
    # The job's end can come before the tasks have closed and stopped their nodes.
    deadline = time.monotonic() + 60
    while _node_pids("ps", run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _node_pids("ps", run_dir), "parameter servers outlived the cancelled job"


@pytest.fixture(scope="module")
def ps_hashed_run(hashed_export, tmp_path_factory) -> PsRun:
    """The hashed model with its tables over 2 PS nodes, routed to the PS path by its size."""
    input_dir = _input_dir(tmp_path_factory.mktemp("ps-hashed-input"), malformed=False)
    return _run_ps(hashed_export.export_dir, hashed_export.version_dir, hashed_export.manifest,
                   input_dir, tmp_path_factory.mktemp("ps-hashed-output"),
                   {"scoring.jvm.max-model-bytes": 1024, "scoring.ps.parameter-servers": 2})


def test_large_model_routes_to_ps_path(ps_hashed_run):
    model = ps_hashed_run.model
    assert model["variables"]["bytes"] > 1024
    assert "on the PS path" in ps_hashed_run.log
    assert "above scoring.jvm.max-model-bytes=1024" in ps_hashed_run.log
    # No scorer in this process's JVM, which hosts the mini cluster's task
    # manager, loaded the model.
    assert ps_hashed_run.scorer_loads == 0

    labels = dict(zip(census.row_keys(TEST_PATH, census.load(TEST_PATH).line_numbers),
                      census.load(TEST_PATH).labels.tolist()))
    scores = ps_hashed_run.scores
    assert len({row["key"] for row in scores}) == len(scores) == TEST_ROWS
    auc = roc_auc(np.asarray([labels[row["key"]] for row in scores]),
                  np.asarray([row["probability"] for row in scores]))
    assert auc >= 0.85, auc


SQL_ROWS = 200


def _collect_rows(table, count: int) -> list:
    rows = []
    with table.execute().collect() as results:
        for row in results:
            rows.append(row)
            if len(rows) == count:
                break
    return rows


def test_sql_registration_gives_one_schema_on_both_paths(census_export, tmp_path):
    from pyscoring.serving import ps_path
    from pyscoring.sql import register_scorer

    csv = tmp_path / "events.csv"
    with open(TEST_PATH, encoding="utf-8") as source, open(csv, "w", encoding="utf-8") as out:
        written = 0
        for line in source:
            row = census.parse_line(line)
            if row is None:
                continue
            out.write(",".join(str(row[name]) for name in census.FEATURE_NAMES) + "\n")
            written += 1
            if written == SQL_ROWS:
                break
    config = Config({"deploy.checkpoint-interval-ms": 1000})
    settings = deploy.flink_settings(config, "pyscoring-sql-test", tmp_path / "targets.json")
    settings.update(ps_path.flink_settings())
    table_env = deploy.create_table_environment(settings)
    columns = ", ".join(f"`{column.name}` {'STRING' if column.dtype == 'string' else 'BIGINT'}"
                        for column in census.FEATURE_COLUMNS)
    table_env.execute_sql(
        f"CREATE TEMPORARY TABLE events ({columns}) WITH ('connector' = 'filesystem', "
        f"'path' = '{csv}', 'format' = 'csv')")

    jvm = register_scorer(table_env, "scored_jvm", census_export.export_dir, "events",
                          Config({"scoring.path": "jvm"}))
    ps = register_scorer(table_env, "scored_ps", census_export.export_dir, "events",
                         Config({"scoring.path": "ps", "scoring.ps.parameter-servers": 2,
                                 "train.run-dir": str(tmp_path / "ps-cluster")}))
    assert (jvm, ps) == ("jvm", "ps")
    jvm_schema = table_env.from_path("scored_jvm").get_schema()
    ps_schema = table_env.from_path("scored_ps").get_schema()
    assert jvm_schema.get_field_names() == ps_schema.get_field_names()
    assert [str(t) for t in jvm_schema.get_field_data_types()] == \
        [str(t) for t in ps_schema.get_field_data_types()]

    def scores_of(view: str) -> dict:
        rows = _collect_rows(table_env.sql_query(f"SELECT * FROM {view}"), SQL_ROWS)
        probability = len(census.FEATURE_NAMES) + jvm_schema.get_field_names()[
            len(census.FEATURE_NAMES):].index("probability")
        return {tuple(row[:len(census.FEATURE_NAMES)]): row[probability] for row in rows}

    jvm_scores, ps_scores = scores_of("scored_jvm"), scores_of("scored_ps")
    assert len(ps_scores) == len(jvm_scores)
    for features, probability in jvm_scores.items():
        assert abs(ps_scores[features] - probability) <= 1e-5, features
