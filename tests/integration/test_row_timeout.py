"""Rows whose TensorFlow call outlives the row timeout, in a deployed job on the mini cluster.

The committed model `slow` (see jvm/src/test/resources/models/make_slow_model.py)
spins inside TensorFlow for the `delay_ms` of its row, so chosen rows stay
in TensorFlow past the row timeout while the other rows take microseconds.
The job runs batches of one row with one row in flight. So the row after a
slow row enters the scorer only once the slow row has timed out, and it
waits only for the rest of the slow call, which is shorter than the row
timeout.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pyscoring import deploy, standalone
from pyscoring.config import Config
from tests.integration.jvm_process import counter, scrape_jvm

REPO_ROOT = Path(__file__).resolve().parents[2]
SLOW_MODEL = REPO_ROOT / "jvm" / "src" / "test" / "resources" / "models" / "slow"
COLUMNS = "x FLOAT, delay_ms BIGINT"
JOB_TIMEOUT_S = 180

ROWS = 300
SLOW_LINES = (50, 125, 200)
BATCH_TIMEOUT_MS = 500
# The row timeout is scoring.max-batch-delay-ms (0 here) plus 3 times
# scoring.batch-timeout-ms. The timeout thread checks every quarter of it, so
# a slow row times out between 1500 and about 1875 ms, before its 2400 ms
# call returns. The next row enters the scorer at that point and waits at
# most 900 ms for the slow call to end.
ROW_TIMEOUT_MS = 3 * BATCH_TIMEOUT_MS
SLOW_DELAY_MS = 2400


def _restart_evidence(rest_address: str, job_id: str) -> dict:
    """Return the job's state, its recorded failures and the attempt number of every subtask."""
    job = standalone.rest_get(rest_address, f"/jobs/{job_id}")
    exceptions = standalone.rest_get(rest_address, f"/jobs/{job_id}/exceptions")
    attempts = []
    for vertex in job["vertices"]:
        details = standalone.rest_get(rest_address, f"/jobs/{job_id}/vertices/{vertex['id']}")
        attempts.extend(subtask["attempt"] for subtask in details["subtasks"])
    return {
        "state": job["state"],
        "failures": len(exceptions["exceptionHistory"]["entries"]),
        "attempts": attempts,
    }


@pytest.fixture(scope="module")
def timeout_run(tmp_path_factory) -> dict:
    input_dir = tmp_path_factory.mktemp("slow-input")
    path = input_dir / "slow.txt"
    lines = []
    for number in range(1, ROWS + 1):
        delay_ms = SLOW_DELAY_MS if number in SLOW_LINES else 0
        lines.append(f"{number}.5, {delay_ms}")
    path.write_text("\n".join(lines) + "\n")
    output_dir = tmp_path_factory.mktemp("slow-output")
    # Without an endpoint, no scorer ran in this JVM yet and every counter is 0.
    before = scrape_jvm()

    job = deploy.deploy(deploy.DeployRequest(
        model_dir=SLOW_MODEL, output_dir=output_dir, input_path=path,
        input_format=deploy.InputFormat.parse(COLUMNS),
        config=Config({
            "scoring.max-batch-size": 1,
            "scoring.max-in-flight": 1,
            "scoring.max-batch-delay-ms": 0,
            "scoring.batch-timeout-ms": BATCH_TIMEOUT_MS,
            "source.rows-per-second": 100,
            "deploy.checkpoint-interval-ms": 500,
            # Any task failure fails the job instead of restarting it.
            "deploy.restart-attempts": 0,
        }),
    ))
    timeout_labels = {"model": "slow", "path": "jvm", "reason_code": "TIMEOUT"}
    started = time.monotonic()
    # Samples of the REST API taken while the job runs, each with the
    # number of rows that had timed out by then.
    samples = []
    try:
        while not job.done():
            assert time.monotonic() - started < JOB_TIMEOUT_S, f"job {job.job_id} did not finish"
            timed_out = (counter(scrape_jvm(), "pyscoring_prediction_errors", timeout_labels)
                         - counter(before, "pyscoring_prediction_errors", timeout_labels))
            try:
                evidence = _restart_evidence(job.rest_address, job.job_id)
            except OSError:
                # The mini cluster stops its REST endpoint when the job ends.
                break
            samples.append({"timed_out": timed_out, **evidence})
            time.sleep(0.2)
        assert job.wait(timeout_s=JOB_TIMEOUT_S), f"job {job.job_id} did not finish"
    finally:
        if not job.done():
            job.cancel()
        job.targets_writer.stop()
    after = scrape_jvm()
    return {
        "lines": lines,
        "scores": deploy.read_json_lines(output_dir / "scores"),
        "dead_letters": deploy.read_json_lines(output_dir / "dead-letters"),
        "samples": samples,
        "before": before,
        "after": after,
    }


