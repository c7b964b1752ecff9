import json
import threading
import time

import grpc
import pytest

from pyscoring.cluster import am, protocol

SECRET = "s3cret"


@pytest.fixture
def manager(tmp_path):
    instance = am.ApplicationManager(
        workers=2, ps=1, secret=SECRET, version=3, run_dir=str(tmp_path),
        heartbeat_timeout_s=2.0, register_timeout_s=30.0, stop_grace_s=0.0,
    )
    instance.start("127.0.0.1")
    yield instance
    instance.stop()


def client(manager, secret=SECRET, version=3):
    return protocol.AMClient(manager.address, secret, version, timeout_s=5.0)


def register_all(manager):
    for role, index, port in (("worker", 0, 1000), ("worker", 1, 1001), ("ps", 0, 1002)):
        client(manager).call("Register", role=role, index=index, host="127.0.0.1",
                             port=port, pid=1)


def events(tmp_path):
    return [json.loads(line) for line in (tmp_path / am.EVENTS_FILE).read_text().splitlines()]


def test_am_binds_loopback(manager):
    assert manager.address.startswith("127.0.0.1:")


def test_spec_complete_after_all_register(manager):
    node = client(manager)
    node.call("Register", role="worker", index=0, host="127.0.0.1", port=1000, pid=1)
    assert node.call("GetClusterSpec", role="worker", index=0) == {"complete": False}

    register_all(manager)
    reply = node.call("GetClusterSpec", role="worker", index=0)
    assert reply["complete"] is True
    assert reply["cluster"] == {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"],
                                "ps": ["127.0.0.1:1002"]}
    assert manager.state is am.ClusterState.RUNNING


def test_wrong_secret_rejected(manager):
    with pytest.raises(protocol.RejectedError) as caught:
        client(manager, secret="guess").call("Register", role="worker", index=0,
                                             host="127.0.0.1", port=1, pid=1)
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_stale_version_rejected(manager):
    with pytest.raises(protocol.RejectedError) as caught:
        client(manager, version=2).call("Heartbeat", role="worker", index=0, progress={})
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "stale cluster version 2" in str(caught.value)


def test_unknown_node_rejected(manager):
    with pytest.raises(protocol.RejectedError) as caught:
        client(manager).call("Register", role="worker", index=2, host="127.0.0.1",
                             port=1, pid=1)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_register_after_start_rejected(manager):
    register_all(manager)
    with pytest.raises(protocol.RejectedError, match="running"):
        client(manager).call("Register", role="ps", index=0, host="127.0.0.1",
                             port=5, pid=1)


def test_done_reports_finish_cluster(manager, tmp_path):
    register_all(manager)
    node = client(manager)
    node.call("Report", role="worker", index=1, status="done")
    assert node.call("Heartbeat", role="ps", index=0, progress={})["command"] == "continue"

    node.call("Report", role="worker", index=0, status="done", result={"global_step": 7})
    assert node.call("Heartbeat", role="ps", index=0, progress={})["command"] == "stop"
    node.call("Report", role="ps", index=0, status="done")

    result = manager.wait()
    assert result["global_step"] == 7
    assert result["cluster_version"] == 3
    assert result["workers"] == {"worker:0": {"global_step": 7}, "worker:1": None}
    states = [event["state"] for event in events(tmp_path) if event["event"] == "transition"]
    assert states == ["running", "finished"]


def test_failed_report_orders_restart(manager, tmp_path):
    register_all(manager)
    node = client(manager)
    node.call("Report", role="worker", index=1, status="failed", reason="exit code -9")

    assert node.call("Heartbeat", role="worker", index=0, progress={})["command"] == "restart"
    with pytest.raises(am.ClusterFailure, match="worker:1: exit code -9"):
        manager.wait()
    failover = [event for event in events(tmp_path) if event.get("state") == "failing over"]
    assert failover[0]["node"] == "worker:1"


def test_heartbeat_timeout_fails_over(manager):
    register_all(manager)
    node = client(manager)
    deadline = time.monotonic() + 10
    while manager.state is am.ClusterState.RUNNING and time.monotonic() < deadline:
        node.call("Heartbeat", role="worker", index=0, progress={})
        node.call("Heartbeat", role="ps", index=0, progress={})
        time.sleep(0.2)
    with pytest.raises(am.ClusterFailure, match="worker:1: no heartbeat"):
        manager.wait()


def test_register_timeout_names_missing_nodes(tmp_path):
    manager = am.ApplicationManager(
        workers=1, ps=1, secret=SECRET, version=0, run_dir=str(tmp_path),
        heartbeat_timeout_s=60.0, register_timeout_s=0.5, stop_grace_s=0.0)
    manager.start("127.0.0.1")
    try:
        client(manager, version=0).call("Register", role="worker", index=0,
                                        host="127.0.0.1", port=1, pid=1)
        with pytest.raises(am.ClusterFailure, match="ps:0 did not register"):
            manager.wait()
    finally:
        manager.stop()


def test_fail_drill_file_fails_cluster(manager, tmp_path):
    register_all(manager)
    threading.Timer(0.3, lambda: (tmp_path / am.FAIL_DRILL_FILE).touch()).start()
    with pytest.raises(am.ClusterFailure, match="failover drill"):
        manager.wait(poll_s=0.1)
    assert not (tmp_path / am.FAIL_DRILL_FILE).exists()


def test_status_file_shows_chief_progress(manager, tmp_path):
    register_all(manager)
    client(manager).call("Heartbeat", role="worker", index=0,
                         progress={"global_step": 12, "loss": 0.5, "examples": 300})
    client(manager).call("Heartbeat", role="worker", index=1,
                         progress={"global_step": 11, "loss": 0.6, "examples": 200})
    deadline = time.monotonic() + 5
    status = {}
    while time.monotonic() < deadline:
        path = tmp_path / am.STATUS_FILE
        if path.exists():
            status = json.loads(path.read_text())
            if status.get("examples") == 500:
                break
        time.sleep(0.2)
    assert status["global_step"] == 12
    assert status["loss"] == 0.5
    assert status["examples"] == 500
    assert status["state"] == "running"
