import os
import signal
import sys
import threading
import time

from pyscoring.cluster.supervisor import NodeProcess, describe_exit


def run_node(tmp_path, code, name="worker:0"):
    exits = []
    done = threading.Event()

    def on_exit(returncode, reason):
        exits.append((returncode, reason))
        done.set()

    node = NodeProcess(name, [sys.executable, "-c", code], str(tmp_path / "node.log"),
                       dict(os.environ), on_exit)
    node.start()
    return node, exits, done


def test_describe_exit_names_oom_kill():
    assert "out-of-memory" in describe_exit(137)
    assert "out-of-memory" in describe_exit(-9)
    assert "SIGTERM" in describe_exit(-15)
    assert describe_exit(3) == "exit code 3"


def test_failure_reason_has_stderr_tail(tmp_path):
    node, exits, done = run_node(
        tmp_path, "import sys; print('last words', file=sys.stderr); sys.exit(3)")
    assert done.wait(20)
    code, reason = exits[0]
    assert code == 3
    assert "node worker:0" in reason
    assert "exit code 3" in reason
    assert "last words" in reason


def test_sigkill_reason_names_oom(tmp_path):
    node, exits, done = run_node(tmp_path, "import time; time.sleep(60)")
    time.sleep(0.5)
    os.kill(node.pid, signal.SIGKILL)
    assert done.wait(20)
    assert exits[0][0] == -9
    assert "out-of-memory" in exits[0][1]


def test_clean_exit_has_no_reason(tmp_path):
    node, exits, done = run_node(tmp_path, "pass")
    assert done.wait(20)
    assert exits == [(0, None)]


def test_stop_kills_process_group(tmp_path):
    child_pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    node, exits, done = run_node(tmp_path, code)
    deadline = time.monotonic() + 20
    while not child_pid_file.exists() or not child_pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    grandchild = int(child_pid_file.read_text())

    node.stop(timeout_s=5)
    assert node.wait(10) is not None
    assert exits == []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # A zombie grandchild is reaped by init; treat it as gone.
        with open(f"/proc/{grandchild}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.1)
    else:
        raise AssertionError(f"grandchild {grandchild} survived stop()")