def test_slow_rows_become_timeout_dead_letters(timeout_run):
    dead = {row["key"]: row for row in timeout_run["dead_letters"]}
    assert set(dead) == {f"slow.txt:{number}" for number in SLOW_LINES}
    for number in SLOW_LINES:
        row = dead[f"slow.txt:{number}"]
        assert row["reason_code"] == "TIMEOUT", row
        assert row["source"] == "slow.txt"
        assert row["raw"] == timeout_run["lines"][number - 1]
        assert "while its batch ran in TensorFlow" in row["reason"], row["reason"]
        assert f"above the row timeout of {ROW_TIMEOUT_MS} ms" in row["reason"], row["reason"]
        assert "raise scoring.batch-timeout-ms" in row["reason"], row["reason"]
        waited = re.search(r"no result after (\d+) ms", row["reason"])
        assert waited, row["reason"]
        assert ROW_TIMEOUT_MS <= int(waited.group(1)) < SLOW_DELAY_MS, row["reason"]


def test_other_rows_scored_once(timeout_run):
    keys = [row["key"] for row in timeout_run["scores"]]
    expected = {f"slow.txt:{number}" for number in range(1, ROWS + 1)
                if number not in SLOW_LINES}
    assert len(keys) == len(set(keys)), "a row was scored twice"
    assert set(keys) == expected
    for row in timeout_run["scores"]:
        assert row["y"] == pytest.approx(2 * row["x"]), row
        assert row["model_version"] == 1


def test_rows_in_equal_scored_plus_dead_letters(timeout_run):
    scored = {row["key"] for row in timeout_run["scores"]}
    dead = {row["key"] for row in timeout_run["dead_letters"]}
    assert not scored & dead
    assert len(timeout_run["scores"]) + len(timeout_run["dead_letters"]) == ROWS
    assert scored | dead == {f"slow.txt:{number}" for number in range(1, ROWS + 1)}


def test_timeouts_counted_and_late_results_dropped(timeout_run):
    labels = {"model": "slow", "path": "jvm"}

    def delta(name: str, extra: dict) -> float:
        return (counter(timeout_run["after"], name, {**labels, **extra})
                - counter(timeout_run["before"], name, {**labels, **extra}))

    assert delta("pyscoring_prediction_errors", {"reason_code": "TIMEOUT"}) == len(SLOW_LINES)
    assert delta("pyscoring_dead_letters", {"reason_code": "TIMEOUT"}) == len(SLOW_LINES)
    # The slow calls return after their rows timed out; those results are
    # dropped and not counted as predictions.
    assert delta("pyscoring_predictions", {}) == ROWS - len(SLOW_LINES)


def test_job_keeps_running_without_restart(timeout_run):
    samples = timeout_run["samples"]
    assert samples, "the REST API was never read while the job ran"
    after_all_timeouts = [sample for sample in samples if sample["timed_out"] == len(SLOW_LINES)]
    assert after_all_timeouts, f"the job ended before the REST API was read after the last timeout: {samples[-3:]}"
    for sample in samples:
        assert sample["failures"] == 0, sample
        assert all(attempt == 0 for attempt in sample["attempts"]), sample
    assert any(sample["state"] == "RUNNING" for sample in after_all_timeouts), after_all_timeouts
