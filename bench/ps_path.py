"""The PS scoring path against the JVM scoring path, on one export in one run.

`python -m bench.ps_path` trains (or reuses) an export of
`models.census_hashed_ctr` with a 2^22 x 16 embedding table partitioned
over 2 parameter servers. It then scores the same input on both paths of
`pyscoring.deploy.deploy`, alternating the paths over `--rounds` rounds,
and writes the section "PS path against the JVM path" of docs/benchmarks.md.

Every run is one deploy job in a fresh PyFlink process (this module with
`--run-job SPEC`), so neither path inherits a warm JVM or a metrics
registry from the other. This process measures each run from outside:

- rows/s: it reads the job's Prometheus targets file and scrapes every
  endpoint every `SAMPLE_INTERVAL_S` seconds for `pyscoring_predictions_total`
  of the run's path. The steady window runs from the first sample at or
  above 10 % of the input rows to the first sample at or above 90 %;
- latency: p50 and p99 of `pyscoring_prediction_latency_seconds` over the
  same window, from the difference of the scrapes at its two ends;
- CPU: the cores that this process's descendants used in the window
  (bench.pipelines.CpuSampler). They are the run's process, its JVM and,
  on the PS path, the worker and parameter-server node processes. In the
  mini cluster the run's process also runs PyFlink's Python operators
  (loopback mode).

The export is cached in build/bench-cache/hashed-ctr-<key>/, where the key
hashes the training settings, the model, training and export sources, the
data files and the TensorFlow and Flink versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from bench._sections import load_average, machine_rows, write_section

ROOT = Path(__file__).resolve().parents[1]
CACHE_ROOT = ROOT / "build" / "bench-cache"
WORK = ROOT / "build" / "bench" / "ps-path"
HEADING = "PS path against the JVM path"

MODEL = "models.census_hashed_ctr"
TABLE_ROWS = 2**22
TRAIN_WORKERS = 2
TRAIN_PS = 2
TRAIN_EPOCHS = 1
TRAIN_BATCH_SIZE = 512
TRAIN_TIMEOUT_S = 1800

# Files whose content decides the trained model and its export.
CACHE_KEY_GLOBS = (
    "models/census_hashed_ctr.py",
    "models/census_wide_deep.py",
    "pyscoring/census.py",
    "pyscoring/config.py",
    "pyscoring/evaluation.py",
    "pyscoring/export.py",
    "pyscoring/manifest.py",
    "pyscoring/training/*.py",
    "pyscoring/cluster/*.py",
)

SAMPLE_INTERVAL_S = 0.5
WINDOW_START_SHARE = 0.10
WINDOW_END_SHARE = 0.90
# Ports of the runs' Prometheus endpoints, apart from those of bench.run and bench.soak.
METRICS_PORT_RANGE = "9420-9439"
RUN_TIMEOUT_S = 1800
PATHS = ("jvm", "ps")


def log(message: str) -> None:
    print(f"[ps_path {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- export


def train_command(export_dir: Path, checkpoint_dir: Path) -> list[str]:
    """Return the `pyscoring train` arguments of the benchmark's export."""
    return [
        "train", "--model", MODEL,
        "--set", f"train.model-params={json.dumps({'table_rows': TABLE_ROWS})}",
        "--workers", str(TRAIN_WORKERS), "--ps", str(TRAIN_PS), "--epochs", str(TRAIN_EPOCHS),
        "--set", f"train.batch-size={TRAIN_BATCH_SIZE}",
        "--export-dir", str(export_dir), "--checkpoint-dir", str(checkpoint_dir),
    ]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key() -> tuple[str, dict]:
    """Return the export's cache key and the inputs it hashes."""
    sources = sorted({path for pattern in CACHE_KEY_GLOBS for path in ROOT.glob(pattern)})
    data = ROOT / "data" / "adult"
    inputs = {
        "train": train_command(Path("EXPORT"), Path("CHECKPOINTS")),
        "sources": {str(path.relative_to(ROOT)): _sha256_file(path) for path in sources},
        "data": {name: _sha256_file(data / name) for name in ("adult.data", "adult.test")},
        "tensorflow": metadata.version("tensorflow-cpu"),
        "flink": metadata.version("apache-flink"),
    }
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], inputs


