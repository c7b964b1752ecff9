"""Soak run of the JVM path: score at a steady rate and watch the JVM's resident memory.

`python -m bench.soak [--minutes 10] [--rate 10000]` deploys the census model
with `pyscoring/deploy.py` on a looping `pyscoring-lines` source throttled
to `--rate` rows/s, with blackhole sinks, for `--minutes`. Every
`--interval` seconds it records the resident set size (VmRSS) of the JVM
that PyFlink started as a child of this process. That JVM hosts the local
mini cluster, so it is the task manager. After the run it writes
bench/soak-result.json, which bench.report puts on docs/benchmarks.md. Not
part of CI: it takes the full duration.

Growth after warm-up is (RSS at the end - RSS at the end of warm-up) / RSS
at the end of warm-up; the goal is below 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = Path(__file__).resolve().parent / "soak-result.json"


def child_java_pid() -> int | None:
    """Return the pid of a java process whose parent is this process, if any."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and name == "java":
            return int(entry)
    return None


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    count = len(points)
    if count < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / count
    mean_v = sum(v for _, v in points) / count
    numerator = sum((t - mean_t) * (v - mean_v) for t, v in points)
    denominator = sum((t - mean_t) ** 2 for t, _ in points)
    return numerator / denominator * 60 if denominator else 0.0


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="minutes before the RSS baseline is taken")
    parser.add_argument("--rate", type=float, default=10_000.0, help="source rows per second")
    parser.add_argument("--batch-size", type=int, default=64, help="scoring.max-batch-size")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--java-opts", default="",
                        help="extra options of the JVM, appended to env.java.opts.all")
    args = parser.parse_args()

    from bench import run as bench_run
    from pyscoring import deploy, manifest
    from pyscoring.config import Config
    from pyscoring.metrics import counter_total, scrape

    models = bench_run.prepare(quick=False)
    census = models["census"]
    if args.java_opts:
        conf = bench_run.flink_conf_dir("soak", args.java_opts.split())
        os.environ["FLINK_CONF_DIR"] = str(conf)
    output_dir = bench_run.WORK / "soak"
    if output_dir.exists():
        shutil.rmtree(output_dir)
    config = Config({
        "source.rows-per-second": args.rate,
        "source.loop": True,
        "scoring.max-batch-size": args.batch_size,
        "metrics.port-range": "9400-9419",
    })
    before = loadavg()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    version_dir = deploy.resolve_version_dir(Path(census["export"]))
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=version_dir, output_dir=output_dir, input_path=Path(census["chunk"]),
        sink_options={"connector": "blackhole"}, config=config,
    ))
    pid = child_java_pid()
    if pid is None:
        raise RuntimeError("found no java child process of this process; PyFlink's gateway "
                           "JVM should be one")
    model = manifest.read_manifest(version_dir)
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    scored = 0.0
    try:
        while time.monotonic() - start < args.minutes * 60:
            elapsed = time.monotonic() - start
            samples.append((elapsed, rss_mib(pid)))
            print(f"{elapsed:6.0f} s  RSS {samples[-1][1]:8.1f} MiB", flush=True)
            if job.done():
                raise RuntimeError("the soak job ended before the soak did")
            time.sleep(args.interval)
        targets = job.targets_writer.endpoints()
        if targets:
            scored = counter_total(scrape(targets[0])["pyscoring_predictions"],
                                   {"model": model["model_name"]})
    finally:
        job.cancel()
        job.targets_writer.stop()
    warmup_s = args.warmup_minutes * 60
    after = [(t, v) for t, v in samples if t >= warmup_s]
    warm = after[0][1]
    result = {
        "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
        "started_at": started_at,
        "model": model["model_name"],
        "rows_per_second": args.rate,
        "batch_size": args.batch_size,
        "java_opts": args.java_opts,
        "duration_s": samples[-1][0],
        "warmup_s": warmup_s,
        "sample_interval_s": args.interval,
        "jvm_pid": pid,
        "rows_scored": int(scored),
        "rss_start_mib": samples[0][1],
        "rss_warm_mib": warm,
        "rss_end_mib": after[-1][1],
        "rss_min_after_warmup_mib": min(v for _, v in after),
        "rss_max_after_warmup_mib": max(v for _, v in after),
        "growth_after_warmup": (after[-1][1] - warm) / warm,
        "slope_mib_per_min": slope_per_minute(after),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "samples": samples,
    }
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"RSS after warm-up {warm:.0f} MiB, at the end {after[-1][1]:.0f} MiB: "
          f"{result['growth_after_warmup']:+.1%}; wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
