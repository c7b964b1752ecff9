"""Record a demo scoring run and draw the panels of docs/grafana-dashboard.json from it.

Grafana is not packaged in Debian, so docs/grafana-dashboard.png is a matplotlib rendering,
not a Grafana screenshot: each panel's queries, as written in the dashboard JSON, are
evaluated in Python over the scrapes that `record` takes every second during the run.
`rate` uses the first and last sample in its window, without PromQL's extrapolation, and
`$__rate_interval` is 30 s.

    .venv/bin/python docs/render_grafana_dashboard.py record --model EXPORT_DIR --out DIR
    .venv/bin/python docs/render_grafana_dashboard.py render --recording DIR/scrapes.jsonl

`record` deploys the census model over synthetic census-shaped rows from Flink's datagen
connector, whose TIMESTAMP_LTZ column `event_time` is the time each row is generated, so
the end-to-end latency panel shows real latencies. One row in a hundred has a NULL
workclass and becomes a dead letter.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyscoring import deploy  # noqa: E402
from pyscoring.metrics import histogram_quantile, scrape  # noqa: E402

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
RATE_WINDOW_S = 30.0


# ---------------------------------------------------------------- record


# Runs the demo job in a child process through the Python API, which takes a
# TIMESTAMP_LTZ column in the source table's schema.
_DEPLOY_SCRIPT = """
import json, sys
from pathlib import Path
from pyscoring import deploy
from pyscoring.config import Config

arguments = json.loads(sys.argv[1])
job = deploy.deploy(deploy.DeployRequest(
    model_dir=Path(arguments["model"]),
    output_dir=Path(arguments["output"]),
    input_format=deploy.InputFormat(tuple(tuple(column) for column in arguments["columns"])),
    source_options=arguments["options"],
    config=Config(arguments["config"]),
))
try:
    job.wait()
finally:
    job.targets_writer.stop()
"""


def record(model: Path, out: Path, rows_per_second: int, seconds: int) -> Path:
    """Run the demo job and write one JSON line per scrape into OUT/scrapes.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    columns = [list(column) for column in deploy.CENSUS_FORMAT.columns]
    columns.append(["event_time", "TIMESTAMP_LTZ(3)"])
    options = {
        "connector": "datagen",
        "rows-per-second": str(rows_per_second),
        "number-of-rows": str(rows_per_second * seconds),
        "fields.workclass.null-rate": "0.01",
    }
    for name, sql_type in deploy.CENSUS_FORMAT.columns:
        if sql_type == "BIGINT":
            options[f"fields.{name}.min"] = "0"
            options[f"fields.{name}.max"] = "90"
        else:
            options[f"fields.{name}.length"] = "6"

    arguments = {
        "model": str(model.resolve()),
        "output": str(run_dir),
        "columns": columns,
        "options": options,
        "config": {"deploy.pass-through": "", "deploy.event-time-column": "event_time"},
    }

    log = open(out / "deploy.log", "w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", _DEPLOY_SCRIPT, json.dumps(arguments)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )

    recording = out / "scrapes.jsonl"
    targets_file = run_dir / "prometheus-targets.json"
    with open(recording, "w", encoding="utf-8") as sink:
        while process.poll() is None:
            started = time.time()
            targets = []
            if targets_file.is_file():
                for group in json.loads(targets_file.read_text(encoding="utf-8")):
                    targets += group["targets"]
            for target in targets:
                try:
                    families = scrape(target)
                except OSError as error:
                    print(f"scrape of {target} failed: {error}", file=sys.stderr)
                    continue
                samples = [
                    [sample.name, sample.labels, sample.value]
                    for family in families.values()
                    if family.name.startswith("pyscoring_")
                    for sample in family.samples
                ]
                sink.write(json.dumps({"t": started, "target": target, "samples": samples}) + "\n")
                sink.flush()
            time.sleep(max(0.0, 1.0 - (time.time() - started)))
    if process.returncode != 0:
        raise SystemExit(f"the demo deploy failed; see {out / 'deploy.log'}")
    return recording


# ---------------------------------------------------------------- evaluate the queries


class Recording:
    """Scraped samples by series: (sample name, labels with target) -> [(t, value)]."""

    def __init__(self, path: Path):
        self.series: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        self.times: list[float] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            scrape_ = json.loads(line)
            self.times.append(scrape_["t"])
            for name, labels, value in scrape_["samples"]:
                key = (name, tuple(sorted({**labels, "target": scrape_["target"]}.items())))
                self.series[key].append((scrape_["t"], value))
        self.times = sorted(set(self.times))

    def matching(self, name: str) -> list[tuple[dict, list[tuple[float, float]]]]:
        return [(dict(labels), points) for (sample, labels), points in self.series.items()
                if sample == name]


def _rate(points: list[tuple[float, float]], t: float, window: float, increase: bool) -> float | None:
    inside = [(ts, value) for ts, value in points if t - window < ts <= t]
    if len(inside) < 2:
        return None
    total = 0.0
    for (_, previous), (_, current) in zip(inside, inside[1:]):
        total += current - previous if current >= previous else current
    elapsed = inside[-1][0] - inside[0][0]
    return total if increase else total / elapsed


