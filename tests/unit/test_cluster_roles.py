"""The optional chief and evaluator nodes in the AM and the node context."""

import threading

import grpc
import pytest

from pyscoring.cluster import am, protocol
from pyscoring.cluster.context import NodeContext
from pyscoring.config import Config

SECRET = "s3cret"
NODES = (("worker", 0, 1000), ("worker", 1, 1001), ("ps", 0, 1002), ("chief", 0, 1003),
         ("evaluator", 0, 1004))


@pytest.fixture
def manager(tmp_path):
    instance = am.ApplicationManager(
        workers=2, ps=1, chief=1, evaluator=1, secret=SECRET, version=0,
        run_dir=str(tmp_path), heartbeat_timeout_s=30.0, register_timeout_s=30.0,
        stop_grace_s=0.0,
    )
    instance.start("127.0.0.1")
    yield instance
    instance.stop()


def client(manager):
    return protocol.AMClient(manager.address, SECRET, 0, timeout_s=5.0)


def register_all(manager):
    for role, index, port in NODES:
        client(manager).call("Register", role=role, index=index, host="127.0.0.1",
                             port=port, pid=1)


def heartbeat(manager, role, index=0, **progress):
    return client(manager).call("Heartbeat", role=role, index=index, progress=progress)


def done(manager, role, index=0, result=None):
    client(manager).call("Report", role=role, index=index, status="done", result=result)


def test_spec_has_chief_not_evaluator(manager):
    register_all(manager)
    reply = client(manager).call("GetClusterSpec", role="evaluator", index=0)

    assert reply["complete"] is True
    assert reply["cluster"] == {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"],
                                "ps": ["127.0.0.1:1002"], "chief": ["127.0.0.1:1003"]}


def test_running_waits_for_chief_and_evaluator(manager):
    for role, index, port in NODES[:3]:
        client(manager).call("Register", role=role, index=index, host="127.0.0.1",
                             port=port, pid=1)
    assert manager.state is am.ClusterState.INITIALIZING

    for role, index, port in NODES[3:]:
        client(manager).call("Register", role=role, index=index, host="127.0.0.1",
                             port=port, pid=1)
    assert manager.state is am.ClusterState.RUNNING


def test_chief_rejected_without_chief_role(tmp_path):
    instance = am.ApplicationManager(
        workers=1, ps=1, secret=SECRET, version=0, run_dir=str(tmp_path),
        heartbeat_timeout_s=30.0, register_timeout_s=30.0)
    instance.start("127.0.0.1")
    try:
        with pytest.raises(protocol.RejectedError) as caught:
            client(instance).call("Register", role="chief", index=0, host="127.0.0.1",
                                  port=1, pid=1)
    finally:
        instance.stop()
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_second_chief_rejected_in_constructor(tmp_path):
    with pytest.raises(ValueError, match="at most one chief"):
        am.ApplicationManager(workers=1, ps=1, chief=2, secret=SECRET, version=0,
                              run_dir=str(tmp_path), heartbeat_timeout_s=1.0,
                              register_timeout_s=1.0)


def test_stop_order_follows_chief(manager):
    register_all(manager)
    done(manager, "worker", 0)
    done(manager, "worker", 1)

    assert heartbeat(manager, "chief")["workers_done"] is True
    assert heartbeat(manager, "ps")["command"] == protocol.COMMAND_CONTINUE
    assert heartbeat(manager, "evaluator")["command"] == protocol.COMMAND_CONTINUE

    done(manager, "chief", result={"global_step": 7, "export": {"version": 1}})
    assert heartbeat(manager, "ps")["command"] == protocol.COMMAND_STOP
    assert heartbeat(manager, "evaluator")["command"] == protocol.COMMAND_STOP
    done(manager, "ps")
    assert manager.state is am.ClusterState.RUNNING

    done(manager, "evaluator", result={"evaluations": 3})
    assert manager.state is am.ClusterState.FINISHED


def test_result_is_chief_nodes(manager):
    register_all(manager)
    results: list = []
    waiter = threading.Thread(target=lambda: results.append(manager.wait(poll_s=0.05)))
    waiter.start()
    done(manager, "worker", 0, result={"global_step": 6, "examples": 10})
    done(manager, "worker", 1, result={"global_step": 7, "examples": 12})
    done(manager, "chief", result={"global_step": 7, "examples": 0, "export": {"version": 1}})
    done(manager, "ps")
    done(manager, "evaluator", result={"evaluations": 2})
    waiter.join(5.0)

    result = results[0]
    assert result["export"] == {"version": 1}
    assert result["examples"] == 0
    assert set(result["workers"]) == {"worker:0", "worker:1"}
    assert result["evaluator"] == {"evaluations": 2}


def test_status_takes_loss_from_worker(manager):
    register_all(manager)
    heartbeat(manager, "chief", global_step=40, loss=None, examples=0)
    heartbeat(manager, "worker", 0, global_step=39, loss=0.5, examples=100)
    heartbeat(manager, "worker", 1, global_step=40, loss=0.4, examples=120)
    with manager._lock:  # noqa: SLF001
        status = manager._status()  # noqa: SLF001

    assert status["global_step"] == 40
    assert status["loss"] == 0.5
    assert status["examples"] == 220


def context(role, index, cluster_spec):
    return NodeContext(
        role=role, index=index, cluster_spec=cluster_spec, server=None, config=Config({}),
        checkpoint_dir="", export_dir="", test_path=None, mode="bounded", records=None,
        column_names=(), column_dtypes=(), share_size=None, last_step=0,
        model_params_json="{}", report_progress=lambda *args: None,
        report_ready=lambda: None, wait_for_chief=lambda: None)


def test_chief_duties_move_to_chief_node():
    without = {"worker": ["a:1", "a:2"], "ps": ["a:3"]}
    with_chief = dict(without, chief=["a:4"])

    assert context("worker", 0, without).is_chief
    assert not context("worker", 1, without).is_chief
    assert not context("worker", 0, with_chief).is_chief
    assert context("chief", 0, with_chief).is_chief
    assert context("chief", 0, with_chief).num_workers == 2
