"""`pyscoring cluster start|status|stop` against a real one-task-manager cluster on loopback.

The cluster runs from the PyFlink wheel's own scripts with build/flink-lib/
as its lib folder, in a temporary folder and on free ports, so it cannot
clash with another cluster on the machine. The test took 35 to 75 s on a
2-core machine that was running other work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from pyscoring import standalone
from tests.integration.conftest import free_port, listening_addresses

COMMAND_TIMEOUT_S = 240


def _pyscoring(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyscoring.cli", *arguments],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
    )


def _alive(pid: int) -> bool:
    return standalone._process_alive(pid)


def test_cluster_start_status_stop(tmp_path):
    cluster_dir = tmp_path / "cluster"
    rest_port, rpc_port = free_port(), free_port()
    started = _pyscoring(
        "cluster", "start", "--dir", str(cluster_dir), "--taskmanagers", "1",
        "--rest-port", str(rest_port), "--rpc-port", str(rpc_port),
    )
    state_file = cluster_dir / standalone.STATE_FILE
    pids = []
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads(state_file.read_text())
        pids = [state["jobmanager_pid"]] + [process["pid"] for process in state["taskmanagers"]]
        assert len(pids) == 2
        assert f"--jobmanager 127.0.0.1:{rest_port}" in started.stdout

        status = _pyscoring("cluster", "status", "--dir", str(cluster_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"job manager:   127.0.0.1:{rpc_port}" in status.stdout
        assert f"http://127.0.0.1:{rest_port}" in status.stdout
        assert "task managers: 1 registered, 1 slot(s), 1 free" in status.stdout
        assert "pyscoring-tm-0" in status.stdout

        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/overview", timeout=10) as response:
            overview = json.loads(response.read())
        assert overview["taskmanagers"] == 1
        assert overview["flink-version"] == "2.3.0"

        for pid in pids:
            addresses = listening_addresses(pid)
            assert addresses, f"process {pid} listens on no port"
            assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses

        second = _pyscoring("cluster", "start", "--dir", str(cluster_dir),
                            "--rest-port", str(free_port()), "--rpc-port", str(free_port()))
        assert second.returncode == 1
        assert "already runs" in second.stderr
    finally:
        stopped = _pyscoring("cluster", "stop", "--dir", str(cluster_dir))

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped the cluster" in stopped.stdout
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if _alive(pid)]
    assert not state_file.exists()

    after = _pyscoring("cluster", "status", "--dir", str(cluster_dir))
    assert after.returncode == 3
    assert "not running" in after.stdout
