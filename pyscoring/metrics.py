"""Prometheus side of pyscoring: the file_sd targets file, scraping and quantiles.

Each process that serves pyscoring metrics (a task-manager JVM, later a
Python scoring node) writes its endpoint as one JSON file into the folder
`<targets file>.d/`. `TargetsFileWriter` merges them into the targets file
in Prometheus' file_sd format, so Prometheus finds every endpoint of a job
without a fixed port list.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.parser import text_string_to_metric_families

LOG = logging.getLogger(__name__)

LATENCY_METRIC = "pyscoring_prediction_latency_seconds"

# The same label names and bucket bounds as io.pyscoring.metrics.ScoringMetrics
# in the JVM, so one dashboard serves both scoring paths. A test scrapes both
# and compares them.
LABELS = ("model", "version", "path")
LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ScoringMetrics:
    """pyscoring's scoring metrics in a Python process, served over HTTP.

    Declares the metrics of the Java scorer with prometheus-client in a
    registry of its own. `start_server` binds the first free port of a range
    and records the endpoint beside the job's targets file.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.prediction_latency = Histogram(
            LATENCY_METRIC, "Seconds from a row entering the scorer to its result, queueing included",
            LABELS, buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)
        self.batch_latency = Histogram(
            "pyscoring_batch_latency_seconds",
            "Seconds one batch spends in TensorFlow, tensor building included",
            LABELS, buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)
        self.batch_size = Histogram(
            "pyscoring_batch_size", "Rows per TensorFlow call",
            LABELS, buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.predictions = Counter(
            "pyscoring_predictions", "Rows scored successfully", LABELS, registry=self.registry)
        self.prediction_errors = Counter(
            "pyscoring_prediction_errors",
            "Rows that left the scorer with an error instead of a score",
            LABELS + ("reason_code",), registry=self.registry)
        self.model_loaded = Gauge(
            "pyscoring_model_loaded",
            "1 while the model version is loaded and serving, 0 after it was closed",
            LABELS, registry=self.registry)
        self.last_successful_batch = Gauge(
            "pyscoring_last_successful_batch_timestamp_seconds",
            "Unix time in seconds when a batch last scored at least one row",
            LABELS, registry=self.registry)
        self.model_info = Info(
            "pyscoring_model", "Models loaded for scoring, one series per model version",
            LABELS + ("tensorflow_version",), registry=self.registry)
        self.port: int | None = None

    def start_server(self, host: str, first_port: int, last_port: int,
                     targets_file: str | os.PathLike[str] | None) -> int:
        """Serve /metrics on the first free port of [first_port, last_port]; return it."""
        for port in range(first_port, last_port + 1):
            try:
                start_http_server(port, addr=host, registry=self.registry)
            except OSError:
                LOG.debug("Port %d is taken, trying the next one", port)
                continue
            self.port = port
            LOG.info("Started the Prometheus endpoint at http://%s:%d/metrics", host, port)
            if targets_file:
                record_endpoint(Path(f"{targets_file}.d"), host, port, "python")
            return port
        raise RuntimeError(
            f"no free port for the Prometheus endpoint in {first_port}-{last_port} on {host}; "
            "widen metrics.port-range"
        )


# Name of pyscoring's Flink metric reporter in Flink's configuration
# (metrics.reporter.<name>.*), and its factory in pyscoring's jar.
BACKLOG_REPORTER = "pyscoring"
BACKLOG_REPORTER_FACTORY = "io.pyscoring.metrics.SourceBacklogReporterFactory"
# Gauges that the reporter serves on the scorer's endpoint, from Flink's source
# reader metrics pendingRecords and pendingBytes and the Kafka consumer's
# records-lag-max. Labels: job_name, operator_name, subtask_index.
SOURCE_PENDING_RECORDS_METRIC = "pyscoring_source_pending_records"
SOURCE_PENDING_BYTES_METRIC = "pyscoring_source_pending_bytes"
SOURCE_RECORDS_LAG_MAX_METRIC = "pyscoring_source_records_lag_max"


def backlog_reporter_settings(host: str, port_range: str) -> dict[str, str]:
    """Return the Flink settings that install pyscoring's source backlog reporter.

    The reporter serves the source backlog gauges on the same endpoint as the
    scorer's metrics, bound to `host` on the first free port of `port_range`.
    Reporters belong to a cluster's processes: a mini cluster takes these
    settings from the job, a standalone cluster from its config.yaml.
    """
    prefix = f"metrics.reporter.{BACKLOG_REPORTER}."
    return {
        prefix + "factory.class": BACKLOG_REPORTER_FACTORY,
        prefix + "host": host,
        prefix + "port-range": port_range,
    }


def record_endpoint(folder: Path, host: str, port: int, process_kind: str) -> None:
    """Write this process's endpoint into `folder`, where TargetsFileWriter collects it."""
    endpoint = f"{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{process_kind}-{os.getpid()}.json"
    temporary = folder / f".{target.name}.tmp"
    temporary.write_text(
        json.dumps({"target": endpoint, "process": process_kind, "pid": os.getpid()}) + "\n",
        encoding="utf-8",
    )
    os.replace(temporary, target)


class TargetsFileWriter:
    """Keeps a file_sd targets file in step with the endpoint files beside it.

    A daemon thread re-reads `<targets_file>.d/*.json` every `interval_s`
    seconds and rewrites the targets file atomically when the set changed.
    """

    def __init__(self, targets_file: Path, labels: Mapping[str, str], interval_s: float = 1.0):
        self.targets_file = Path(targets_file)
        self.endpoints_dir = Path(f"{targets_file}.d")
        self.labels = dict(labels)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyscoring-targets", daemon=True)
        self._written: list[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def endpoints(self) -> list[str]:
        """Return the host:port of every endpoint recorded so far, sorted."""
        targets = set()
        if self.endpoints_dir.is_dir():
            for path in self.endpoints_dir.glob("*.json"):
                try:
                    targets.add(json.loads(path.read_text(encoding="utf-8"))["target"])
                except (OSError, ValueError, KeyError) as error:
                    LOG.warning("Skipping the unreadable endpoint file %s: %s", path, error)
        return sorted(targets)

    def refresh(self) -> list[str]:
        """Rewrite the targets file if the endpoints changed; return them."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> list[str]:
        targets = self.endpoints()
        if targets != self._written:
            content = [{"targets": targets, "labels": self.labels}] if targets else []
            temporary = self.targets_file.with_name(f".{self.targets_file.name}.tmp")
            temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.targets_file)
            self._written = targets
            if targets:
                LOG.info("Wrote %d metrics endpoint(s) to %s: %s", len(targets),
                         self.targets_file, ", ".join(targets))
        return targets

    def clear(self) -> None:
        """Remove every recorded endpoint and write an empty targets file.

        For an embedded cluster: its endpoints close when the deploying process exits.
        """
        self.stop()
        with self._lock:
            if self.endpoints_dir.is_dir():
                for path in self.endpoints_dir.glob("*.json"):
                    path.unlink(missing_ok=True)
            self._written = None
            self._refresh_locked()
            LOG.info("Cleared the metrics endpoints of %s", self.targets_file)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except OSError as error:
                LOG.warning("Failed to update %s: %s", self.targets_file, error)
            self._stop.wait(self.interval_s)


def scrape(target: str, timeout_s: float = 5.0) -> dict:
    """Scrape http://TARGET/metrics and return its metric families by name."""
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout_s) as response:
        text = response.read().decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def histogram_buckets(family, labels: Mapping[str, str] | None = None) -> list[tuple[float, float]]:
    """Sum the cumulative `_bucket` samples of a histogram family over series that match `labels`.

    Returns (upper bound, cumulative count) pairs sorted by bound, +Inf last.
    """
    totals: dict[float, float] = {}
    for sample in family.samples:
        if not sample.name.endswith("_bucket"):
            continue
        if labels and any(sample.labels.get(key) != value for key, value in labels.items()):
            continue
        bound = float(sample.labels["le"])
        totals[bound] = totals.get(bound, 0.0) + sample.value
    return sorted(totals.items())


def histogram_quantile(quantile: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Estimate a quantile from cumulative buckets, interpolating linearly within a bucket.

    This is the estimate of PromQL's histogram_quantile(): the result is only as
    precise as the bucket bounds around it. Returns NaN for an empty histogram.
    """
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be within [0, 1], got {quantile}")
    buckets = list(buckets)
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    total = buckets[-1][1]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                # Past the largest finite bound: report that bound, as PromQL does.
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def counter_total(family, labels: Mapping[str, str] | None = None) -> float:
    """Sum the `_total` samples of a counter family over series that match `labels`."""
    total = 0.0
    for sample in family.samples:
        if not sample.name.endswith("_total"):
            continue
        if labels and any(sample.labels.get(key) != value for key, value in labels.items()):
            continue
        total += sample.value
    return total


def histogram_sum_count(family, labels: Mapping[str, str] | None = None) -> tuple[float, float]:
    """Sum the `_sum` and the `_count` samples of a histogram family over series that match `labels`."""
    total = count = 0.0
    for sample in family.samples:
        if labels and any(sample.labels.get(key) != value for key, value in labels.items()):
            continue
        if sample.name.endswith("_sum"):
            total += sample.value
        elif sample.name.endswith("_count"):
            count += sample.value
    return total, count
