import json

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
