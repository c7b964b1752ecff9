"""Check that TensorFlow's thread options take effect in TensorFlow Java.

Runs io.pyscoring.bench.RawTensorFlowBench on the MLP at batch 1,024 with
intra-op / inter-op threads 1 / 1 and 0 / 0 (TensorFlow's choice). In the
middle of each run it counts the JVM's threads and the threads that used
more than 2.5 % of a core over 2 s (from /proc/PID/task). More threads doing
work with 0 / 0 shows that the ConfigProto setting reached the session.
`python -m bench.thread_check` prints JSON; bench.run stores it in results.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _thread_ticks(pid: int) -> dict[str, int]:
    ticks = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[task] = int(fields[11]) + int(fields[12])
    return ticks


def check(mlp_export: str, mlp_chunk: str, columns: list[str]) -> dict:
    """Return, per thread setting, the thread counts and the measured rows/s."""
    clock_ticks = os.sysconf("SC_CLK_TCK")
    runs = []
    for intra, inter in ((1, 1), (0, 0)):
        process = subprocess.Popen(
            ["java", "-cp", f"{ROOT / 'build' / 'flink-lib'}/*",
             "io.pyscoring.bench.RawTensorFlowBench", "--model", mlp_export, "--data", mlp_chunk,
             "--columns", ",".join(columns), "--batch-sizes", "1024", "--seconds", "6",
             "--repeats", "2", "--modes", "prebuilt", "--intra-op", str(intra),
             "--inter-op", str(inter)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # Model loading and the 1 s warm-up take a few seconds; sample inside the repeats.
        time.sleep(10)
        before = _thread_ticks(process.pid)
        time.sleep(2)
        after = _thread_ticks(process.pid)
        output, _ = process.communicate()
        busy = [after[task] - before.get(task, 0) for task in after]
        threshold = 0.025 * 2 * clock_ticks
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        runs.append({
            "intra_op": intra, "inter_op": inter, "threads": len(after),
            "busy_threads": sum(1 for value in busy if value > threshold),
            "rows_per_second": [record["rows_per_second"] for record in records],
            "cpu_cores": [record["cpu_cores"] for record in records],
        })
    return {"command": "python -m bench.thread_check",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs}


def main() -> None:
    from bench import run as bench_run

    models = bench_run.prepare(quick=False)
    mlp = models["mlp"]
    print(json.dumps(check(mlp["export"], mlp["chunk"], mlp["columns"]), indent=1))


if __name__ == "__main__":
    main()
