import json
import logging
import time

from pyscoring.cluster import job
from pyscoring.config import Config


def test_flink_settings_streaming_full_failover():
    settings = job.flink_settings(Config({"train.restart-attempts": 4}), "train")

    assert settings["execution.runtime-mode"] == "STREAMING"
    assert settings["jobmanager.execution.failover-strategy"] == "full"
    assert settings["restart-strategy.type"] == "fixed-delay"
    assert settings["restart-strategy.fixed-delay.attempts"] == "4"
    assert settings["rest.bind-address"] == "127.0.0.1"


def test_total_steps_sums_worker_shares():
    assert job.total_steps([1500, 1500], batch_size=256, epochs=2) == 24
    assert job.total_steps([16280, 16281], batch_size=256, epochs=3) == 3 * (64 + 64)
    assert job.total_steps([10, 0], batch_size=4, epochs=1) == 3


def test_failure_reason_finds_cluster_failure():
    text = (
        "An error occurred while calling o1.get.\n"
        ": org.apache.flink.runtime.JobException: Recovery is suppressed\n"
        "Caused by: pemja.core.PythonException: <class 'pyscoring.cluster.am.ClusterFailure'>\n"
        "Traceback ...\n"
        "pyscoring.cluster.am.ClusterFailure: ML cluster version 2 failed: worker:1: "
        "node worker:1 (pid 7) failed with exit code -9\n"
        "\tat org.apache.beam.Something(Something.java:1)\n"
    )
    reason = job._failure_reason(RuntimeError(text))
    assert reason == ("ML cluster version 2 failed: worker:1: node worker:1 (pid 7) "
                      "failed with exit code -9")


def test_read_result_checks_run_id(tmp_path):
    run = job.prepare_run(Config(), tmp_path / "checkpoints", tmp_path / "exports", None,
                          params=None, mode=job.MODE_BOUNDED, shares=[1], last_step=1)
    result_path = tmp_path / "checkpoints" / "cluster" / job.RESULT_FILE
    result_path.write_text(json.dumps({"run_id": "old", "version": 0, "result": {}}))

    assert job.read_result(run, "new") is None
    assert job.read_result(run, "old")["version"] == 0


def test_status_watcher_logs_progress(tmp_path, caplog):
    from pyscoring.training import local

    run = job.prepare_run(Config({"train.log-every-steps": 10}), tmp_path / "checkpoints",
                          tmp_path / "exports", None, params=None, mode=job.MODE_BOUNDED,
                          shares=[1], last_step=40)
    status_path = tmp_path / "checkpoints" / "cluster" / "status.json"
    watcher = job._StatusWatcher(run, interval_s=0.05)
    with caplog.at_level(logging.INFO, logger=local.logger.name):
        watcher.start()
        for step in (5, 12, 25):
            status_path.write_text(json.dumps({"version": 0, "state": "running",
                                               "global_step": step, "loss": 0.5,
                                               "examples": step * 100, "time": 0}))
            deadline = time.monotonic() + 5
            while not any(f"step {step}/40" in record.getMessage()
                          for record in caplog.records) and step != 5:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)
        watcher.close()

    lines = [record.getMessage() for record in caplog.records
             if record.getMessage().startswith("Training step")]
    assert len(lines) == 2
    assert lines[0].startswith("Training step 12/40 ")
    assert lines[1].startswith("Training step 25/40 ")
    assert "examples/s" in lines[1]
