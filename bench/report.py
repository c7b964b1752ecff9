"""Write the "## Scoring" section of docs/benchmarks.md and its charts from results.json.

`python -m bench.report [RESULTS]` redraws the page from build/bench/results.json
without running anything. Other sections of docs/benchmarks.md (other
benchmarks, under their own "## " headings) are kept as they are.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGE = DOCS / "benchmarks.md"
SOAK_RESULT = Path(__file__).resolve().parent / "soak-result.json"
THROUGHPUT_CHART = "scoring-throughput-vs-batch.png"
LATENCY_CHART = "scoring-latency-cdf.png"
MODEL_TITLES = {"census": "census wide-and-deep", "mlp": "MLP (8 float columns)"}
GOAL_SHARE = 0.70
GOAL_SPEEDUP = 5.0
GOAL_P99_MS = 10.0


# ---------------------------------------------------------------- statistics


def spread(values: list[float]) -> dict | None:
    values = [value for value in values if value is not None and not math.isnan(value)]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def rate(stats: dict | None) -> str:
    if stats is None:
        return "n/a"
    return (f"{stats['median']:,.0f} ({stats['min']:,.0f}–{stats['max']:,.0f}, "
            f"n={stats['n']})")


def number(stats: dict | None, digits: int = 2, unit: str = "") -> str:
    if stats is None:
        return "n/a"
    return (f"{stats['median']:.{digits}f}{unit} ({stats['min']:.{digits}f}–"
            f"{stats['max']:.{digits}f}, n={stats['n']})")


def side_row(name: str, records: list[dict]) -> str:
    """Format one row of a side-by-side table: rows/s, cores, and rows per CPU-second."""
    per_cpu = [record["rows_per_second"] / record["cpu_cores"] for record in records
               if record.get("cpu_cores")]
    return (f"| {name} | {rate(spread([r['rows_per_second'] for r in records]))} | "
            f"{number(spread([r.get('cpu_cores') for r in records]), 2)} | "
            f"{rate(spread(per_cpu))} |")


class Results:
    """Lookups over one results.json."""

    def __init__(self, results: dict):
        self.results = results
        self.pipelines = [record for record in results.get("pipelines", [])
                          if "error" not in record and not record.get("warmup")]
        self.raw = results.get("raw", [])

    def pipeline(self, model: str, label: str, field: str = "rows_per_second") -> dict | None:
        return spread([record.get(field) for record in self.pipelines
                       if record["model_kind"] == model and record["label"] == label])

    def pipeline_records(self, model: str, label: str) -> list[dict]:
        return [record for record in self.pipelines
                if record["model_kind"] == model and record["label"] == label]

    def raw_rate(self, model: str, runtime: str, batch: int, mode: str = "prebuilt",
                 javacpp_check: bool = False, field: str = "rows_per_second") -> dict | None:
        return spread([record[field] for record in
                       self.raw_records(model, runtime, batch, mode, javacpp_check)])

    def raw_records(self, model: str, runtime: str, batch: int, mode: str = "prebuilt",
                    javacpp_check: bool = False) -> list[dict]:
        return [
            record for record in self.raw
            if record["model_kind"] == model and record["runtime"] == runtime
            and record["batch_size"] == batch and record["mode"] == mode
            and not record.get("thread_check")
            and (runtime == "python" or record.get("javacpp_check", False) == javacpp_check)
        ]

    def raw_batches(self, model: str) -> list[int]:
        return sorted({record["batch_size"] for record in self.raw
                       if record["model_kind"] == model})

    def best_raw(self, model: str, runtime: str, mode: str = "prebuilt") -> tuple[int, dict]:
        candidates = [(batch, self.raw_rate(model, runtime, batch, mode))
                      for batch in self.raw_batches(model)]
        candidates = [item for item in candidates if item[1] is not None]
        return max(candidates, key=lambda item: item[1]["median"]) if candidates else (0, None)

    def sweep(self, model: str) -> list[tuple[int, dict]]:
        sizes = sorted({int(record["label"].removeprefix("jvm-b")) for record in self.pipelines
                        if record["model_kind"] == model
                        and re.fullmatch(r"jvm-b\d+", record["label"])})
        return [(size, self.pipeline(model, f"jvm-b{size}")) for size in sizes]

    def best_jvm(self, model: str) -> tuple[int, dict | None]:
        sweep = [item for item in self.sweep(model) if item[1] is not None]
        return max(sweep, key=lambda item: item[1]["median"]) if sweep else (0, None)

    def per_round_ratio(self, model: str, numerator: str, denominator,
                        per_cpu: bool = False) -> dict | None:
        """Spread of numerator / denominator over rounds, both from the same round.

        With `per_cpu`, each side is rows per CPU-second (rows/s over the cores used).
        """
        ratios = []
        for round_index in sorted({record.get("round") for record in self.pipelines
                                   if record.get("round") is not None}):
            def value(label):
                for record in self.pipelines:
                    if (record["model_kind"] == model and record["label"] == label
                            and record.get("round") == round_index):
                        if per_cpu:
                            cores = record.get("cpu_cores")
                            return record["rows_per_second"] / cores if cores else None
                        return record["rows_per_second"]
                return None
            top = value(numerator)
            bottom = denominator(value) if callable(denominator) else value(denominator)
            if top and bottom:
                ratios.append(top / bottom)
        return spread(ratios)


# ---------------------------------------------------------------- charts


def draw_throughput(results: Results, models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for axis, model in zip(axes[0], models):
        batches = results.raw_batches(model)
        lines = [
            ("TF Java, prebuilt tensors (b)", lambda b: results.raw_rate(model, "java", b)),
            ("TF Java, scorer's tensor building",
             lambda b: results.raw_rate(model, "java", b, "rebuild", javacpp_check=True)),
            ("TF Java, TString.tensorOf (before)",
             lambda b: results.raw_rate(model, "java", b, "rebuild-tfjava", javacpp_check=True)),
            ("Python TF, prebuilt arrays (b)", lambda b: results.raw_rate(model, "python", b)),
        ]
        for label, lookup in lines:
            points = [(b, lookup(b)) for b in batches]
            points = [(b, stats) for b, stats in points if stats]
            if points:
                axis.errorbar([b for b, _ in points], [s["median"] for _, s in points],
                              yerr=[[s["median"] - s["min"] for _, s in points],
                                    [s["max"] - s["median"] for _, s in points]],
                              marker="o", capsize=3, label=label)
        sweep = [(b, s) for b, s in results.sweep(model) if s]
        if sweep:
            axis.errorbar([b for b, _ in sweep], [s["median"] for _, s in sweep],
                          yerr=[[s["median"] - s["min"] for _, s in sweep],
                                [s["max"] - s["median"] for _, s in sweep]],
                          marker="s", capsize=3, linewidth=2.5, color="black",
                          label="JVM path end to end (c)")
        for label, style, name in (("no-op pipeline (a)", "--", "noop"),
                                   ("pandas UDF (d)", ":", "pandas"),
                                   ("per-row UDF (e)", "-.", "row")):
            stats = results.pipeline(model, name)
            if stats:
                axis.axhline(stats["median"], linestyle=style, color="gray", label=label)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size (rows per TensorFlow call)")
        axis.set_ylabel("rows per second")
        axis.set_title(MODEL_TITLES.get(model, model))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("Throughput against batch size (median, bars: min–max)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_latency(results: Results, models: list[str], path: Path) -> None:
    """Draw the per-row latency CDF (left) and its tail as 1 - CDF on a log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (axis, tail) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"census": "tab:blue", "mlp": "tab:orange"}
    longest = 0.0
    for model in models:
        for index, record in enumerate(results.pipeline_records(model, "latency")):
            points = record.get("stamp_latency_cdf")
            if points:
                fractions = [fraction for fraction, _ in points]
                cdf = [ms for _, ms in points]
                longest = max(longest, cdf[-1])
                label = f"{MODEL_TITLES.get(model, model)}, per row" if index == 0 else None
                axis.plot(cdf, fractions, color=colors.get(model), alpha=0.8, label=label)
                tail.plot(cdf[:-1], [1 - f for f in fractions[:-1]], color=colors.get(model),
                          alpha=0.8, label=label)
            buckets = record.get("scrape", {}).get("buckets")
            if buckets and buckets[-1][1] > 0:
                total = buckets[-1][1]
                finite = [(bound * 1000, count / total) for bound, count in buckets
                          if not math.isinf(bound) and bound * 1000 <= max(longest, 50.0) * 2]
                label = (f"{MODEL_TITLES.get(model, model)}, scorer histogram"
                         if index == 0 else None)
                axis.plot([b for b, _ in finite], [f for _, f in finite], linestyle="none",
                          marker="x", color=colors.get(model), label=label)
                tail.plot([b for b, f in finite if f < 1], [1 - f for _, f in finite if f < 1],
                          linestyle="none", marker="x", color=colors.get(model), label=label)
    for target in (axis, tail):
        target.axvline(GOAL_P99_MS, color="red", linestyle="--", label="10 ms")
        target.set_xscale("log")
        target.set_xlabel("latency (ms)")
        target.grid(True, which="both", alpha=0.3)
    axis.axhline(0.99, color="gray", linestyle=":", label="p99")
    tail.axhline(0.01, color="gray", linestyle=":", label="p99")
    tail.set_yscale("log")
    axis.set_ylabel("fraction of rows at or below")
    tail.set_ylabel("fraction of rows above (log)")
    axis.set_title("CDF")
    tail.set_title("tail")
    axis.legend(fontsize=7, loc="lower right")
    tail.legend(fontsize=7, loc="lower left")
    figure.suptitle("JVM path latency at half its maximum rate (batch 64, delay 5 ms)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- page


def latency_quantile(record: dict, quantile: float) -> float | None:
    from pyscoring.metrics import histogram_quantile

    buckets = record.get("scrape", {}).get("buckets")
    if not buckets or buckets[-1][1] == 0:
        return None
    return histogram_quantile(quantile, buckets) * 1000


def section(results: dict) -> str:
    data = Results(results)
    models = [model for model in ("census", "mlp") if model in results.get("models", {})]
    machine = results["machine"]
    loads = [load for _, load in results.get("load_samples", [])]
    load_stats = spread(loads)
    out = ["## Scoring", ""]
    out += [
        f"Written by `{results['command']}` (`bench/run.py`) on {results['started_at']}; the run "
        f"took {results['duration_s'] / 60:.1f} min. Every figure is the median of "
        f"{results['rounds']} runs (rounds for the pipelines, repeats in one process for "
        "TensorFlow alone) with the spread (min–max) and the number of runs n; throughput "
        "is in rows per second.",
        "",
        "### Machine and load",
        "",
        "| | |",
        "| --- | --- |",
        f"| cores | {machine['cores']} |",
        f"| memory | {machine['memory_gib']} GiB |",
        f"| CPU | {machine['cpu_model']} |",
        f"| Python | {machine['python']} |",
        f"| Java | {machine['java']} |",
        f"| Flink (PyFlink) | {machine['flink']} |",
        f"| TensorFlow Python / Java | {machine['tensorflow_python']} / "
        f"TensorFlow Java {machine['tensorflow_java']} |",
        f"| load average before / after (1, 5, 15 min) | {results['loadavg_before']} / "
        f"{results['loadavg_after']} |",
        "| 1-min load average during the run, every 10 s | "
        + (f"median {load_stats['median']:.1f}, min {load_stats['min']:.1f}, "
           f"max {load_stats['max']:.1f} |" if load_stats else "n/a |"),
        "",
    ]
    if load_stats and load_stats["median"] > machine["cores"] * 0.5:
        out += [
            f"The machine was busy: other work kept the load average near "
            f"{load_stats['median']:.1f} on {machine['cores']} cores during the run, so "
            "absolute rates are lower and noisier than on an idle machine. The goals are "
            "judged on ratios of figures taken in the same round, where that load hits "
            "both sides, and shown per CPU-second as well, because the kernel shares a busy "
            "machine per thread and so favors pipelines with more threads.",
            "",
        ]

    out += [
        "### Setup",
        "",
        "- Models: the census wide-and-deep export of `pyscoring train` (14 raw columns, 8 of "
        "them strings hashed in the graph) and `bench/mlp_export.py`, an MLP with hidden "
        "layers of 64 and 32 units on 8 float32 columns, random weights.",
        "- Rows: the 16,281 rows of `adult.test`, and 10,000 rows of 8 random floats, repeated "
        "through hard links until a run lasts about 6 s; the input is sized from the rate "
        "measured in the round before.",
        "- Pipelines (a), (c), (d), (e) are the deploy job (`pyscoring/deploy.py`): "
        "`pyscoring-lines` source, `pyscoring_parse`, the scoring view behind the DataStream "
        "round trip, the scores and dead-letter sinks as `blackhole` tables; only the "
        "scoring query differs. Parallelism 1, checkpoints every 5 s, exactly once.",
        "- Throughput is counted at the scores sink by `bench_probe` "
        "(`io.pyscoring.bench.ThroughputProbe`), between the moments 10 % and 90 % of the "
        "rows had arrived, so job startup, warm-up and the drain are outside the window. "
        "Each round runs a warm-up job in the same JVM first. CPU is the mean number of "
        "cores the JVM and the Python workers used in that window, from /proc.",
        "- (b) is a tight loop of SavedModel calls over prebuilt batches: "
        "`io.pyscoring.bench.RawTensorFlowBench` with `build/flink-lib` on the classpath, "
        "and `bench/raw_python.py` through a session callable. \"Built per call\" also "
        "fills the scorer's column buffers, builds the input tensors from them and boxes "
        "the outputs on every call, as the scorer does.",
        "- (d) and (e) are PyFlink Python UDFs (`bench/udfs.py`) in process mode that load "
        "the SavedModel with Python TensorFlow in `open` and return the first output; (d) "
        "gets Arrow batches of 1,000 rows. Their CPU includes the Python worker, a child "
        "of the JVM. The per-row UDF waits on the round trips between the JVM and Python "
        "more than it computes, so it used a small share of a core.",
        "- (f) The PS path is not part of this run: it is compared with the JVM path on a "
        "model with a large embedding table in the section \"PS path against the JVM path\" "
        "(`python -m bench.ps_path`).",
        "",
    ]

    # Side by side.
    out += ["### Side by side", ""]
    for model in models:
        best_batch, best = data.best_jvm(model)
        raw_batch, raw_java = data.best_raw(model, "java")
        out += [
            f"**{MODEL_TITLES[model]}**, parallelism 1:",
            "",
            "| | rows/s: median (min–max, n) | CPU cores | rows per CPU-second |",
            "| --- | --- | --- | --- |",
            side_row("(a) no-op pipeline", data.pipeline_records(model, "noop")),
            side_row(f"(b) TF Java, prebuilt batches of {raw_batch}",
                     data.raw_records(model, "java", raw_batch)),
            side_row(f"(b) TF Java, batches of {raw_batch} built per call as the scorer does",
                     data.raw_records(model, "java", raw_batch, "rebuild", javacpp_check=True)),
            side_row(f"(b) Python TF, prebuilt batches of {raw_batch}",
                     data.raw_records(model, "python", raw_batch)),
            side_row(f"(c) JVM path, batch {best_batch} (the best of the sweep)",
                     data.pipeline_records(model, f"jvm-b{best_batch}")),
            side_row(f"(c) JVM path, batch {DEFAULT_BATCH} (default)",
                     data.pipeline_records(model, f"jvm-b{DEFAULT_BATCH}"))
            if best_batch != DEFAULT_BATCH else None,
            side_row("(d) pandas UDF + Python TF", data.pipeline_records(model, "pandas")),
            side_row("(e) per-row UDF + Python TF", data.pipeline_records(model, "row")),
            "| (f) PS path | not measured here, see \"PS path against the JVM path\" | | |",
            "",
        ]
        out = [line for line in out if line is not None]
    out += [f"![Throughput against batch size]({THROUGHPUT_CHART})", ""]

    # Goals.
    out += ["### Goals", "",
            "Ratios of figures from the same round, median (min–max) over the rounds; (b) is "
            "the median of its own repeats in the same `make bench` run.", "",
            "| model | goal | measured | verdict | same ratio per CPU-second |",
            "| --- | --- | --- | --- | --- |"]
    goal_notes = []
    for model in models:
        best_batch, best = data.best_jvm(model)
        raw_batch, raw_java = data.best_raw(model, "java")
        label = f"jvm-b{best_batch}"
        raw_median = raw_java["median"] if raw_java else None

        raw_cpu = spread([record["rows_per_second"] / record["cpu_cores"]
                          for record in data.raw_records(model, "java", raw_batch)
                          if record.get("cpu_cores")])

        def ceiling(value, raw_median=raw_median):
            noop = value("noop")
            return min(noop, raw_median) if noop and raw_median else None

        def ceiling_cpu(value, raw_cpu=raw_cpu):
            noop = value("noop")
            return min(noop, raw_cpu["median"]) if noop and raw_cpu else None

        share = data.per_round_ratio(model, label, ceiling)
        speedup = data.per_round_ratio(model, label, "pandas")
        share_cpu = data.per_round_ratio(model, label, ceiling_cpu, per_cpu=True)
        speedup_cpu = data.per_round_ratio(model, label, "pandas", per_cpu=True)
        p99s = spread([latency_quantile(record, 0.99)
                       for record in data.pipeline_records(model, "latency")])
        for goal, stats, cpu_stats, target, fmt in (
            (f"(c) >= {GOAL_SHARE:.0%} of min((a), (b))", share, share_cpu, GOAL_SHARE, "{:.0%}"),
            (f"(c) >= {GOAL_SPEEDUP:g}x (d)", speedup, speedup_cpu, GOAL_SPEEDUP, "{:.2f}x"),
        ):
            if stats is None:
                out.append(f"| {model} | {goal} | n/a | not measured | |")
                continue

            def show(values, fmt=fmt):
                if values is None:
                    return "n/a"
                return (f"{fmt.format(values['median'])} ({fmt.format(values['min'])}–"
                        f"{fmt.format(values['max'])})")

            met = stats["median"] >= target
            verdict = "met" if met else f"missed by {1 - stats['median'] / target:.0%}"
            out.append(f"| {model} | {goal} | {show(stats)} | {verdict} | {show(cpu_stats)} |")
            if not met:
                goal_notes.append((model, goal, stats["median"], target))
        if p99s:
            met = p99s["median"] < GOAL_P99_MS
            verdict = "met" if met else f"missed by {p99s['median'] / GOAL_P99_MS - 1:.0%}"
            out.append(f"| {model} | scorer p99 < 10 ms at half the max rate, delay 5 ms | "
                       f"{number(p99s, 2, ' ms')} | {verdict} | |")
        else:
            out.append(f"| {model} | scorer p99 < 10 ms | n/a | not measured | |")
    out += ["", "(c) is the JVM path at the batch size with the highest median in the sweep "
            "below; min((a), (b)) takes (b) at its best batch size. The last column divides "
            "each side by the CPU cores it used in its window first, which takes out most of "
            "the effect of other load on the machine.", ""]

    # Latency.
    out += ["### Latency of the JVM path", "",
            "The source is throttled to half the rate the JVM path reached at batch 64 in the "
            "same round (`rows-per-second`), with `max-batch-size` 64 and `max-batch-delay-ms` "
            "5. \"Scorer\" is `pyscoring_prediction_latency_seconds` scraped from the task "
            "manager's endpoint at the start and the end of a window after 4 s of warm-up "
            "(the difference of the two scrapes, interpolated within the histogram's buckets "
            "as PromQL does); it runs from a row entering the batcher to its future's "
            "completion. The histogram has a bound at 10 ms, so a p99 below 10 ms means at "
            "least 99 % of the rows in the window took at most 10 ms, whatever the "
            "interpolation. \"Pipeline\" is per row, from the `pyscoring_valid` view (after "
            "parsing) to the scores sink, through the async operator and the DataStream round "
            "trip; the first 20 % of each run's rows are left out.", "",
            "| model | source rows/s | scorer p50 | scorer p99 | pipeline p50 | pipeline p99 "
            "| pipeline p99.9 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for model in models:
        records = data.pipeline_records(model, "latency")
        source_rates = spread([record.get("plan", {}).get("source_rate") for record in records])
        out.append(
            f"| {model} | {rate(source_rates)} | "
            f"{number(spread([latency_quantile(r, 0.5) for r in records]), 2, ' ms')} | "
            f"{number(spread([latency_quantile(r, 0.99) for r in records]), 2, ' ms')} | "
            + " | ".join(
                number(spread([r.get('stamp_latency_ms', {}).get(key) for r in records]), 2, " ms")
                for key in ("p50", "p99", "p99.9"))
            + " |")
    out += ["", f"![Latency CDF of the JVM path]({LATENCY_CHART})", ""]

    # Batch sweep.
    out += ["### Throughput against batch size", "",
            "JVM path end to end at each `scoring.max-batch-size` (in-flight limit twice the "
            "batch, delay 5 ms), next to TensorFlow Java and Python TensorFlow alone at the "
            "same batch size. \"Scorer's tensor building\" fills the scorer's own column "
            "buffers (`ColumnBuffer`) from boxed values and builds the tensors from them on "
            "every call, with JavaCPP as deployed (its physical-memory check on) unless the "
            "column says otherwise; `TString.tensorOf` is TensorFlow Java's string tensor path, "
            "which the scorer used for every string column before its small-string encoding. "
            "TensorFlow Java alone ran 1 s per repeat, 3 repeats.", ""]
    for model in models:
        out += [f"**{MODEL_TITLES[model]}**", "",
                "| batch | (c) JVM path | TF Java prebuilt | TF Java, scorer's tensor building "
                "| same, JavaCPP check off | TF Java, `TString.tensorOf` | Python TF prebuilt |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        sweep = dict(data.sweep(model))
        for batch in sorted(set(sweep) | set(data.raw_batches(model))):
            out.append(
                f"| {batch} | {rate(sweep.get(batch))} | "
                f"{rate(data.raw_rate(model, 'java', batch))} | "
                f"{rate(data.raw_rate(model, 'java', batch, 'rebuild', javacpp_check=True))} | "
                f"{rate(data.raw_rate(model, 'java', batch, 'rebuild'))} | "
                f"{rate(data.raw_rate(model, 'java', batch, 'rebuild-tfjava', True))} | "
                f"{rate(data.raw_rate(model, 'python', batch))} |")
        out.append("")

    # Parallelism.
    out += ["### Parallelism 1 against 2", "",
            "No target. CPU is the mean number of cores used by the JVM (and Python workers, "
            "none here) in the measuring window.", "",
            "| model | pipeline | p=1 rows/s | p=1 cores | p=2 rows/s | p=2 cores |",
            "| --- | --- | --- | --- | --- | --- |"]
    for model in models:
        for name, one, two in (("no-op", "noop", "noop-p2"),
                               ("JVM path, batch 256", "jvm-b256", "jvm-b256-p2")):
            out.append(
                f"| {model} | {name} | {rate(data.pipeline(model, one))} | "
                f"{number(data.pipeline(model, one, 'cpu_cores'), 2)} | "
                f"{rate(data.pipeline(model, two))} | "
                f"{number(data.pipeline(model, two, 'cpu_cores'), 2)} |")
    out.append("")

    # Settings the batching guide cites.
    guide = [("jvm-b256", "batch 256, in-flight 512 (2x, the default), delay 5 ms", None),
             ("jvm-b256-if1x", "batch 256, in-flight 256 (1x), delay 5 ms", None),
             ("latency", "batch 64, delay 5 ms, source at half the max rate", "latency"),
             ("latency-d0", "batch 64, delay 0, source at half the max rate", "latency"),
             ("trickle", "batch 64, delay 5 ms, source at 2,000 rows/s", "latency"),
             ("trickle-d0", "batch 64, delay 0, source at 2,000 rows/s", "latency")]
    out += ["### Settings for the batching guide", "",
            "JVM path, parallelism 1. Mean batch is rows over TensorFlow calls from the "
            "scorer's metrics; batcher busy is the share of the window the batcher thread "
            "spent in `BatchScorer.score`, estimated as rows/s times the job's mean scoring "
            "time per row.", "",
            "| model | settings | rows/s | mean batch | batcher busy | scorer p50 | "
            "scorer p99 | pipeline p99 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in models:
        for label, name, kind in guide:
            records = data.pipeline_records(model, label)
            if not records:
                continue
            out.append(
                f"| {model} | {name} | {rate(spread([r['rows_per_second'] for r in records]))} | "
                f"{number(spread([r.get('scorer', {}).get('mean_batch') for r in records]), 1)} | "
                f"{number(spread([r.get('scorer_busy') for r in records]), 2)} | "
                + (f"{number(spread([latency_quantile(r, 0.5) for r in records]), 2, ' ms')} | "
                   f"{number(spread([latency_quantile(r, 0.99) for r in records]), 2, ' ms')} | "
                   f"{number(spread([r.get('stamp_latency_ms', {}).get('p99') for r in records]), 2, ' ms')} |"
                   if kind else "| | |"))
    out.append("")

    # Thread options.
    thread_rows = [record for record in data.raw if record.get("thread_check")]
    if thread_rows:
        out += ["### TensorFlow thread options", "",
                "TensorFlow Java alone on census, prebuilt batches of 1,024, with the "
                "ConfigProto thread counts that `scoring.tensorflow.intra-op-threads` and "
                "`inter-op-threads` set:", "",
                "| intra-op / inter-op | rows/s | CPU cores | rows per CPU-second |",
                "| --- | --- | --- | --- |"]
        for intra, inter in ((1, 1), (0, 0)):
            rows = [record for record in thread_rows
                    if record["intra_op"] == intra and record["inter_op"] == inter]
            out.append(f"| {intra} / {inter} | "
                       f"{rate(spread([r['rows_per_second'] for r in rows]))} | "
                       f"{number(spread([r['cpu_cores'] for r in rows]), 2)} | "
                       f"{rate(spread([r['rows_per_second'] / r['cpu_cores'] for r in rows if r['cpu_cores']]))} |")
        out.append("")
    check = results.get("thread_check")
    if check:
        out += [f"Thread counts from `{check['command']}` ({check['started_at']}): TensorFlow "
                "Java alone on the MLP at batch 1,024, with the JVM's threads counted in the "
                "middle of the run (a thread is busy if it used more than 2.5 % of a core over "
                "2 s).", "",
                "| intra-op / inter-op | JVM threads | busy threads | rows/s per repeat | "
                "CPU cores per repeat |", "| --- | --- | --- | --- | --- |"]
        for run in check["runs"]:
            out.append(
                f"| {run['intra_op']} / {run['inter_op']} | {run['threads']} | "
                f"{run['busy_threads']} | "
                + ", ".join(f"{value:,.0f}" for value in run["rows_per_second"]) + " | "
                + ", ".join(f"{value:.2f}" for value in run["cpu_cores"]) + " |")
        out.append("")

    # Variants.
    variants = [("JVM path, batch 256, as deployed", "jvm-b256"),
                ("JVM path, batch 256, JavaCPP check off", "jvm-b256-nocheck"),
                ("same, plus `pipeline.object-reuse: true`", "jvm-b256-nocheck-reuse"),
                ("no-op pipeline, as deployed", "noop"),
                ("no-op pipeline, `pipeline.object-reuse: true`", "noop-reuse")]
    if data.pipeline("census", "jvm-b256-nocheck"):
        out += ["### Two settings outside the scorer (census)", "",
                "The rows marked \"as deployed\" come from the rounds above; the others ran "
                "in one extra PyFlink process started with "
                "`-Dorg.bytedeco.javacpp.maxPhysicalBytes=0` in `env.java.opts.all`.", "",
                "| configuration | rows/s | CPU cores | CPU per row |", "| --- | --- | --- | --- |"]
        for name, label in variants:
            records = data.pipeline_records("census", label)
            micros = spread([r["cpu_cores"] / r["rows_per_second"] * 1e6 for r in records
                             if r.get("cpu_cores")])
            out.append(f"| {name} | {rate(data.pipeline('census', label))} | "
                       f"{number(data.pipeline('census', label, 'cpu_cores'), 2)} | "
                       f"{number(micros, 1, ' µs')} |")
        out.append("")

    # Profile.
    profile = results.get("profile")
    if profile:
        out += ["### Profile of the JVM path", "",
                "JFR (`-XX:StartFlightRecording`, settings `profile`) over the warm-up and "
                "one measured job, census, batch 256, as deployed; summarized by "
                f"`bench/jfr_summary.py` over {profile['samples']} samples of working threads "
                "(Java and native samples; threads waiting in accept, epoll, park or sleep "
                "are left out).", "",
                "| thread | share of samples |", "| --- | --- |"]
        for name, share in profile["threads"][:6]:
            shown = f"`{name[:90]}`"
            if name == "Thread":
                # Py4J's gateway threads are named Thread-N; they plan and submit the jobs.
                shown = "`Thread-N` (Py4J gateway: planning and submitting the jobs)"
            out.append(f"| {shown} | {share:.0%} |")
        out += ["", "| frame (self) | share |", "| --- | --- |"]
        for frame, share in profile["self"][:12]:
            out.append(f"| `{frame}` | {share:.1%} |")
        out += ["", "| frame (total, selected) | share |", "| --- | --- |"]
        wanted = ("CopyingChainingOutput.pushToOperator", "StringDataSerializer.copy",
                  "ParseFunction.eval", "AsyncWaitOperator", "BatchScorer.score",
                  "ColumnBuffer", "TString.tensorOf", "TF_SessionRun", "PredictFunction.eval",
                  "BatchScorer.readOutput", "MicroBatcher.add", "LinesSourceReader.pollNext",
                  "physicalBytesInaccurate")
        for frame, share in profile["total"]:
            if any(key in frame for key in wanted):
                out.append(f"| `{frame}` | {share:.1%} |")
        out.append("")

    out += cost_table(data, models)
    out += analysis_section(results)
    out += [HOT_PATH, ""]
    out += soak_section()
    return "\n".join(out).rstrip() + "\n"


DEFAULT_BATCH = 64


def cost_table(data: Results, models: list[str]) -> list[str]:
    """CPU microseconds per row of each pipeline, from rows/s and the cores used."""

    def micros(records: list[dict]) -> dict | None:
        return spread([record["cpu_cores"] / record["rows_per_second"] * 1e6
                       for record in records if record.get("cpu_cores")])

    out = ["### CPU cost per row", "",
           "CPU time per row: the cores used in the measuring window divided by the rows per "
           "second, in microseconds. It depends much less than rows/s on how much of the "
           "machine other work left to the benchmark.", "",
           "| model | no-op pipeline (a) | JVM path (c) | pandas UDF (d) | TF Java prebuilt (b) "
           "| TF Java, scorer's tensor building |",
           "| --- | --- | --- | --- | --- | --- |"]
    for model in models:
        best_batch, _ = data.best_jvm(model)
        raw_batch, _ = data.best_raw(model, "java")
        out.append(
            f"| {model} | {number(micros(data.pipeline_records(model, 'noop')), 1, ' µs')} | "
            f"{number(micros(data.pipeline_records(model, f'jvm-b{best_batch}')), 1, ' µs')} "
            f"(batch {best_batch}) | "
            f"{number(micros(data.pipeline_records(model, 'pandas')), 1, ' µs')} | "
            f"{number(micros(data.raw_records(model, 'java', raw_batch)), 2, ' µs')} | "
            f"{number(micros(data.raw_records(model, 'java', raw_batch, 'rebuild', True)), 2, ' µs')} "
            f"(batch {raw_batch}) |")
    out.append("")
    return out

ANALYSIS_FILE = Path(__file__).resolve().parent / "analysis.md"


def analysis_section(results: dict) -> list[str]:
    """Return the hand-written analysis of bench/analysis.md, marked if it is of another run.

    Its first line names the run it was written for, as `run: <started_at>`.
    """
    if not ANALYSIS_FILE.exists():
        return []
    lines = ANALYSIS_FILE.read_text(encoding="utf-8").splitlines()
    written_for = lines[0].removeprefix("run: ").strip() if lines else ""
    body = lines[1:]
    if written_for != results["started_at"]:
        body = [f"NOTE: the analysis below was written for the run of {written_for}; its "
                "numbers come from that run, not from the tables on this page.", ""] + body
    return body + [""]


HOT_PATH = """### The Java hot path

Checked by reading the scorer and, where a number is given, by the tables above.

- **Input tensors.** Each numeric input is a primitive array per batch (`ColumnBuffer`),
  and the tensor is built with `tensorOf(shape, DataBuffers.of(array, true, false).slice(...))`,
  which copies the values once into the native tensor; there is no reflection over nested
  arrays. String inputs used TensorFlow Java's `TString.tensorOf`, which allocates one native
  buffer per value. The scorer now writes the 24-byte TF_TString structs of values up to
  22 UTF-8 bytes into a reused byte array and copies that once into the tensor
  (`ColumnBuffer.SmallStrings`, checked against TensorFlow's own reader when the class
  loads). A batch with a longer value takes the old path; in the census data only
  `Outlying-US(Guam-USVI-etc)` is longer. Compare "scorer's tensor building" with
  "`TString.tensorOf`" in the batch-size table.
- **Buffer reuse.** Each scoring subtask allocates three batch buffers of
  `max-batch-size` rows when it opens and rotates them; the column arrays and the struct
  array are reused from batch to batch.
- **Thread options.** `scoring.tensorflow.intra-op-threads` and `inter-op-threads` are set
  on the `ConfigProto` that `LoadedModel` loads the SavedModel with; the thread-options table
  measures their effect on TensorFlow Java alone.
- **Objects per row.** Beyond the row's future (created by Flink) the scorer creates the
  output `Row` with its field array, one boxed value per output, and the one-element list
  that completes the future. `BatchScorer.readOutput` boxes each output value into an
  `Object[]` per output and batch before it is put into the rows, so it adds no object per
  row beyond the boxes that `Row` needs anyway. It was not among the top frames of the
  profile, so it is unchanged.
"""


def soak_section() -> list[str]:
    if not SOAK_RESULT.exists():
        return ["### Soak", "", "No soak result yet: run `python -m bench.soak` (10 minutes).", ""]
    soak = json.loads(SOAK_RESULT.read_text())
    growth = soak["growth_after_warmup"]
    verdict = "met" if growth < 0.05 else f"missed by {growth / 0.05 - 1:.0%}"
    out = [
        "### Soak",
        "",
        f"`{soak['command']}` on {soak['started_at']}: the JVM path on {soak['model']} at "
        f"{soak['rows_per_second']:,.0f} rows/s for {soak['duration_s'] / 60:.1f} min "
        f"({soak['rows_scored']:,} rows scored), batch {soak['batch_size']}. The resident set "
        f"(RSS) of the JVM that hosts the mini cluster (pid {soak['jvm_pid']}) was sampled every "
        f"{soak['sample_interval_s']:g} s; warm-up is the first {soak['warmup_s'] / 60:.0f} min. "
        "The job is the deploy job on a looping `pyscoring-lines` source with blackhole sinks; "
        "the JVM ran with "
        + (f"`{soak['java_opts']}` added to " if soak.get("java_opts") else "")
        + "PyFlink's default options. "
        f"Load average before / after: {soak['loadavg_before']} / {soak['loadavg_after']}.",
        "",
        "| | RSS MiB |",
        "| --- | --- |",
        f"| at the end of warm-up | {soak['rss_warm_mib']:.0f} |",
        f"| minimum / maximum after warm-up | {soak['rss_min_after_warmup_mib']:.0f} / "
        f"{soak['rss_max_after_warmup_mib']:.0f} |",
        f"| at the end | {soak['rss_end_mib']:.0f} |",
        f"| growth after warm-up (end against warm) | {growth:+.1%} (goal < 5 %: {verdict}) |",
        f"| least-squares slope after warm-up | {soak['slope_mib_per_min']:+.2f} MiB/min |",
        "",
    ]
    return out


def write(results: dict) -> None:
    data = Results(results)
    models = [model for model in ("census", "mlp") if model in results.get("models", {})]
    DOCS.mkdir(exist_ok=True)
    draw_throughput(data, models, DOCS / THROUGHPUT_CHART)
    draw_latency(data, models, DOCS / LATENCY_CHART)
    text = section(results)
    if PAGE.exists():
        page = PAGE.read_text(encoding="utf-8")
        match = re.search(r"^## Scoring\n.*?(?=^## |\Z)", page, flags=re.S | re.M)
        if match:
            page = page[:match.start()] + text + ("\n" if page[match.end():] else "") + \
                page[match.end():]
        else:
            page = page.rstrip() + "\n\n" + text
    else:
        page = ("# Benchmarks\n\nMeasured numbers of pyscoring, each section with the command "
                "and the machine that produced it.\n\n" + text)
    PAGE.write_text(page, encoding="utf-8")


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "bench" / "results.json"
    write(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