def prepare_export() -> tuple[Path, dict, bool]:
    """Return the cached export's version folder and manifest, training it first if needed.

    The third value is True when this call trained the export.
    """
    from pyscoring import manifest

    key, inputs = cache_key()
    folder = CACHE_ROOT / f"hashed-ctr-{key}"
    export_dir = folder / "exports"
    version = manifest.latest_version(export_dir) if export_dir.is_dir() else None
    if version is not None:
        version_dir = Path(manifest.version_path(export_dir, version))
        log(f"reusing the cached export {version_dir}")
        return version_dir, manifest.read_manifest(version_dir), False

    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-hashed-ctr-{key}-", dir=CACHE_ROOT))
    try:
        (temporary / "cache-key.json").write_text(json.dumps(inputs, indent=1) + "\n")
        command = [sys.executable, "-m", "pyscoring.cli",
                   *train_command(temporary / "exports", temporary / "checkpoints")]
        log(f"training {MODEL} with a {TABLE_ROWS} x 16 table on {TRAIN_WORKERS} workers and "
            f"{TRAIN_PS} PS into {temporary}")
        started = time.monotonic()
        with open(temporary / "train.log", "w", encoding="utf-8") as output:
            completed = subprocess.run(command, cwd=ROOT, stdout=output,
                                       stderr=subprocess.STDOUT, timeout=TRAIN_TIMEOUT_S)
        if completed.returncode != 0:
            raise RuntimeError(f"pyscoring train failed with exit code {completed.returncode}; "
                               f"see {temporary / 'train.log'}")
        log(f"trained in {time.monotonic() - started:.0f} s")
        # Each checkpoint contains the tables and their Adagrad accumulators, and the
        # benchmark reads only the export.
        for checkpoint in (temporary / "checkpoints").glob("model.ckpt-*"):
            checkpoint.unlink()
        os.rename(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    version = manifest.latest_version(export_dir)
    if version is None:
        raise RuntimeError(f"pyscoring train exited with 0 but {export_dir} has no version")
    version_dir = Path(manifest.version_path(export_dir, version))
    return version_dir, manifest.read_manifest(version_dir), True


# ---------------------------------------------------------------- one run, in its own process


def run_job(spec: dict) -> dict:
    """Deploy one scoring job as `spec` describes and wait for its end; return its times.

    Runs in the process started with `--run-job`; TensorFlow Java and the
    PS path's nodes start below it.
    """
    import logging

    from pyscoring import deploy
    from pyscoring.config import Config

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = Config(spec["config"])
    request = deploy.DeployRequest(
        model_dir=Path(spec["model_dir"]), output_dir=Path(spec["output_dir"]),
        input_path=Path(spec["input"]), sink_options={"connector": "blackhole"}, config=config)
    started = time.monotonic()
    job = deploy.deploy(request)
    submitted = time.monotonic()
    try:
        if not job.wait(timeout_s=RUN_TIMEOUT_S):
            raise TimeoutError(f"job {job.job_id} ran longer than {RUN_TIMEOUT_S} s")
        ended = time.monotonic()
    finally:
        job.cancel()
        job.targets_writer.clear()
    return {"job_id": job.job_id, "deploy_s": submitted - started, "job_s": ended - submitted}


def _run_job_main(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM from the parent cancels the job in run_job's finally block.
    signal.signal(signal.SIGTERM, on_sigterm)
    result = run_job(spec)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- sampling from outside


def _targets(targets_file: Path) -> list[str]:
    try:
        groups = json.loads(targets_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return sorted({target for group in groups for target in group.get("targets", [])})


class CounterSampler:
    """Scrapes every endpoint of a job's targets file every SAMPLE_INTERVAL_S seconds.

    Each sample is a dict: the monotonic time in ns ("t_ns"), the
    predictions counter, the cumulative latency buckets by bound, and the
    sums and counts of the batch-size and batch-latency histograms. Every
    value is summed over the endpoints and series of one scoring path.
    Endpoints that do not respond are skipped, because they close when the
    job ends.
    """

    def __init__(self, targets_file: Path, path_label: str):
        self.targets_file = targets_file
        self.labels = {"path": path_label}
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counter-sampler", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _scrape(self) -> dict | None:
        from pyscoring.metrics import (
            LATENCY_METRIC, counter_total, histogram_buckets, histogram_sum_count, scrape,
        )

        sample = None
        for target in _targets(self.targets_file):
            try:
                families = scrape(target, timeout_s=2.0)
            except OSError:
                continue
            predictions = families.get("pyscoring_predictions")
            if predictions is None or not any(
                    item.labels.get("path") == self.labels["path"] for item in predictions.samples):
                continue
            if sample is None:
                sample = {"targets": [], "predictions": 0.0, "latency_buckets": {},
                          "batch_rows": 0.0, "batches": 0.0, "batch_seconds": 0.0}
            batch_rows, batches = histogram_sum_count(
                families["pyscoring_batch_size"], self.labels)
            batch_seconds, _ = histogram_sum_count(
                families["pyscoring_batch_latency_seconds"], self.labels)
            sample["targets"].append(target)
            sample["predictions"] += counter_total(predictions, self.labels)
            sample["batch_rows"] += batch_rows
            sample["batches"] += batches
            sample["batch_seconds"] += batch_seconds
            for bound, count in histogram_buckets(families[LATENCY_METRIC], self.labels):
                sample["latency_buckets"][bound] = sample["latency_buckets"].get(bound, 0.0) + count
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self._scrape()
            if sample is not None:
                sample["t_ns"] = time.monotonic_ns()
                self.samples.append(sample)
            self._stop.wait(SAMPLE_INTERVAL_S)


def steady_window(samples: list[dict], total_rows: int) -> tuple[dict, dict] | None:
    """Return the samples that open and close the steady window, or None without enough samples."""
    start = next((sample for sample in samples
                  if sample["predictions"] >= WINDOW_START_SHARE * total_rows), None)
    end = next((sample for sample in samples
                if sample["predictions"] >= WINDOW_END_SHARE * total_rows), None)
    if start is None or end is None or end["t_ns"] <= start["t_ns"]:
        return None
    return start, end


def measure(samples: list[dict], total_rows: int, cpu) -> dict:
    """Return rows/s, latency quantiles, batch figures and CPU of the steady window."""
    from pyscoring.metrics import histogram_quantile

    window = steady_window(samples, total_rows)
    result: dict = {"samples": len(samples),
                    "predictions_seen": max((s["predictions"] for s in samples), default=0)}
    first_scored = next((sample for sample in samples if sample["predictions"] > 0), None)
    if first_scored is not None:
        result["first_score_ns"] = first_scored["t_ns"]
    if window is None:
        return result
    start, end = window
    seconds = (end["t_ns"] - start["t_ns"]) / 1e9
    rows = end["predictions"] - start["predictions"]
    before = start["latency_buckets"]
    buckets = [(bound, count - before.get(bound, 0.0))
               for bound, count in sorted(end["latency_buckets"].items())]
    batches = end["batches"] - start["batches"]
    result.update(
        window_s=seconds, window_rows=rows, rows_per_second=rows / seconds,
        p50_ms=histogram_quantile(0.5, buckets) * 1e3,
        p99_ms=histogram_quantile(0.99, buckets) * 1e3,
        mean_batch=(end["batch_rows"] - start["batch_rows"]) / batches if batches else None,
        mean_batch_ms=(end["batch_seconds"] - start["batch_seconds"]) / batches * 1e3
        if batches else None,
        cpu_cores=cpu.cores_between(start["t_ns"], end["t_ns"]),
    )
    return result


def run_once(path: str, round_index: int, version_dir: Path, input_dir: Path, total_rows: int,
             config: dict) -> dict:
    """Run one deploy job on `path` in a new process and measure it from this one."""
    from bench.pipelines import CpuSampler

    output_dir = WORK / f"round-{round_index}-{path}"
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    targets_file = output_dir / "prometheus-targets.json"
    spec = {"model_dir": str(version_dir), "output_dir": str(output_dir), "input": str(input_dir),
            "config": {**config, "scoring.path": path,
                       "metrics.targets-file": str(targets_file)}}
    spec_file = output_dir / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=1) + "\n")
    command = [sys.executable, "-m", "bench.ps_path", "--run-job", str(spec_file)]
    log(f"round {round_index}: {path} path")
    with CpuSampler() as cpu, CounterSampler(targets_file, path) as counter, \
            open(output_dir / "deploy.log", "w", encoding="utf-8") as log_file:
        started_ns = time.monotonic_ns()
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file,
                                 text=True)
        try:
            stdout, _ = child.communicate(timeout=RUN_TIMEOUT_S + 120)
        except subprocess.TimeoutExpired:
            child.terminate()
            stdout, _ = child.communicate(timeout=120)
        ended_ns = time.monotonic_ns()
    record = {"path": path, "round": round_index, "process_s": (ended_ns - started_ns) / 1e9,
              "exit_code": child.returncode}
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if child.returncode != 0 or not lines:
        record["error"] = (f"the run exited with {child.returncode}; see "
                           f"{output_dir / 'deploy.log'}")
        log(f"  FAILED: {record['error']}")
        return record
    record.update(json.loads(lines[-1][len("RESULT "):]))
    record.update(measure(counter.samples, total_rows, cpu))
    if "first_score_ns" in record:
        record["first_score_s"] = (record.pop("first_score_ns") - started_ns) / 1e9
    if "rows_per_second" in record:
        log(f"  {record['rows_per_second']:,.0f} rows/s, p50 {record['p50_ms']:.2f} ms, "
            f"p99 {record['p99_ms']:.2f} ms, {record['cpu_cores'] or float('nan'):.2f} cores, "
            f"window {record['window_s']:.1f} s, job {record['job_s']:.1f} s")
    else:
        record["error"] = (f"no steady window: {record['samples']} samples, at most "
                           f"{record['predictions_seen']:.0f} of {total_rows} rows seen")
        log(f"  FAILED: {record['error']}")
    return record


