"""Training throughput of the ML cluster against single-process TensorFlow.

`python -m bench.train_throughput` trains the census model on
data/adult/adult.data three ways in one run, each in a fresh subprocess:
single-process TensorFlow (`pyscoring.training.local`, the path of
1 worker and 0 parameter servers), 1 worker + 1 PS and 2 workers + 2 PS on
the Flink ML cluster. It reports examples/s between the first and the last
training step (summed over workers) and the seconds from the `train` call
to the first training step, and writes the section "Training on the ML
cluster" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sections import load_average, machine_rows, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Training on the ML cluster"

_LOCAL = """
import json, sys, time
arguments = json.loads(sys.argv[1])
started = time.time()
from models import census_wide_deep as model
from pyscoring import census
from pyscoring.config import Config
from pyscoring.training import local

steps = []

class Recorder(local.ProgressReporter):
    def update(self, global_step, examples, loss):
        steps.append((time.time(), examples))
        super().update(global_step, examples, loss)

local.ProgressReporter = Recorder
config = Config(arguments["config"])
data = census.load(arguments["train_path"])
params = local.resolve_model_params(None, data.features, arguments["checkpoint_dir"])
local.train_in_process(config, params, data, arguments["checkpoint_dir"])
print("RESULT", json.dumps({"started": started, "first_step_at": steps[0][0],
                            "last_step_at": steps[-1][0],
                            "examples": sum(count for _, count in steps[1:])}))
"""

_CLUSTER = """
import json, logging, sys, time
arguments = json.loads(sys.argv[1])
started = time.time()
logging.basicConfig(level=logging.WARNING)
from pyscoring.config import Config
from pyscoring.cluster import job
from pyscoring.training.cluster import train_cluster

final = {}
run_job = job.run_job

def recording_run_job(*args, **kwargs):
    final.update(run_job(*args, **kwargs))
    return final

job.run_job = recording_run_job
train_cluster(Config(arguments["config"]), arguments["train_path"], arguments["test_path"],
              arguments["export_dir"], arguments["checkpoint_dir"])
workers = [result for result in final["result"]["workers"].values() if result]
first = min(result["first_step_at"] for result in workers if result["first_step_at"])
last = max(result["last_step_at"] for result in workers if result["last_step_at"])
print("RESULT", json.dumps({"started": started, "first_step_at": first, "last_step_at": last,
                            "examples": sum(result["examples"] for result in workers),
                            "restarts": final["version"]}))
"""


def run_variant(script: str, config: dict, folder: Path) -> dict:
    arguments = {
        "config": config,
        "train_path": str(ROOT / "data" / "adult" / "adult.data"),
        "test_path": str(ROOT / "data" / "adult" / "adult.test"),
        "export_dir": str(folder / "exports"),
        "checkpoint_dir": str(folder / "checkpoints"),
    }
    completed = subprocess.run([sys.executable, "-c", script, json.dumps(arguments)],
                               cwd=ROOT, capture_output=True, text=True, timeout=1800)
    (folder / "output.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        raise RuntimeError(f"variant failed with exit code {completed.returncode}; see "
                           f"{folder / 'output.log'}:\n{completed.stderr[-3000:]}")
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="passes over adult.data")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section instead of writing docs/benchmarks.md")
    args = parser.parse_args()

    base = {"train.epochs": args.epochs, "train.log-every-steps": 100000}
    variants = (
        ("single-process TensorFlow (1 worker, 0 PS, in process)", _LOCAL, {}),
        ("ML cluster, 1 worker + 1 PS", _CLUSTER, {"train.workers": 1, "train.ps": 1}),
        ("ML cluster, 2 workers + 2 PS", _CLUSTER, {"train.workers": 2, "train.ps": 2}),
    )
    work = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    load_before = load_average()
    rows = []
    try:
        for index, (name, script, overrides) in enumerate(variants):
            folder = work / str(index)
            folder.mkdir()
            result = run_variant(script, {**base, **overrides}, folder)
            seconds = result["last_step_at"] - result["first_step_at"]
            rate = result["examples"] / seconds if seconds > 0 else float("nan")
            first_step_s = result["first_step_at"] - result["started"]
            rows.append((name, rate, first_step_s, result.get("restarts", 0)))
            print(f"[train_throughput] {name}: {rate:,.0f} examples/s, first step after "
                  f"{first_step_s:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = load_average()

    baseline = rows[0][1]
    lines = [
        f"Written by `python -m bench.train_throughput --epochs {args.epochs}` on "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: the census model on the "
        f"32,561 rows of adult.data, {args.epochs} epochs, batch size 256, default "
        "configuration otherwise, one run per variant, each in a fresh process.",
        "",
        *machine_rows(),
        f"| load average before / after (1, 5, 15 min) | {load_before} / {load_after} |",
        "",
        "| variant | examples/s | against single process | train call to first step |",
        "| --- | --- | --- | --- |",
    ]
    for name, rate, first_step_s, restarts in rows:
        note = f" ({restarts} restarts)" if restarts else ""
        lines.append(f"| {name}{note} | {rate:,.0f} | {rate / baseline:.2f} | "
                     f"{first_step_s:.1f} s |")
    lines += [
        "",
        "examples/s counts the examples of every worker between the first and the "
        "last training step of any worker, so start-up is outside it; the last "
        "column is that start-up: loading the data, the Flink job, the node "
        "processes, TensorFlow's import and the session. On 2 cores the nodes, "
        "the Flink task manager and its Python process share the same cores, so "
        "these figures show the cluster's overhead, not how it scales. A load "
        "average well above the core count means other work shared the cores.",
    ]
    body = "\n".join(lines)
    if args.no_write:
        print(body)
    else:
        write_section(HEADING, body)
        print(f"[train_throughput] wrote the section {HEADING!r} of docs/benchmarks.md")


if __name__ == "__main__":
    main()
