"""Quantiles from histogram buckets and the file_sd targets file."""

from __future__ import annotations

import json
import math

import pytest

from prometheus_client.parser import text_string_to_metric_families

from pyscoring.metrics import TargetsFileWriter, histogram_quantile, histogram_sum_count


def test_quantile_interpolates_within_bucket():
    buckets = [(0.001, 0.0), (0.01, 100.0), (0.1, 200.0), (math.inf, 200.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.001 + 0.009 * 0.5)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.01 + 0.09 * 0.5)


def test_quantile_past_last_finite_bound_reports_that_bound():
    buckets = [(0.01, 1.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, buckets) == 0.01


def test_quantile_of_empty_histogram_is_nan():
    assert math.isnan(histogram_quantile(0.5, [(0.01, 0.0), (math.inf, 0.0)]))


def test_quantile_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        histogram_quantile(1.5, [(math.inf, 1.0)])


def test_histogram_sum_count_filters_series():
    text = (
        "# TYPE batch_size histogram\n"
        'batch_size_bucket{model="a",path="jvm",le="+Inf"} 3\n'
        'batch_size_sum{model="a",path="jvm"} 12\n'
        'batch_size_count{model="a",path="jvm"} 3\n'
        'batch_size_bucket{model="a",path="ps",le="+Inf"} 2\n'
        'batch_size_sum{model="a",path="ps"} 5\n'
        'batch_size_count{model="a",path="ps"} 2\n'
        'batch_size_bucket{model="b",path="jvm",le="+Inf"} 1\n'
        'batch_size_sum{model="b",path="jvm"} 7\n'
        'batch_size_count{model="b",path="jvm"} 1\n'
    )
    family = next(iter(text_string_to_metric_families(text)))

    assert histogram_sum_count(family, {"model": "a"}) == (17.0, 5.0)
    assert histogram_sum_count(family, {"model": "a", "path": "ps"}) == (5.0, 2.0)
    assert histogram_sum_count(family) == (24.0, 6.0)
    assert histogram_sum_count(family, {"model": "c"}) == (0.0, 0.0)


def test_targets_file_lists_every_endpoint(tmp_path):
    targets_file = tmp_path / "targets.json"
    endpoints = tmp_path / "targets.json.d"
    endpoints.mkdir()
    (endpoints / "jvm-1.json").write_text(json.dumps({"target": "127.0.0.1:9251"}))
    (endpoints / "jvm-2.json").write_text(json.dumps({"target": "127.0.0.1:9250"}))
    (endpoints / "broken.json").write_text("{")
    writer = TargetsFileWriter(targets_file, labels={"job": "pyscoring"})
    assert writer.refresh() == ["127.0.0.1:9250", "127.0.0.1:9251"]
    content = json.loads(targets_file.read_text())
    assert content == [{"targets": ["127.0.0.1:9250", "127.0.0.1:9251"],
                        "labels": {"job": "pyscoring"}}]