# ---------------------------------------------------------------- report


def spread(values: list) -> dict | None:
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def formatted(stats: dict | None, digits: int, unit: str = "", thousands: bool = False) -> str:
    if stats is None:
        return "n/a"
    style = f",.{digits}f" if thousands else f".{digits}f"
    return (f"{stats['median']:{style}}{unit} ({stats['min']:{style}}–{stats['max']:{style}}, "
            f"n={stats['n']})")


def formatted_ratio(stats: dict | None) -> str:
    if stats is None:
        return "n/a"
    return f"{stats['median']:.2f}x ({stats['min']:.2f}x–{stats['max']:.2f}x, n={stats['n']})"


def per_round_ratio(records: list[dict], field: str) -> dict | None:
    """Spread over rounds of the PS run's `field` divided by the JVM run's of the same round."""
    ratios = []
    for round_index in sorted({record["round"] for record in records}):
        pair = {record["path"]: record.get(field) for record in records
                if record["round"] == round_index}
        if pair.get("ps") and pair.get("jvm"):
            ratios.append(pair["ps"] / pair["jvm"])
    return spread(ratios)


def _micros_per_row(record: dict) -> float | None:
    if not record.get("cpu_cores") or not record.get("rows_per_second"):
        return None
    return record["cpu_cores"] / record["rows_per_second"] * 1e6


