"""`make bench`: run the scoring benchmarks side by side and write docs/benchmarks.md.

Stages, all on the census wide-and-deep model and a small MLP:

1. Prepare: train the census export and export the MLP once (cached under
   build/bench/), write the input chunks.
2. Raw TensorFlow: io.pyscoring.bench.RawTensorFlowBench (TensorFlow Java,
   with Flink's lib folder on the classpath) and bench.raw_python (Python
   TensorFlow) over prebuilt batches, plus the thread-option check.
3. Rounds: every round starts one PyFlink process per model. It runs a
   warm-up job, then the no-op pipeline, the JVM path at each batch size,
   the pandas UDF, the per-row UDF, parallelism 2 and the latency runs at
   half the JVM path's measured rate. Kinds alternate within a round, so a
   change in machine load hits every kind of that round.
4. Profile: one more JVM-path run with a JFR recording, and the JVM path
   with JavaCPP's physical-memory check off and with object reuse.
5. Report: results go to build/bench/results.json, then bench.report writes
   the "## Scoring" section of docs/benchmarks.md and the charts.

`python -m bench.run --quick` runs one round on less data, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import data as bench_data
from pyscoring import census, manifest

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench"
FLINK_LIB = ROOT / "build" / "flink-lib"
CENSUS_COLUMNS = [column.name for column in census.COLUMNS]

# JavaCPP checks the process's physical memory (a read of /proc/self/statm)
# on every native allocation while maxPhysicalBytes > 0, and TensorFlow Java
# allocates once per string value it copies into a tensor.
JAVACPP_NO_PHYSICAL_CHECK = "-Dorg.bytedeco.javacpp.maxPhysicalBytes=0"

BATCH_SIZES = (1, 64, 256, 1024)
DEFAULT_BATCH = 64


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- preparation


def prepare(quick: bool) -> dict:
    """Export both models and write the input chunks; return their paths."""
    WORK.mkdir(parents=True, exist_ok=True)
    census_export = WORK / "census-export"
    if manifest.latest_version(census_export) is None:
        log("training the census model (about 10 s)")
        subprocess.run([sys.executable, "-m", "pyscoring.cli", "train", "--export-dir",
                        str(census_export)], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    mlp_export = WORK / "mlp-export"
    if manifest.latest_version(mlp_export) is None:
        log("exporting the MLP")
        subprocess.run([sys.executable, "-m", "bench.mlp_export", str(mlp_export)], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inputs = WORK / "inputs"
    inputs.mkdir(exist_ok=True)
    census_rows = bench_data.census_chunk(inputs / "census.csv")
    mlp_rows = bench_data.mlp_chunk(inputs / "mlp.csv", rows=10_000)
    return {
        "census": {"export": str(census_export), "chunk": str(inputs / "census.csv"),
                   "chunk_rows": census_rows, "columns": CENSUS_COLUMNS, "delimiter": ","},
        "mlp": {"export": str(mlp_export), "chunk": str(inputs / "mlp.csv"),
                "chunk_rows": mlp_rows, "columns": list(bench_data.MLP_COLUMNS),
                "delimiter": ","},
    }


def flink_conf_dir(name: str, extra_java_opts: list[str]) -> Path:
    """Copy PyFlink's conf/ with `extra_java_opts` appended to env.java.opts.all.

    PyFlink starts its gateway JVM, which hosts the local mini cluster and so
    the task manager, with the options of FLINK_CONF_DIR/config.yaml.
    """
    import pyflink
    from ruamel.yaml import YAML

    source = Path(pyflink.__file__).resolve().parent / "conf"
    target = WORK / "conf" / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    yaml = YAML()
    config_file = target / "config.yaml"
    config = yaml.load(config_file.read_text())
    options = config["env"]["java"]["opts"]
    options["all"] = " ".join([str(options["all"]), *extra_java_opts])
    with open(config_file, "w", encoding="utf-8") as handle:
        yaml.dump(config, handle)
    return target


# ---------------------------------------------------------------- machine


def machine_info() -> dict:
    cpu_model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as handle:
        memory_kib = int(handle.readline().split()[1])
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    from importlib import metadata

    tf_java = sorted(path.name for path in FLINK_LIB.glob("tensorflow-core-api-*.jar"))
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else "unknown",
        "flink": metadata.version("apache-flink"),
        "tensorflow_python": metadata.version("tensorflow-cpu"),
        "tensorflow_java": tf_java[0].removeprefix("tensorflow-core-api-").removesuffix(".jar")
        if tf_java else "unknown",
    }


class LoadSampler:
    """Records /proc/loadavg every 10 s while the benchmarks run."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set():
            with open("/proc/loadavg", encoding="ascii") as handle:
                self.samples.append((time.monotonic() - start, float(handle.read().split()[0])))
            self._stop.wait(10)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


