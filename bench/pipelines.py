"""Run benchmark jobs on PyFlink's local mini cluster and measure them from the sink.

`python -m bench.pipelines SPEC.json` runs the jobs that SPEC lists, one
after another in this process's gateway JVM, and prints one line
`RESULT <json>` per job. bench.run starts one such process per pipeline
kind, so a kind's first job warms the JVM for the next ones and the Python
TensorFlow of the UDF kinds stays in PyFlink's Python workers.

Every job is the deploy job (pyscoring/deploy.py: pyscoring-lines source,
pyscoring_parse, the scoring view behind a DataStream round trip, a scores
sink and a dead-letter sink, blackhole connectors), with the scoring query
swapped per kind:

- noop: constant outputs, no model (the pipeline's ceiling);
- jvm: pyscoring_predict, the JVM path;
- pandas / row: a vectorized or per-row Python UDF calling Python TensorFlow.

The scores sink calls `bench_probe` (io.pyscoring.bench.ThroughputProbe),
which records when rows reach it. Throughput is measured between the times
at which 10 % and 90 % of the rows had arrived, so job startup, warm-up and
the drain at the end are outside that window. CPU use is sampled from
/proc over the same window, for the JVM and every Python worker.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from pyscoring import deploy, manifest
from pyscoring.config import Config
from pyscoring.metrics import (
    LATENCY_METRIC, counter_total, histogram_buckets, histogram_sum_count, scrape,
)

from bench import data as bench_data

_VALID_VIEW_PREFIX = "CREATE TEMPORARY VIEW pyscoring_valid AS "
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def input_format(model_kind: str) -> deploy.InputFormat:
    if model_kind == "census":
        return deploy.CENSUS_FORMAT
    return deploy.InputFormat(tuple((name, "FLOAT") for name in bench_data.MLP_COLUMNS), ",")


# ---------------------------------------------------------------- CPU sampling


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    result, stack = [], [root]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            result.append(child)
            stack.append(child)
    return result


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of /proc/PID/stat (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuSampler:
    """Samples the CPU seconds used by each descendant of this process, 4 times a second."""

    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.samples: list[tuple[int, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            pids = _descendants(os.getpid())
            self.samples.append((time.monotonic_ns(), {pid: _cpu_seconds(pid) for pid in pids}))
            self._stop.wait(self.interval_s)

    def cores_between(self, start_ns: int, end_ns: int) -> float | None:
        """Return the mean cores used in [start_ns, end_ns], from the nearest samples inside."""
        inside = [sample for sample in self.samples if start_ns <= sample[0] <= end_ns]
        if len(inside) < 2:
            return None
        (t0, first), (t1, last) = inside[0], inside[-1]
        used = sum(last[pid] - first.get(pid, 0.0) for pid in last if pid in first)
        return used / ((t1 - t0) / 1e9)


# ---------------------------------------------------------------- probe files


def read_probes(folder: Path) -> dict:
    """Merge the probe files of one job into rows, window throughput and latencies."""
    files = [json.loads(path.read_text()) for path in sorted(folder.glob("probe-*.json"))]
    if not files:
        raise RuntimeError(f"no probe files in {folder}: no row reached the scores sink")
    rows = sum(item["rows"] for item in files)
    events = sorted(mark for item in files for mark in item["marks"])
    step = files[0]["mark_every"]
    result = {
        "rows": rows,
        "subtasks": len(files),
        "first_ns": min(item["first_nanos"] for item in files),
        "last_ns": max(item["last_nanos"] for item in files),
    }
    total_marked = len(events) * step
    if len(events) >= 10:
        low = events[int(len(events) * 0.1)]
        high = events[int(len(events) * 0.9) - 1]
        marked = (int(len(events) * 0.9) - int(len(events) * 0.1)) * step
        result.update(window_start_ns=low, window_end_ns=high,
                      rows_per_second=marked / ((high - low) / 1e9))
    else:
        # Too few rows for marks: the window runs from the first to the last row.
        result.update(window_start_ns=result["first_ns"], window_end_ns=result["last_ns"],
                      rows_per_second=rows / max(1e-9, (result["last_ns"] - result["first_ns"]) / 1e9))
    result["marked_rows"] = total_marked
    latencies = []
    for item in files:
        values = item["latency_nanos"]
        latencies.extend(values[len(values) // 5:])
    if latencies:
        latencies.sort()
        result["stamp_latency_ms"] = {
            f"p{q:g}": latencies[min(len(latencies) - 1, int(len(latencies) * q / 100))] / 1e6
            for q in (50, 90, 95, 99, 99.9)
        }
        # (fraction, ms) points of the CDF: evenly spaced, then denser in the tail.
        fractions = [i / 200 for i in range(200)] + [0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0]
        result["stamp_latency_cdf"] = [
            (fraction, latencies[min(len(latencies) - 1, int(len(latencies) * fraction))] / 1e6)
            for fraction in fractions
        ]
        result["stamp_latency_rows"] = len(latencies)
    return result


# ---------------------------------------------------------------- latency scrape


def _scrape_latency(targets_dir: Path, model_name: str, warmup_s: float, window_s: float,
                    out: dict, stop: threading.Event) -> None:
    """Scrape the JVM endpoint once warmed up and again `window_s` later; store the difference."""
    labels = {"model": model_name}
    target = None
    while not stop.is_set():
        files = sorted(targets_dir.glob("*.json")) if targets_dir.is_dir() else []
        if files:
            target = json.loads(files[0].read_text())["target"]
            try:
                families = scrape(target)
                if counter_total(families.get("pyscoring_predictions"), labels) > 0:
                    break
            except (OSError, AttributeError, TypeError):
                pass
        stop.wait(0.5)
    if stop.wait(warmup_s) or target is None:
        return
    before = scrape(target)
    if stop.wait(window_s):
        return
    after = scrape(target)
    first = dict(histogram_buckets(before[LATENCY_METRIC], labels))
    buckets = [(bound, count - first.get(bound, 0.0))
               for bound, count in histogram_buckets(after[LATENCY_METRIC], labels)]
    out["buckets"] = buckets
    out["window_s"] = window_s
    out["rows"] = buckets[-1][1] if buckets else 0
    out["target"] = target


# ---------------------------------------------------------------- scorer totals

# Cumulative totals of the JVM's scorer metrics after the previous job: the
# endpoint and its registry outlive a job, so a job's share is a difference.
_previous_totals: dict[str, float] = {}


def scorer_totals(targets_dir: Path, model_name: str) -> dict | None:
    """Return what the scorer did during the last job, from the difference of two scrapes.

    `batch_seconds` is the time the batcher thread spent in BatchScorer.score
    (tensor building, the TensorFlow call and completing the rows), so
    `batch_seconds / rows` is the scorer's cost per row.
    """
    files = sorted(targets_dir.glob("*.json")) if targets_dir.is_dir() else []
    if not files:
        return None
    families = scrape(json.loads(files[0].read_text())["target"])
    labels = {"model": model_name}
    batch_seconds, batches = histogram_sum_count(families["pyscoring_batch_latency_seconds"], labels)
    batch_rows, _ = histogram_sum_count(families["pyscoring_batch_size"], labels)
    totals = {"batch_seconds": batch_seconds, "batches": batches, "rows": batch_rows}
    key = model_name
    previous = {name[len(key) + 1:]: value for name, value in _previous_totals.items()
                if name.startswith(key + "|")}
    _previous_totals.update({f"{key}|{name}": value for name, value in totals.items()})
    delta = {name: value - previous.get(name, 0.0) for name, value in totals.items()}
    if delta["rows"] <= 0:
        return None
    delta["seconds_per_row"] = delta["batch_seconds"] / delta["rows"]
    delta["mean_batch"] = delta["rows"] / delta["batches"] if delta["batches"] else None
    return delta


# ---------------------------------------------------------------- one job


def _scoring_query(kind: str, scoring_query: str, model: dict, feature_columns: list[str],
                   environment, version_dir: Path) -> str:
    outputs = model["signature"]["outputs"]
    aliases = [f"out_{index}" for index in range(len(outputs))]
    tail = ("CAST(1 AS BIGINT) AS model_version, CAST(NULL AS STRING) AS score_error_code, "
            "CAST(NULL AS STRING) AS score_error FROM pyscoring_valid AS v")
    if kind == "jvm":
        return scoring_query
    if kind == "noop":
        constants = ", ".join(f"CAST(0.5 AS FLOAT) AS {alias}" for alias in aliases)
        return f"SELECT v.source, v.`key`, v.line, {constants}, {tail}"
    from bench.udfs import tensorflow_udf

    inputs = [(tensor["name"], tensor["dtype"]) for tensor in model["signature"]["inputs"]]
    scorer = tensorflow_udf(str(version_dir), inputs, outputs[0]["name"], vectorized=kind == "pandas")
    environment.create_temporary_function("bench_tf_udf", scorer)
    arguments = ", ".join(f"v.`{column}`" for column in feature_columns)
    others = "".join(f", CAST(NULL AS FLOAT) AS {alias}" for alias in aliases[1:])
    return f"SELECT v.source, v.`key`, v.line, bench_tf_udf({arguments}) AS out_0{others}, {tail}"


def plan_input(job: dict, measured: dict[str, float], work_dir: Path, index: int) -> dict:
    """Size the job's input and its source rate; return the settings chosen.

    A job gives `chunk` (a file) and `chunk_rows`, and either `rows` or
    `seconds` of output at `expect_rate` rows/s (replaced by the measured
    rate of the job labelled `rate_of` when that ran earlier in this
    process). With `rate_fraction` the source is throttled to that fraction
    of the rate, so `seconds` is also the length of the run.
    """
    rate = job.get("expect_rate", 10_000.0)
    if job.get("rate_of") in measured:
        rate = measured[job["rate_of"]]
    plan = {"expected_rate": rate}
    if "rate_fraction" in job:
        rate *= job["rate_fraction"]
        plan["source_rate"] = round(rate, 1)
    rows = job.get("rows") or int(rate * job.get("seconds", 10.0))
    rows = max(rows, job.get("min_rows", 1))
    folder = work_dir / f"input-{index:03d}"
    plan["rows"] = bench_data.linked_folder(Path(job["chunk"]), job["chunk_rows"], rows, folder)
    plan["input"] = str(folder)
    return plan


def run_job(job: dict, work_dir: Path, index: int, measured_rates: dict[str, float]) -> dict:
    """Run one job of the spec and return its measurements."""
    kind = job["kind"]
    plan = plan_input(job, measured_rates, work_dir, index)
    job = {**job, "input": plan["input"]}
    if "source_rate" in plan:
        job["config"] = {**job.get("config", {}), "source.rows-per-second": plan["source_rate"]}
    version_dir = deploy.resolve_version_dir(Path(job["model_dir"]))
    model = manifest.read_manifest(version_dir)
    job_dir = work_dir / f"job-{index:03d}-{kind}"
    probe_dir = job_dir / "probe"
    targets_file = job_dir / "prometheus-targets.json"
    overrides = {"deploy.checkpoint-interval-ms": 5000, "metrics.port-range": "9380-9399",
                 "metrics.targets-file": str(targets_file), **job.get("config", {})}
    config = Config(overrides)
    fmt = input_format(job["model_kind"])
    request = deploy.DeployRequest(
        model_dir=version_dir, output_dir=job_dir, input_path=Path(job["input"]),
        input_format=fmt, sink_options={"connector": "blackhole"}, config=config,
    )
    ddl, scoring_query, inserts = deploy.build_statements(request, version_dir.resolve(), model)
    settings = deploy.flink_settings(config, f"bench {kind} {job.get('label', '')}", targets_file)
    settings.update({
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    })
    settings.update(job.get("flink", {}))
    environment = deploy.create_table_environment(settings)
    environment.create_java_temporary_function("bench_probe", "io.pyscoring.bench.ThroughputProbe")
    environment.create_java_temporary_function("bench_stamp", "io.pyscoring.bench.StampKey")
    if job.get("stamp"):
        # The scoring query reads source, key, line and the feature columns of
        # pyscoring_valid; the key becomes the time the row passed this view.
        valid = [index for index, statement in enumerate(ddl)
                 if statement.startswith(_VALID_VIEW_PREFIX)]
        if len(valid) != 1:
            raise RuntimeError("deploy.build_statements no longer creates one pyscoring_valid "
                               "view; update bench/pipelines.py to match")
        ddl[valid[0]] = ddl[valid[0]].replace(_VALID_VIEW_PREFIX,
                                              "CREATE TEMPORARY VIEW bench_valid AS ", 1)
        columns = ", ".join(f"`{name}`" for name in fmt.names)
        ddl.insert(valid[0] + 1, (
            f"{_VALID_VIEW_PREFIX}SELECT source, bench_stamp() AS `key`, line, {columns} "
            "FROM bench_valid"))
    for statement in ddl:
        environment.execute_sql(statement)
    feature_columns = deploy.map_features(model, fmt)
    query = _scoring_query(kind, scoring_query, model, feature_columns, environment, version_dir)
    deploy.register_scored_view(environment, query)

    outputs = model["signature"]["outputs"]
    sink_columns = ", ".join(
        ["`key` STRING"] + [f"`{tensor['name']}` FLOAT" for tensor in outputs]
        + ["model_version BIGINT", "probe BOOLEAN"])
    environment.execute_sql(
        f"CREATE TEMPORARY TABLE bench_scores ({sink_columns}) WITH ('connector' = 'blackhole')")
    selected = ", ".join(f"out_{i} AS `{tensor['name']}`" for i, tensor in enumerate(outputs))
    statements = environment.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO bench_scores SELECT `key`, {selected}, model_version, "
        f"bench_probe('{probe_dir}', `key`) FROM pyscoring_scored WHERE score_error_code IS NULL")
    statements.add_insert_sql(inserts[1])

    latency: dict = {}
    stop = threading.Event()
    scraper = None
    if job.get("scrape_latency"):
        scraper = threading.Thread(
            target=_scrape_latency,
            args=(Path(f"{targets_file}.d"), model["model_name"], job.get("scrape_warmup_s", 5.0),
                  job.get("scrape_window_s", 10.0), latency, stop),
            daemon=True)
    with CpuSampler() as sampler:
        started = time.monotonic_ns()
        result = statements.execute()
        if scraper:
            scraper.start()
        result.wait()
        ended = time.monotonic_ns()
        stop.set()
        if scraper:
            scraper.join()
    measured = read_probes(probe_dir)
    measured.update(
        kind=kind, label=job.get("label", ""), model=model["model_name"],
        job_seconds=(ended - started) / 1e9,
        startup_seconds=(measured["first_ns"] - started) / 1e9,
        config=overrides, flink=job.get("flink", {}), plan=plan,
    )
    if "window_start_ns" in measured:
        measured["cpu_cores"] = sampler.cores_between(
            measured["window_start_ns"], measured["window_end_ns"])
    if latency:
        measured["scrape"] = latency
    if kind == "jvm":
        scorer = scorer_totals(Path(f"{targets_file}.d"), model["model_name"])
        if scorer:
            measured["scorer"] = scorer
            # Share of the measuring window the batcher thread spent scoring.
            measured["scorer_busy"] = measured["rows_per_second"] * scorer["seconds_per_row"]
    return measured


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    work_dir = Path(spec["work_dir"])
    work_dir.mkdir(parents=True, exist_ok=True)
    rates: dict[str, float] = {}
    for index, job in enumerate(spec["jobs"]):
        try:
            measured = run_job(job, work_dir, index, rates)
            rates[job.get("label", "")] = measured["rows_per_second"]
        except Exception as error:  # noqa: BLE001 - one failed job is reported, the rest still run
            measured = {"kind": job["kind"], "label": job.get("label", ""), "error": repr(error)}
        measured["warmup"] = bool(job.get("warmup"))
        measured["spec"] = {key: job[key] for key in ("kind", "model_kind", "label", "group")
                            if key in job}
        print("RESULT " + json.dumps(measured), flush=True)


if __name__ == "__main__":
    main()