def _last(points: list[tuple[float, float]], t: float) -> float | None:
    before = [value for ts, value in points if t - 5.0 < ts <= t]
    return before[-1] if before else None


def _group(labels: dict, by: list[str]) -> tuple:
    return tuple((name, labels.get(name, "")) for name in by)


def _aggregate(recording, name, by, t, *, rate_window=None, increase=False, op=sum):
    groups: dict[tuple, list[float]] = defaultdict(list)
    for labels, points in recording.matching(name):
        if rate_window is not None:
            value = _rate(points, t, rate_window, increase)
        else:
            value = _last(points, t)
        if value is not None:
            groups[_group(labels, by)].append(value)
    return {group: op(values) for group, values in groups.items()}


def _window(text: str) -> float:
    if text == "$__rate_interval":
        return RATE_WINDOW_S
    number, unit = re.fullmatch(r"(\d+)([smh])", text).groups()
    return float(number) * {"s": 1, "m": 60, "h": 3600}[unit]


SELECTOR = r'\{model=~"\$model", version=~"\$version"\}'
FORMS = [
    ("quantile", re.compile(
        r"histogram_quantile\(([\d.]+), sum by \(le\) \(rate\((\w+)_bucket" + SELECTOR
        + r"\[([^\]]+)\]\)\)\)")),
    ("ratio", re.compile(
        r"sum\(rate\((\w+)" + SELECTOR + r"\[([^\]]+)\]\)\) / sum\(rate\((\w+)" + SELECTOR
        + r"\[([^\]]+)\]\)\)")),
    ("rate", re.compile(
        r"sum(?: by \(([\w, ]+)\) )?\((rate|increase)\((\w+)" + SELECTOR + r"\[([^\]]+)\]\)\)")),
    ("since", re.compile(r"time\(\) - max by \(([\w, ]+)\) \((\w+)" + SELECTOR + r"\)")),
    ("max", re.compile(r"max by \(([\w, ]+)\) \((\w+)" + SELECTOR + r"\)")),
    ("unrecorded", re.compile(r"sum by \(([\w, ]+)\) \((flink_\w+)\)")),
]


def evaluate(expr: str, recording: Recording, t: float) -> dict[tuple, float]:
    """Evaluate one dashboard query at time t; returns {label group: value}."""
    for form, pattern in FORMS:
        match = pattern.fullmatch(expr)
        if match is None:
            continue
        if form == "quantile":
            quantile, metric, window = match.groups()
            rates = _aggregate(recording, f"{metric}_bucket", ["le"], t, rate_window=_window(window))
            buckets = sorted((float(dict(group)["le"]), value) for group, value in rates.items())
            if not buckets or buckets[-1][1] <= 0:
                return {}
            return {(): histogram_quantile(float(quantile), buckets)}
        if form == "ratio":
            top, top_window, bottom, bottom_window = match.groups()
            numerator = _aggregate(recording, top, [], t, rate_window=_window(top_window))
            denominator = _aggregate(recording, bottom, [], t, rate_window=_window(bottom_window))
            if not numerator or not denominator or denominator[()] == 0:
                return {}
            return {(): numerator[()] / denominator[()]}
        if form == "rate":
            by, function, metric, window = match.groups()
            groups = [name.strip() for name in by.split(",")] if by else []
            return _aggregate(recording, metric, groups, t, rate_window=_window(window),
                              increase=function == "increase")
        if form == "since":
            by, metric = match.groups()
            latest = _aggregate(recording, metric, [n.strip() for n in by.split(",")], t, op=max)
            return {group: t - value for group, value in latest.items()}
        if form == "max":
            by, metric = match.groups()
            return _aggregate(recording, metric, [n.strip() for n in by.split(",")], t, op=max)
        if form == "unrecorded":
            return {}
    raise ValueError(f"the renderer does not evaluate the query {expr!r}; add its form to FORMS")


# ---------------------------------------------------------------- draw


def _legend(template: str, group: tuple) -> str:
    labels = dict(group)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), template) or "value"


def _format(value: float, unit: str | None) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "ops":
        return f"{value:.1f}/s"
    return f"{value:.3g}"


