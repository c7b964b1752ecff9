"""The main job end to end: the census export scored on the JVM path in a Flink mini cluster.

One deploy run, shared by the tests below, streams every row of adult.test
plus a small file of malformed rows through pyscoring_parse and
pyscoring_predict, and scrapes the metrics endpoint while the job runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyscoring import census, deploy
from pyscoring.config import Config
from pyscoring.evaluation import accuracy, roc_auc
from pyscoring.metrics import LATENCY_METRIC, counter_total, histogram_buckets, scrape
from tests.integration.jvm_process import jvm_metrics_target, metric_shape

MALFORMED_LINES = [
    "",  # empty line
    "39, State-gov, 77516, Bachelors",  # missing fields
    "abc, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, "
    "White, Male, 0, 0, 40, United-States, <=50K",  # non-numeric age
]
PARITY_ROWS = 1000
METRICS_TIMEOUT_S = 60


@dataclasses.dataclass
class ScoringRun:
    export_version: int
    model_name: str
    scores: list[dict]
    dead_letters: list[dict]
    scrape_during_run: dict
    target: str
    predictions_before: float
    input_dir: Path
    execution_plan: str


def _predictions(target: str, labels: dict) -> float:
    families = scrape(target)
    family = families.get("pyscoring_predictions")
    return counter_total(family, labels) if family else 0.0


@pytest.fixture(scope="session")
def jvm_census_run(census_export, tmp_path_factory) -> ScoringRun:
    input_dir = tmp_path_factory.mktemp("jvm-input")
    (input_dir / "adult.test").write_bytes(census_export.test_path.read_bytes())
    (input_dir / "malformed.txt").write_text("\n".join(MALFORMED_LINES) + "\n", encoding="utf-8")
    output_dir = tmp_path_factory.mktemp("jvm-output")
    model = census_export.manifest
    labels = {"model": model["model_name"], "version": str(model["version"]), "path": "jvm"}

    # Other tests may have scored this export in this process's JVM already.
    earlier_target = jvm_metrics_target()
    predictions_before = _predictions(earlier_target, labels) if earlier_target else 0.0

    # A rate limit keeps the job running for several seconds, so the scrape
    # below reaches a live job.
    config = Config({"source.rows-per-second": 4000, "deploy.checkpoint-interval-ms": 1000})
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=output_dir, input_path=input_dir,
        config=config,
    ))
    scrape_during_run = {}
    target = None
    try:
        deadline = time.monotonic() + 300
        while not job.wait(timeout_s=0.5):
            assert time.monotonic() < deadline, "the scoring job did not finish within 300 s"
            targets = job.targets_writer.refresh()
            if targets and not scrape_during_run:
                target = targets[0]
                families = scrape(target)
                if LATENCY_METRIC in families:
                    scrape_during_run = families
    finally:
        job.targets_writer.stop()
    target = target or job.targets_writer.endpoints()[0]
    return ScoringRun(
        export_version=model["version"],
        model_name=model["model_name"],
        scores=deploy.read_json_lines(output_dir / "scores"),
        dead_letters=deploy.read_json_lines(output_dir / "dead-letters"),
        scrape_during_run=scrape_during_run,
        target=target,
        predictions_before=predictions_before,
        input_dir=input_dir,
        execution_plan=job.execution_plan,
    )


def _test_labels(census_export) -> dict[str, int]:
    data = census.load(census_export.test_path)
    keys = census.row_keys(census_export.test_path, data.line_numbers)
    return dict(zip(keys, data.labels.tolist()))


def test_every_test_row_scored_exactly_once(jvm_census_run, census_export):
    expected = set(_test_labels(census_export))
    keys = [row["key"] for row in jvm_census_run.scores]
    assert len(expected) == 16281
    assert len(keys) == len(set(keys)), "a row was scored twice"
    assert set(keys) == expected
    assert all(row["model_version"] == jvm_census_run.export_version for row in jvm_census_run.scores)


def test_jvm_scores_reach_quality_bar(jvm_census_run, census_export):
    labels_by_key = _test_labels(census_export)
    labels = [labels_by_key[row["key"]] for row in jvm_census_run.scores]
    probabilities = [row["probability"] for row in jvm_census_run.scores]
    assert roc_auc(labels, probabilities) >= 0.88
    assert accuracy(labels, probabilities) >= 0.84


def test_malformed_rows_become_dead_letters(jvm_census_run):
    dead = {row["key"]: row for row in jvm_census_run.dead_letters}
    assert set(dead) == {"malformed.txt:1", "malformed.txt:2", "malformed.txt:3"}
    assert dead["malformed.txt:1"]["reason_code"] == "EMPTY_LINE"
    assert dead["malformed.txt:2"]["reason_code"] == "FIELD_COUNT"
    assert dead["malformed.txt:3"]["reason_code"] == "NOT_A_NUMBER"
    assert "abc" in dead["malformed.txt:3"]["reason"]
    assert dead["malformed.txt:2"]["raw"] == MALFORMED_LINES[1]


_PYTHON_SCORING_SCRIPT = """
import json, sys
import numpy as np
from pyscoring import census
from pyscoring.export import score_with_python_tf
arguments = json.loads(sys.stdin.read())
data = census.load(arguments["test_path"])
count = arguments["rows"]
features = {name: values[:count] for name, values in data.features.items()}
outputs = score_with_python_tf(arguments["version_dir"], features)
keys = census.row_keys(arguments["test_path"], data.line_numbers[:count])
print(json.dumps({"keys": keys, "probability": np.asarray(outputs["probability"]).tolist(),
                  "logit": np.asarray(outputs["logit"]).tolist()}))
