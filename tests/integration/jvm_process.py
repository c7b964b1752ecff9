"""What tests read from this process's Flink JVM: its metrics endpoint and its model loads."""

from __future__ import annotations

from pathlib import Path

from pyscoring.metrics import counter_total, scrape


def jvm_metrics_target() -> str | None:
    """Return HOST:PORT of this process's JVM metrics endpoint, or None before a scorer opened it."""
    from pyflink import java_gateway

    if java_gateway._gateway is None:
        return None
    port = java_gateway.get_gateway().jvm.io.pyscoring.metrics.ScoringMetrics.get().port()
    return f"127.0.0.1:{port}" if port > 0 else None


def scrape_jvm() -> dict:
    """Scrape this process's JVM metrics endpoint; an empty dict when there is none."""
    target = jvm_metrics_target()
    return scrape(target) if target else {}


def counter(families: dict, name: str, labels: dict) -> float:
    """Return the total of counter `name` over the series that match `labels`, 0 when absent."""
    family = families.get(name)
    return counter_total(family, labels) if family else 0.0


def scorer_loads(version_dir: Path) -> int:
    """Return how many times this process's JVM scorers loaded the model in `version_dir`."""
    from pyflink import java_gateway

    if java_gateway._gateway is None:
        return 0
    model_check = java_gateway.get_gateway().jvm.io.pyscoring.scoring.ModelCheck
    return model_check.scorerLoads(str(Path(version_dir).resolve()))


def metric_shape(families: dict) -> dict:
    """Map each pyscoring metric to its type, label names and bucket bounds, to compare endpoints."""
    shape = {}
    for name, family in families.items():
        if not name.startswith("pyscoring_"):
            continue
        label_names, bounds = set(), set()
        for sample in family.samples:
            label_names.update(key for key in sample.labels if key != "le")
            if "le" in sample.labels:
                bounds.add(float(sample.labels["le"]))
        shape[name] = (family.type, frozenset(label_names), frozenset(bounds))
    return shape