def render(recording_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    recording = Recording(recording_path)
    times = recording.times
    start = times[0]
    height_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    footer = 0.02
    figure = plt.figure(figsize=(18, height_units * 0.36))
    figure.patch.set_facecolor("#111217")

    def cell(grid: dict) -> tuple[float, float, float, float]:
        """Return the panel's rectangle in figure coordinates: left, bottom, width, height."""
        scale = (1 - footer) / height_units
        return (grid["x"] / 24, 1 - (grid["y"] + grid["h"]) * scale,
                grid["w"] / 24, grid["h"] * scale)

    def axes_for(grid: dict, title: str, ticks: bool):
        left, bottom, width, height = cell(grid)
        background = figure.add_axes([left + 0.003, bottom + 0.003, width - 0.006, height - 0.006])
        background.set_facecolor("#181b1f")
        background.set_xticks([])
        background.set_yticks([])
        for spine in background.spines.values():
            spine.set_color("#2c3235")
        figure.text(left + 0.008, bottom + height - 0.006, title, color="#ccccdc", fontsize=9,
                    va="top")
        pad_left, pad_bottom, pad_top = (0.045, 0.028, 0.03) if ticks else (0.01, 0.006, 0.026)
        axes = figure.add_axes([left + pad_left, bottom + pad_bottom,
                                width - pad_left - 0.01, height - pad_bottom - pad_top])
        axes.set_facecolor("#181b1f")
        for spine in axes.spines.values():
            spine.set_color("#2c3235")
        axes.tick_params(colors="#ccccdc", labelsize=7)
        return axes

    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        if panel["type"] == "row":
            left, bottom, _, height = cell(grid)
            figure.text(left + 0.004, bottom + height / 2, panel["title"], color="#ccccdc",
                        fontsize=11, weight="bold", va="center")
            continue
        unit = panel["fieldConfig"]["defaults"].get("unit")
        axes = axes_for(grid, panel["title"], ticks=panel["type"] == "timeseries")
        if panel["type"] == "timeseries":
            plotted = False
            for target in panel["targets"]:
                curves: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
                for t in times:
                    for group, value in evaluate(target["expr"], recording, t).items():
                        if not math.isnan(value):
                            curves[group].append((t - start, value))
                for group, points in sorted(curves.items()):
                    xs, ys = zip(*points)
                    axes.plot(xs, ys, linewidth=1.2,
                              label=_legend(target["legendFormat"], group))
                    plotted = True
            if plotted:
                axes.legend(fontsize=7, loc="upper left", facecolor="#181b1f",
                            labelcolor="#ccccdc", edgecolor="#2c3235")
                if unit == "s":
                    axes.yaxis.set_major_formatter(
                        matplotlib.ticker.FuncFormatter(lambda v, _: _format(v, "s")))
            else:
                axes.text(0.5, 0.5, "No data", color="#8e8e8e", ha="center", va="center",
                          transform=axes.transAxes)
            axes.set_xlabel("seconds since the first scrape", color="#8e8e8e", fontsize=7)
            axes.grid(color="#2c3235", linewidth=0.5)
        elif panel["type"] == "stat":
            # The value at the last scrape, over a sparkline of the whole run, as Grafana's
            # stat panel draws it.
            axes.set_xticks([])
            axes.set_yticks([])
            expr = panel["targets"][0]["expr"]
            history = [(t - start, evaluate(expr, recording, t)) for t in times]
            points = [(x, value) for x, values in history for value in values.values()]
            if points:
                xs, ys = zip(*points)
                axes.fill_between(xs, ys, color="#73bf69", alpha=0.15)
                axes.plot(xs, ys, color="#73bf69", linewidth=1)
            mappings = panel["fieldConfig"]["defaults"].get("mappings", [])
            texts = []
            for _, value in sorted(history[-1][1].items()):
                text = _format(value, unit)
                for mapping in mappings:
                    mapped = mapping["options"].get(str(int(value))) if value == int(value) else None
                    if mapped:
                        text = mapped["text"]
                texts.append(text)
            label = "\n".join(texts) or "No data"
            axes.text(0.5, 0.55, label, color="#ccccdc", fontsize=16, ha="center", va="center",
                      transform=axes.transAxes)
            axes.text(0.5, 0.08, "at the last scrape; the line spans the run", color="#8e8e8e",
                      fontsize=7, ha="center", transform=axes.transAxes)
        elif panel["type"] == "table":
            axes.axis("off")
            target = panel["targets"][0]
            rows = sorted(evaluate(target["expr"], recording, times[-1]))
            header = "   ".join(name for name, _ in rows[0]) if rows else "No data"
            lines = [header] + ["   ".join(value for _, value in row) for row in rows]
            axes.text(0.02, 0.8, "\n".join(lines), color="#ccccdc", fontsize=8,
                      family="monospace", va="top", transform=axes.transAxes)
    figure.text(0.5, footer / 3,
                "matplotlib rendering of docs/grafana-dashboard.json's queries over a recorded "
                "demo run, not a Grafana screenshot", color="#8e8e8e", fontsize=8, ha="center")
    figure.savefig(png, dpi=110, facecolor=figure.get_facecolor())
    print(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record_parser = commands.add_parser("record", help="run the demo job and record scrapes")
    record_parser.add_argument("--model", type=Path, required=True, help="EXPORT_DIR to score")
    record_parser.add_argument("--out", type=Path, required=True, help="folder for the run")
    record_parser.add_argument("--rows-per-second", type=int, default=300)
    record_parser.add_argument("--seconds", type=int, default=120,
                               help="seconds of generated rows (default: %(default)s)")
    render_parser = commands.add_parser("render", help="draw the panels from a recording")
    render_parser.add_argument("--recording", type=Path, required=True)
    render_parser.add_argument("--png", type=Path, default=ROOT / "docs" / "grafana-dashboard.png")
    args = parser.parse_args()
    if args.command == "record":
        print(f"recorded {record(args.model, args.out, args.rows_per_second, args.seconds)}")
    else:
        render(args.recording, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
