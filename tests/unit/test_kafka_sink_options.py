"""Deploy's handling of Kafka tables: exactly-once sink options and a `key` source column."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyscoring import deploy
from pyscoring.config import Config

MODEL = {
    "model_name": "m",
    "version": 3,
    "signature": {
        "inputs": [{"name": "age", "dtype": "int64", "shape": [-1]}],
        "outputs": [{"name": "score", "dtype": "float32", "shape": [-1]}],
    },
    "feature_mapping": {"age": "age"},
    "variables": {"bytes": 10},
}

EXACTLY_ONCE = {
    "connector": "kafka",
    "topic": "scores",
    "properties.bootstrap.servers": "127.0.0.1:9092",
    "format": "json",
    "sink.delivery-guarantee": "exactly-once",
    "sink.transactional-id-prefix": "scoring-job",
}


def test_other_connectors_pass_unchanged():
    options = {"connector": "filesystem", "path": "/tmp/out", "format": "json"}
    assert deploy.complete_kafka_sink_options(options, Config()) == options


def test_at_least_once_kafka_passes_unchanged():
    options = {**EXACTLY_ONCE, "sink.delivery-guarantee": "at-least-once"}
    del options["sink.transactional-id-prefix"]
    assert deploy.complete_kafka_sink_options(options, Config()) == options


def test_exactly_once_gets_transaction_timeout():
    completed = deploy.complete_kafka_sink_options(EXACTLY_ONCE, Config())
    assert completed["properties.transaction.timeout.ms"] == "600000"


def test_transaction_timeout_follows_config():
    config = Config({"deploy.kafka.transaction-timeout-ms": 120000})
    completed = deploy.complete_kafka_sink_options(EXACTLY_ONCE, config)
    assert completed["properties.transaction.timeout.ms"] == "120000"


def test_explicit_transaction_timeout_is_kept():
    options = {**EXACTLY_ONCE, "properties.transaction.timeout.ms": "300000"}
    completed = deploy.complete_kafka_sink_options(options, Config())
    assert completed["properties.transaction.timeout.ms"] == "300000"


def test_exactly_once_without_prefix_names_option():
    options = dict(EXACTLY_ONCE)
    del options["sink.transactional-id-prefix"]
    with pytest.raises(deploy.DeployError, match="sink.transactional-id-prefix=NAME"):
        deploy.complete_kafka_sink_options(options, Config())


def _kafka_request(tmp_path) -> deploy.DeployRequest:
    return deploy.DeployRequest(
        model_dir=tmp_path,
        output_dir=tmp_path / "out",
        input_format=deploy.InputFormat.parse("key STRING, age BIGINT"),
        source_options={"connector": "kafka", "topic": "rows", "format": "json",
                        "properties.bootstrap.servers": "127.0.0.1:9092"},
        sink_options=EXACTLY_ONCE,
    )


def test_dead_letters_get_own_topic_and_prefix(tmp_path):
    ddl, _, _ = deploy.build_statements(_kafka_request(tmp_path), Path("/models/m/3"), MODEL)
    dead_letters = next(statement for statement in ddl if "pyscoring_dead_letters" in statement)
    scores = next(statement for statement in ddl if "TABLE pyscoring_scores" in statement)
    assert "'topic' = 'scores-dead-letters'" in dead_letters
    assert "'sink.transactional-id-prefix' = 'scoring-job-dead-letters'" in dead_letters
    assert "'sink.transactional-id-prefix' = 'scoring-job'" in scores
    assert "'properties.transaction.timeout.ms' = '600000'" in scores


def _output_names(statement: str) -> list[str]:
    """Return the column names a CREATE VIEW ... AS SELECT ... FROM statement outputs."""
    select_list = statement.split(" AS SELECT ", 1)[1].rsplit(" FROM ", 1)[0]
    items, depth, current = [], 0, ""
    for character in select_list:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += character
    items.append(current)
    return [item.split()[-1].strip("`") for item in items]


def test_key_source_column_is_selected_once(tmp_path):
    ddl, _, _ = deploy.build_statements(_kafka_request(tmp_path), Path("/models/m/3"), MODEL)
    for view in ("pyscoring_parsed", "pyscoring_checked"):
        statement = next(s for s in ddl if f"VIEW {view} AS" in s)
        names = _output_names(statement)
        assert names.count("key") == 1, statement
        assert "age" in names, statement