"""


def test_jvm_scores_match_python_tensorflow(jvm_census_run, census_export):
    # Python TensorFlow runs in its own process: TensorFlow Java lives in
    # Flink's JVM, and two TensorFlow runtimes must not share a process.
    completed = subprocess.run(
        [sys.executable, "-c", _PYTHON_SCORING_SCRIPT],
        input=json.dumps({
            "test_path": str(census_export.test_path),
            "version_dir": str(census_export.version_dir),
            "rows": PARITY_ROWS,
        }),
        capture_output=True, text=True, check=True, timeout=300,
    )
    python_scores = json.loads(completed.stdout.strip().splitlines()[-1])
    jvm_by_key = {row["key"]: row for row in jvm_census_run.scores}
    assert len(python_scores["keys"]) == PARITY_ROWS
    for name in ("probability", "logit"):
        jvm = np.array([jvm_by_key[key][name] for key in python_scores["keys"]])
        python = np.array(python_scores[name])
        assert np.max(np.abs(jvm - python)) <= 1e-5, name


def test_latency_histogram_scraped_during_run(jvm_census_run):
    families = jvm_census_run.scrape_during_run
    assert families, "no scrape of the running job found the latency histogram"
    version = str(jvm_census_run.export_version)
    series = [
        sample for sample in families[LATENCY_METRIC].samples
        if sample.labels.get("version") == version and sample.labels.get("path") == "jvm"
    ]
    assert series, f"no {LATENCY_METRIC} series with version={version}"
    buckets = histogram_buckets(families[LATENCY_METRIC], {"version": version})
    assert math.isinf(buckets[-1][0])
    assert buckets[-1][1] > 0
    for name in ("pyscoring_batch_latency_seconds", "pyscoring_batch_size",
                 "pyscoring_predictions", "pyscoring_model_info"):
        assert name in families, name


def test_predictions_total_reaches_rows_scored(jvm_census_run):
    labels = {"model": jvm_census_run.model_name,
              "version": str(jvm_census_run.export_version), "path": "jvm"}
    rows_read = 16281 + len(MALFORMED_LINES)
    rows_rejected = len(jvm_census_run.dead_letters)
    expected = jvm_census_run.predictions_before + rows_read - rows_rejected
    assert rows_read - rows_rejected == len(jvm_census_run.scores)
    deadline = time.monotonic() + METRICS_TIMEOUT_S
    observed = _predictions(jvm_census_run.target, labels)
    while observed < expected and time.monotonic() < deadline:
        time.sleep(1)
        observed = _predictions(jvm_census_run.target, labels)
    assert observed == expected


def test_jvm_path_job_has_no_python_operator(jvm_census_run):
    plan = jvm_census_run.execution_plan
    assert "pyscoring_predict" in plan or "AsyncCorrelate" in plan, plan[:2000]
    assert "Python" not in plan


def test_python_metrics_match_jvm_metrics(jvm_census_run, tmp_path):
    from pyscoring.metrics import ScoringMetrics

    python_metrics = ScoringMetrics()
    labels = ("census_wide_deep", "1", "ps")
    python_metrics.prediction_latency.labels(*labels).observe(0.003)
    python_metrics.batch_latency.labels(*labels).observe(0.002)
    python_metrics.batch_size.labels(*labels).observe(8)
    python_metrics.predictions.labels(*labels).inc(8)
    python_metrics.model_info.labels(*labels, "2.18.0").info({})
    port = python_metrics.start_server("127.0.0.1", 9300, 9349, tmp_path / "targets.json")
    assert (tmp_path / "targets.json.d").is_dir()

    python_shape = metric_shape(scrape(f"127.0.0.1:{port}"))
    jvm_shape = metric_shape(scrape(jvm_census_run.target))
    for name in ("pyscoring_prediction_latency_seconds", "pyscoring_batch_latency_seconds",
                 "pyscoring_batch_size", "pyscoring_predictions", "pyscoring_model_info"):
        assert python_shape[name] == jvm_shape[name], name