def read_loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


# ---------------------------------------------------------------- raw TensorFlow


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def raw_java(model: dict, batch_sizes, modes: str, java_opts: list[str], seconds: float,
             repeats: int, intra: int = 0, inter: int = 0) -> list[dict]:
    command = [
        "java", *java_opts, "-cp", f"{FLINK_LIB}/*", "io.pyscoring.bench.RawTensorFlowBench",
        "--model", model["export"], "--data", model["chunk"], "--delimiter", model["delimiter"],
        "--columns", ",".join(model["columns"]),
        "--batch-sizes", ",".join(str(size) for size in batch_sizes),
        "--seconds", str(seconds), "--repeats", str(repeats), "--modes", modes,
        "--intra-op", str(intra), "--inter-op", str(inter),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return _json_lines(result.stdout)


def raw_python(model: dict, batch_sizes, seconds: float, repeats: int) -> list[dict]:
    command = [
        sys.executable, "-m", "bench.raw_python", "--model", model["export"],
        "--data", model["chunk"], "--delimiter", model["delimiter"],
        "--columns", ",".join(model["columns"]),
        "--batch-sizes", ",".join(str(size) for size in batch_sizes),
        "--seconds", str(seconds), "--repeats", str(repeats),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return _json_lines(result.stdout)


def run_raw(models: dict, quick: bool) -> list[dict]:
    seconds, repeats = (1.0, 1) if quick else (1.0, 3)
    sizes = (1, 64, 1024) if quick else (1, 64, 256, 1024)
    records = []
    for name, model in models.items():
        log(f"raw TensorFlow Java, {name}")
        # rebuild-tfjava differs from rebuild only for string inputs.
        modes = "prebuilt,rebuild,rebuild-tfjava" if name == "census" else "prebuilt,rebuild"
        for record in raw_java(model, sizes, modes, [JAVACPP_NO_PHYSICAL_CHECK], seconds, repeats):
            records.append({**record, "runtime": "java", "model_kind": name,
                            "javacpp_check": False})
        check_modes = "rebuild,rebuild-tfjava" if name == "census" else "rebuild"
        for record in raw_java(model, sizes[1:], check_modes, [], seconds, repeats):
            records.append({**record, "runtime": "java", "model_kind": name,
                            "javacpp_check": True})
        log(f"raw TensorFlow Python, {name}")
        for record in raw_python(model, sizes, seconds, repeats):
            records.append({**record, "runtime": "python", "model_kind": name})
    log("thread options: TensorFlow Java at intra-op 1 / inter-op 1")
    for intra, inter in ((1, 1), (0, 0)):
        for record in raw_java(models["census"], (1024,), "prebuilt", [JAVACPP_NO_PHYSICAL_CHECK],
                               seconds, repeats, intra, inter):
            records.append({**record, "runtime": "java", "model_kind": "census",
                            "javacpp_check": False, "thread_check": True})
    return records


# ---------------------------------------------------------------- pipelines


# Rough rows/s for sizing the first round's inputs; later rounds use the
# rates measured in the round before.
FIRST_GUESS = {
    ("census", "noop"): 40_000, ("census", "jvm"): 40_000, ("census", "pandas"): 40_000,
    ("census", "row"): 1_500,
    ("mlp", "noop"): 50_000, ("mlp", "jvm"): 60_000, ("mlp", "pandas"): 40_000,
    ("mlp", "row"): 2_000,
}


def round_jobs(model_kind: str, model: dict, rates: dict, quick: bool) -> list[dict]:
    """Return the jobs of one round for one model, in order."""
    seconds = 4.0 if quick else 6.0
    base = {"model_kind": model_kind, "model_dir": model["export"], "chunk": model["chunk"],
            "chunk_rows": model["chunk_rows"]}

    def job(label: str, kind: str, seconds_: float = seconds, **extra) -> dict:
        key = label if label in rates else kind
        expect = rates.get(key) or FIRST_GUESS[(model_kind, kind)]
        return {**base, "label": label, "kind": kind, "seconds": seconds_,
                "expect_rate": extra.pop("expect_rate", expect), **extra}

    jobs = [job("warmup", "jvm", 3.0, warmup=True, group="warmup",
                config={"scoring.max-batch-size": 256})]
    jobs.append(job("noop", "noop", group="side"))
    sizes = (DEFAULT_BATCH, 256) if quick else BATCH_SIZES
    for size in sizes:
        label = f"jvm-b{size}"
        jobs.append(job(label, "jvm", seconds if size >= 64 else seconds / 2, group="sweep",
                        config={"scoring.max-batch-size": size}))
    jobs.append(job("pandas", "pandas", group="side",
                    flink={"python.fn-execution.arrow.batch.size": "1000"}))
    jobs.append(job("row", "row", group="side", min_rows=model["chunk_rows"]))
    jobs.append(job("noop-p2", "noop", group="p2", rate_of="noop",
                    config={"deploy.parallelism": 2}))
    jobs.append(job("jvm-b256-p2", "jvm", group="p2", rate_of="jvm-b256",
                    config={"scoring.max-batch-size": 256, "deploy.parallelism": 2}))
    jobs.append(job("jvm-b256-if1x", "jvm", group="guide", rate_of="jvm-b256",
                    config={"scoring.max-batch-size": 256, "scoring.max-in-flight": 256}))
    latency_seconds = 12.0 if quick else 16.0
    for label, delay in (("latency", 5), ("latency-d0", 0)):
        jobs.append(job(label, "jvm", latency_seconds, group="latency",
                        rate_of=f"jvm-b{DEFAULT_BATCH}", rate_fraction=0.5, stamp=True,
                        scrape_latency=True, scrape_warmup_s=4.0,
                        scrape_window_s=latency_seconds - 8.0,
                        config={"scoring.max-batch-size": DEFAULT_BATCH,
                                "scoring.max-batch-delay-ms": delay}))
    if model_kind == "census" and not quick:
        # A slow, steady trickle: batches close on the delay, not on size.
        for label, delay in (("trickle", 5), ("trickle-d0", 0)):
            jobs.append(job(label, "jvm", 10.0, group="latency", expect_rate=2000.0,
                            rate_fraction=1.0, stamp=True, scrape_latency=True,
                            scrape_warmup_s=3.0, scrape_window_s=5.0,
                            config={"scoring.max-batch-size": DEFAULT_BATCH,
                                    "scoring.max-batch-delay-ms": delay}))
    return jobs


def run_pipelines(name: str, jobs: list[dict], conf_dir: Path | None = None) -> list[dict]:
    """Run `jobs` in one new PyFlink process; return their results."""
    work_dir = WORK / "jobs" / name
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    spec = work_dir / "spec.json"
    spec.write_text(json.dumps({"work_dir": str(work_dir), "jobs": jobs}, indent=1))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    if conf_dir is not None:
        environment["FLINK_CONF_DIR"] = str(conf_dir)
    with open(work_dir / "stderr.log", "w", encoding="utf-8") as stderr:
        result = subprocess.run([sys.executable, "-m", "bench.pipelines", str(spec)],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT,
                                env=environment)
    records = [json.loads(line[len("RESULT "):]) for line in result.stdout.splitlines()
               if line.startswith("RESULT ")]
    for record in records:
        if "error" in record:
            log(f"  {name} {record['label']}: FAILED {record['error'][:300]}")
        elif not record.get("warmup"):
            log(f"  {name} {record['label']}: {record['rows_per_second']:,.0f} rows/s")
    if result.returncode != 0:
        log(f"  {name}: the PyFlink process exited with {result.returncode}; see "
            f"{work_dir / 'stderr.log'}")
    # Probe files with per-row latencies are large; keep only the results.
    for folder in work_dir.glob("input-*"):
        shutil.rmtree(folder)
    return records


def run_rounds(models: dict, rounds: int, quick: bool) -> list[dict]:
    records = []
    rates: dict[str, dict] = {name: {} for name in models}
    for round_index in range(rounds):
        for name, model in models.items():
            log(f"round {round_index + 1}/{rounds}, {name}")
            jobs = round_jobs(name, model, rates[name], quick)
            for record in run_pipelines(f"round{round_index}-{name}", jobs):
                record["round"] = round_index
                record["model_kind"] = name
                records.append(record)
                if "rows_per_second" in record and not record.get("warmup"):
                    rates[name][record["label"]] = record["rows_per_second"]
    return records


def run_profile_and_variants(models: dict, quick: bool) -> tuple[list[dict], dict]:
    """JFR of the JVM path as deployed, and two variants of the JVM path on census."""
    model = models["census"]
    seconds = 4.0 if quick else 8.0
    base = {"model_kind": "census", "model_dir": model["export"], "chunk": model["chunk"],
            "chunk_rows": model["chunk_rows"], "expect_rate": 40_000, "seconds": seconds}
    recording = WORK / "jvm-path.jfr"
    if recording.exists():
        recording.unlink()
    log("profile: JVM path on census at batch 256 with JFR")
    conf = flink_conf_dir("jfr", ["-XX:+FlightRecorder",
                                  f"-XX:StartFlightRecording=filename={recording},settings=profile"])
    profiled = run_pipelines("profile", [
        {**base, "label": "warmup", "kind": "jvm", "warmup": True, "seconds": 3.0,
         "config": {"scoring.max-batch-size": 256}},
        {**base, "label": "jvm-b256-jfr", "kind": "jvm", "group": "profile",
         "config": {"scoring.max-batch-size": 256}},
    ], conf)
    summary = {}
    if recording.exists():
        from bench import jfr_summary

        summary = jfr_summary.summarize(jfr_summary.load_samples(str(recording)), top=25)
    repeats = 1 if quick else 3
    log("variants: JavaCPP check off, then also object reuse")
    conf = flink_conf_dir("javacpp", [JAVACPP_NO_PHYSICAL_CHECK])
    jobs = [{**base, "label": "warmup", "kind": "jvm", "warmup": True, "seconds": 3.0,
             "config": {"scoring.max-batch-size": 256}}]
    for repeat in range(repeats):
        jobs.append({**base, "label": "jvm-b256-nocheck", "kind": "jvm", "group": "variant",
                     "config": {"scoring.max-batch-size": 256}})
        jobs.append({**base, "label": "jvm-b256-nocheck-reuse", "kind": "jvm", "group": "variant",
                     "config": {"scoring.max-batch-size": 256},
                     "flink": {"pipeline.object-reuse": "true"}})
        jobs.append({**base, "label": "noop-reuse", "kind": "noop", "group": "variant",
                     "expect_rate": 150_000, "flink": {"pipeline.object-reuse": "true"}})
    variants = run_pipelines("variants", jobs, conf)
    for record in profiled + variants:
        record["model_kind"] = "census"
    return profiled + variants, summary


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="one round on less data")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of every pipeline figure")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds

    started = time.monotonic()
    results = {"command": "make bench" if not argv else "python -m bench.run " + " ".join(argv),
               "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "loadavg_before": read_loadavg(), "machine": machine_info(), "rounds": rounds}
    sampler = LoadSampler()
    sampler.start()
    log(f"load average before: {results['loadavg_before']}")
    models = prepare(args.quick)
    results["models"] = models
    results["raw"] = [] if args.skip_raw else run_raw(models, args.quick)
    if not args.skip_raw:
        log("thread options: thread counts of TensorFlow Java")
        from bench import thread_check

        mlp = models["mlp"]
        results["thread_check"] = thread_check.check(mlp["export"], mlp["chunk"], mlp["columns"])
    results["pipelines"] = run_rounds(models, rounds, args.quick)
    if not args.skip_profile:
        variants, profile = run_profile_and_variants(models, args.quick)
        results["pipelines"] += variants
        results["profile"] = profile
    sampler.stop()
    results["loadavg_after"] = read_loadavg()
    results["load_samples"] = sampler.samples
    results["duration_s"] = time.monotonic() - started
    log(f"load average after: {results['loadavg_after']}; took {results['duration_s'] / 60:.1f} min")
    results_file = WORK / "results.json"
    results_file.write_text(json.dumps(results, indent=1))

    from bench import report

    report.write(results)
    log(f"wrote {results_file}, docs/benchmarks.md and the charts in docs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
