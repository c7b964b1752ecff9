"""The standalone cluster's configuration, settings checks and addresses; no process is started."""

from __future__ import annotations

import json

import pytest

from pyscoring import jobs, standalone
from pyscoring.config import Config, ConfigError


def _read_config_yaml(path) -> dict[str, str]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(": ")
        entries[key] = json.loads(value)
    return entries


def test_configuration_binds_loopback(tmp_path):
    entries = standalone.flink_configuration(standalone.ClusterSettings(), tmp_path)
    for key in ("jobmanager.rpc.address", "jobmanager.bind-host", "rest.address",
                "rest.bind-address", "taskmanager.host", "taskmanager.bind-host"):
        assert entries[key] == "127.0.0.1", key


def test_configuration_reserves_tensorflow_memory(tmp_path):
    settings = standalone.ClusterSettings(taskmanager_memory_mb=3072, tensorflow_memory_mb=768)
    entries = standalone.flink_configuration(settings, tmp_path)
    assert entries["taskmanager.memory.process.size"] == "3072m"
    assert entries["taskmanager.memory.task.off-heap.size"] == "768m"
    assert entries["env.java.opts.taskmanager"] == (
        f"-Dorg.bytedeco.javacpp.maxPhysicalBytes={3072 * 1024 * 1024}"
    )


def test_configuration_keeps_wheel_java_opts(tmp_path):
    entries = standalone.flink_configuration(standalone.ClusterSettings(), tmp_path)
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in entries["env.java.opts.all"]


def test_configuration_advertises_metric_settings(tmp_path):
    settings = standalone.ClusterSettings(metrics_port_range="19000-19009")
    entries = standalone.flink_configuration(settings, tmp_path)
    assert entries["pyscoring.metrics.port-range"] == "19000-19009"
    assert entries["pyscoring.metrics.host"] == "127.0.0.1"


def test_configuration_installs_backlog_reporter(tmp_path):
    settings = standalone.ClusterSettings(metrics_port_range="19000-19009")
    entries = standalone.flink_configuration(settings, tmp_path)
    assert entries["metrics.reporter.pyscoring.factory.class"] == (
        "io.pyscoring.metrics.SourceBacklogReporterFactory"
    )
    assert entries["metrics.reporter.pyscoring.host"] == "127.0.0.1"
    assert entries["metrics.reporter.pyscoring.port-range"] == "19000-19009"


def test_restart_defaults_outlast_taskmanager_start():
    settings = jobs.restart_settings(Config(), "deploy", on_cluster=True)
    assert settings["restart-strategy.type"] == "exponential-delay"
    attempts = int(settings["restart-strategy.exponential-delay.attempts-before-reset-backoff"])
    # Delays without jitter: 1 s doubling up to 30 s.
    delays = [min(2 ** attempt, 30) for attempt in range(attempts)]
    assert sum(delays) >= 600, "the default budget must outlast a slow task-manager start"


def test_restart_defaults_in_mini_cluster():
    settings = jobs.restart_settings(Config(), "deploy", on_cluster=False)
    assert settings == {
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "3",
        "restart-strategy.fixed-delay.delay": "1000 ms",
    }


@pytest.mark.parametrize("prefix", ["deploy", "train"])
def test_restart_strategy_configurable(prefix):
    config = Config({f"{prefix}.restart-strategy": "fixed-delay",
                     f"{prefix}.restart-attempts": 7, f"{prefix}.restart-delay-ms": 2500})
    settings = jobs.restart_settings(config, prefix, on_cluster=True, extra_attempts=2)
    assert settings["restart-strategy.type"] == "fixed-delay"
    assert settings["restart-strategy.fixed-delay.attempts"] == "9"
    assert settings["restart-strategy.fixed-delay.delay"] == "2500 ms"


def test_restart_max_delay_below_first_rejected():
    config = Config({"train.restart-delay-ms": 5000, "train.restart-max-delay-ms": 1000})
    with pytest.raises(ConfigError, match="train.restart-max-delay-ms=1000 is below"):
        jobs.restart_settings(config, "train", on_cluster=True)


def test_flink_options_override_generated_entries(tmp_path):
    settings = standalone.ClusterSettings(flink_options={"heartbeat.timeout": "60000"})
    entries = standalone.flink_configuration(settings, tmp_path)
    assert entries["heartbeat.timeout"] == "60000"


def test_written_configuration_round_trips(tmp_path):
    settings = standalone.ClusterSettings(
        taskmanagers=3, rest_port=18123, python_executable="/opt/py env/bin/python",
        flink_options={"state.backend.type": "hashmap # not a comment"},
    )
    path = standalone.write_configuration(settings, tmp_path)
    assert _read_config_yaml(path) == standalone.flink_configuration(settings, tmp_path)
    assert (tmp_path / "workers").read_text().splitlines() == ["127.0.0.1"] * 3
    assert (tmp_path / "masters").read_text().strip() == "127.0.0.1:18123"
    assert (tmp_path / "log4j.properties").is_file()
    for folder in ("log", "run", "tmp"):
        assert (tmp_path / folder).is_dir(), folder


def test_settings_from_config_use_cluster_keys():
    config = Config({
        "cluster.taskmanagers": 2, "cluster.rest-port": 18200,
        "cluster.taskmanager.tensorflow-memory-mb": 256, "metrics.port-range": "19100-19150",
    })
    settings = standalone.ClusterSettings.from_config(config)
    assert settings.taskmanagers == 2
    assert settings.rest_port == 18200
    assert settings.tensorflow_memory_mb == 256
    assert settings.metrics_port_range == "19100-19150"


@pytest.mark.parametrize("settings, message", [
    (standalone.ClusterSettings(taskmanagers=3, metrics_port_range="9250-9251"),
     "has 2 port\\(s\\) for 3 task managers"),
    (standalone.ClusterSettings(taskmanager_memory_mb=1024, tensorflow_memory_mb=512),
     "tensorflow-memory-mb=512 leaves too little"),
    (standalone.ClusterSettings(rest_port=7000, jobmanager_rpc_port=7000),
     "are both 7000"),
    (standalone.ClusterSettings(rest_port=70000), "cluster.rest-port: 70000 is not a port"),
    (standalone.ClusterSettings(taskmanager_rpc_ports="50100-"),
     "cluster.taskmanager.rpc-ports: expected 0, a port or FIRST-LAST"),
])
def test_invalid_settings_name_the_fix(settings, message):
    with pytest.raises(ConfigError, match=message):
        settings.validate()


def test_default_settings_are_valid():
    standalone.ClusterSettings().validate()
    standalone.ClusterSettings.from_config(Config()).validate()


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8081", ("127.0.0.1", 8081)),
    ("localhost:18081", ("localhost", 18081)),
    ("[::1]:8081", ("::1", 8081)),
])
def test_address_parses(text, expected):
    assert standalone.parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":8081", "host:port", "host:0", "host:65536"])
def test_invalid_address_names_value(text):
    with pytest.raises(ConfigError, match="invalid job manager address"):
        standalone.parse_address(text)


def test_status_without_cluster_says_how_to_start(tmp_path):
    report = standalone.status(tmp_path)
    assert not report.running
    assert "pyscoring cluster start --dir" in report.error


def test_stop_without_cluster_stops_nothing(tmp_path):
    assert standalone.stop(tmp_path) == []


def test_start_rejects_lib_dir_without_jars(tmp_path):
    settings = standalone.ClusterSettings(lib_dir=str(tmp_path / "empty-lib"))
    with pytest.raises(standalone.ClusterError, match="lacks Flink's flink-dist jar"):
        standalone.start(tmp_path / "cluster", settings)
