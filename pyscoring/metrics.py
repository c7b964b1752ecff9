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

from prometheus_client.parser import text_string_to_metric_families

LOG = logging.getLogger(__name__)

LATENCY_METRIC = "pyscoring_prediction_latency_seconds"


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