def section(results: dict) -> str:
    records = [record for record in results["runs"] if "rows_per_second" in record]
    failed = [record for record in results["runs"] if "rows_per_second" not in record]
    model = results["manifest"]
    training = model["training"]
    settings = results["settings"]
    loads = [value for _, value in results["load_samples"]]
    tf_java = results["tensorflow_java"]

    def path_spread(path: str, field) -> dict | None:
        values = [field(record) if callable(field) else record.get(field)
                  for record in records if record["path"] == path]
        return spread(values)

    out = [
        f"Written by `{results['command']}` on {results['started_at']}; the run took "
        f"{results['duration_s'] / 60:.1f} min, training included"
        + (" (the export was trained in this run)." if results["trained"]
           else " (the export came from the cache, so no training ran)."),
        "Each figure is the median of the rounds with the spread (min–max) and the number of "
        "runs n.",
        "",
        "### Machine and load",
        "",
        *machine_rows(),
        f"| Java | {results['java']} |",
        f"| Flink (PyFlink) | {results['flink']}, jars from `{results['flink_lib_dir']}` |",
        f"| TensorFlow Python / Java | {results['tensorflow_python']} / TensorFlow Java "
        f"{tf_java} |",
        f"| load average before / after (1, 5, 15 min) | {results['loadavg_before']} / "
        f"{results['loadavg_after']} |",
        f"| 1-min load average during the run, every 10 s | median {statistics.median(loads):.1f}, "
        f"min {min(loads):.1f}, max {max(loads):.1f} |" if loads else None,
        "",
        "### Setup",
        "",
        f"- Model: `{MODEL}` version {model['version']}, trained by `pyscoring "
        f"{shlex.join(train_command(Path('EXPORT_DIR'), Path('CHECKPOINT_DIR')))}` "
        f"({training['global_step']} global steps). Its hashed embedding table has "
        f"{TABLE_ROWS:,} x 16 floats and the linear table {TABLE_ROWS:,} x 1, each in "
        f"{model['variables'].get('ps_shards')} slices, {model['variables']['bytes'] / 2**20:.0f} "
        f"MiB of variables in all. ROC AUC on adult.test from the manifest: "
        f"{training['metrics']['auc']:.4f}.",
        f"- Input: the {results['chunk_rows']:,} rows of `adult.test` in {results['copies']} hard "
        f"links, {results['input_rows']:,} rows, the same folder for every run.",
        "- Job: `pyscoring.deploy.deploy` with the `pyscoring-lines` source, `pyscoring_parse`, "
        "a `blackhole` scores table and the file dead-letter sink; parallelism 1, checkpoints "
        f"every {settings['deploy.checkpoint-interval-ms'] / 1000:g} s, "
        f"`scoring.max-batch-size` {settings['scoring.max-batch-size']} and "
        f"`scoring.max-batch-delay-ms` {settings['scoring.max-batch-delay-ms']} on both paths. "
        "JVM path: `scoring.path=jvm`, TensorFlow Java in the task manager. PS path: "
        f"`scoring.path=ps` with {settings['scoring.ps.parameter-servers']} parameter-server "
        f"nodes, which restore the variables from the export, and "
        f"{settings['scoring.ps.workers']} Python worker node.",
        f"- Rounds: {results['rounds']}, the JVM path first in odd rounds and the PS path first "
        "in even rounds. Every run is a new PyFlink process (`python -m bench.ps_path "
        "--run-job`), so both paths start with a cold JVM.",
        "- Rows/s is measured from outside the job: the benchmark reads the job's "
        "Prometheus targets file and scrapes every endpoint listed there every "
        f"{SAMPLE_INTERVAL_S:g} s for `pyscoring_predictions_total` of the run's path. The "
        f"steady window runs from the first scrape at or above {WINDOW_START_SHARE:.0%} of the "
        f"input rows to the first at or above {WINDOW_END_SHARE:.0%}, so start-up, the PS "
        "cluster's restore and the drain are outside it.",
        "- p50 and p99 are `pyscoring_prediction_latency_seconds` over the steady window: the "
        "difference of the scrapes at its two ends, interpolated within the buckets as "
        "PromQL's `histogram_quantile()` does. Mean batch and batch time come from "
        "`pyscoring_batch_size` and `pyscoring_batch_latency_seconds` over the same window.",
        "- The two paths start their latency clock at different points. The JVM path "
        "(`BatchScorer.score`) records, per row, the time from the row entering "
        "`PredictFunction.eval` to the end of its batch's TensorFlow call. That includes the "
        "wait for the batch to fill or for the delay, and the wait behind a running batch. "
        "The PS path (`ScoringWorkerFunction.flat_map1`) records, for every row of a "
        "batch, the same value: the time from the batch reaching the Python operator to the "
        "worker node's response. That covers the record channel to the node and the "
        "TensorFlow call, with its reads from the parameter servers. It leaves out the time "
        "rows wait in the Java `batch-rows` operator and the hand-over from the JVM to "
        "the Python operator, so PS-path latencies are lower bounds next to the JVM path's.",
        "- CPU is the mean number of cores that the benchmark's descendants used in the "
        "window, from /proc. They are the run's process, its JVM and, on the PS path, the "
        "worker and parameter-server node processes. In the mini cluster the run's process "
        "also runs PyFlink's Python operators (loopback mode). CPU per row is cores over "
        "rows/s. On a "
        "machine shared with other work the kernel shares the cores per runnable thread, so "
        "the PS path, with more processes, can get more of them; CPU per row depends less "
        "on that than rows/s.",
        "",
        "### Results",
        "",
        "| | JVM path | PS path | PS / JVM, per round |",
        "| --- | --- | --- | --- |",
        f"| rows/s | {formatted(path_spread('jvm', 'rows_per_second'), 0, thousands=True)} | "
        f"{formatted(path_spread('ps', 'rows_per_second'), 0, thousands=True)} | "
        f"{formatted_ratio(per_round_ratio(records, 'rows_per_second'))} |",
        f"| p50 | {formatted(path_spread('jvm', 'p50_ms'), 2, ' ms')} | "
        f"{formatted(path_spread('ps', 'p50_ms'), 2, ' ms')} | |",
        f"| p99 | {formatted(path_spread('jvm', 'p99_ms'), 2, ' ms')} | "
        f"{formatted(path_spread('ps', 'p99_ms'), 2, ' ms')} | "
        f"{formatted_ratio(per_round_ratio(records, 'p99_ms'))} |",
        f"| CPU cores | {formatted(path_spread('jvm', 'cpu_cores'), 2)} | "
        f"{formatted(path_spread('ps', 'cpu_cores'), 2)} | |",
        f"| CPU per row | {formatted(path_spread('jvm', _micros_per_row), 1, ' µs')} | "
        f"{formatted(path_spread('ps', _micros_per_row), 1, ' µs')} | |",
        f"| mean batch (rows) | {formatted(path_spread('jvm', 'mean_batch'), 1)} | "
        f"{formatted(path_spread('ps', 'mean_batch'), 1)} | |",
        f"| mean batch time | {formatted(path_spread('jvm', 'mean_batch_ms'), 2, ' ms')} | "
        f"{formatted(path_spread('ps', 'mean_batch_ms'), 2, ' ms')} | |",
        "",
        "The last column divides the PS run's figure by the JVM run's of the same round, "
        "so load that changes between rounds hits both sides of each ratio.",
        "",
        "Every run:",
        "",
        "| round | path | rows/s | p50 | p99 | CPU cores | mean batch | steady window | "
        "first score after | job |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in results["runs"]:
        if "rows_per_second" not in record:
            out.append(f"| {record['round']} | {record['path']} | failed: "
                       f"{record.get('error', 'unknown')} | | | | | | | |")
            continue
        cores = record.get("cpu_cores")
        out.append(
            f"| {record['round']} | {record['path']} | {record['rows_per_second']:,.0f} | "
            f"{record['p50_ms']:.2f} ms | {record['p99_ms']:.2f} ms | "
            + (f"{cores:.2f}" if cores is not None else "n/a")
            + f" | {record['mean_batch']:.1f} | {record['window_s']:.1f} s | "
            f"{record['first_score_s']:.1f} s | {record['job_s']:.1f} s |")
    out += [
        "",
        "\"First score after\" runs from the start of the run's process to the first scrape "
        "with a scored row; \"job\" from the job's submission to its end, which on the PS path "
        "is the draining savepoint after the input ends.",
    ]
    if failed:
        out += ["", f"{len(failed)} of {len(results['runs'])} runs failed and are left out of "
                "the medians."]
    return "\n".join(line for line in out if line is not None) + "\n"


# ---------------------------------------------------------------- main


def tensorflow_java_version() -> str:
    from pyscoring._internal import flink_env

    jars = sorted(flink_env.flink_lib_dir().glob("tensorflow-core-api-*.jar"))
    if not jars:
        return "unknown"
    return jars[0].name.removeprefix("tensorflow-core-api-").removesuffix(".jar")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ps_path",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each path, alternating")
    parser.add_argument("--copies", type=int, default=20,
                        help="hard links of adult.test's 16,281 rows in the input folder; "
                        "raise it until the faster path scores for at least 20 s")
    parser.add_argument("--batch-size", type=int, default=256, help="scoring.max-batch-size")
    parser.add_argument("--batch-delay-ms", type=int, default=5, help="scoring.max-batch-delay-ms")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section instead of writing docs/benchmarks.md")
    parser.add_argument("--run-job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_job:
        return _run_job_main(args.run_job)

    from bench import data as bench_data
    from bench.run import LoadSampler, machine_info

    started = time.monotonic()
    arguments = sys.argv[1:] if argv is None else argv
    # The environment variable is part of the command when it chose the jars.
    lib_dir = os.environ.get("PYSCORING_FLINK_LIB_DIR")
    prefix = [f"PYSCORING_FLINK_LIB_DIR={lib_dir}"] if lib_dir else []
    results: dict = {
        "command": " ".join([*prefix, "python -m bench.ps_path", *arguments]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_before": load_average(), "rounds": args.rounds, "copies": args.copies,
    }
    machine = machine_info()
    from pyscoring._internal import flink_env

    results.update(java=machine["java"], flink=machine["flink"],
                   tensorflow_python=machine["tensorflow_python"],
                   tensorflow_java=tensorflow_java_version(),
                   flink_lib_dir=str(flink_env.flink_lib_dir()))
    sampler = LoadSampler()
    sampler.start()
    try:
        version_dir, model, trained = prepare_export()
        results.update(manifest=model, trained=trained, version_dir=str(version_dir))
        log(f"export {version_dir}: {model['variables']['bytes'] / 2**20:.0f} MiB of variables, "
            f"ROC AUC {model['training']['metrics']['auc']:.4f}")

        WORK.mkdir(parents=True, exist_ok=True)
        chunk = WORK / "adult-test.csv"
        chunk_rows = bench_data.census_chunk(chunk)
        input_dir = WORK / "input"
        input_rows = bench_data.linked_folder(chunk, chunk_rows, chunk_rows * args.copies,
                                              input_dir)
        results.update(chunk_rows=chunk_rows, input_rows=input_rows)
        settings = {
            "deploy.parallelism": 1,
            "deploy.checkpoint-interval-ms": 5000,
            "scoring.max-batch-size": args.batch_size,
            "scoring.max-batch-delay-ms": args.batch_delay_ms,
            "scoring.ps.parameter-servers": 2,
            "scoring.ps.workers": 1,
            "metrics.port-range": METRICS_PORT_RANGE,
        }
        results["settings"] = settings

        runs = []
        for round_index in range(1, args.rounds + 1):
            order = PATHS if round_index % 2 else tuple(reversed(PATHS))
            for path in order:
                runs.append(run_once(path, round_index, version_dir, input_dir, input_rows,
                                     settings))
        results["runs"] = runs
    finally:
        sampler.stop()
    results["loadavg_after"] = load_average()
    results["load_samples"] = sampler.samples
    results["duration_s"] = time.monotonic() - started
    (WORK / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    log(f"took {results['duration_s'] / 60:.1f} min; results in {WORK / 'results.json'}")

    body = section(results)
    if args.no_write:
        print(body)
    else:
        write_section(HEADING, body)
        log(f"wrote the section {HEADING!r} of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
