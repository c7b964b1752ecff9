"""Fixtures of the integration tests: free ports, listening sockets, a Kafka broker, cached exports."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)


# Variables that pyscoring itself sets for PyFlink (pyscoring._internal.flink_env).
_OWN_VARIABLES = {"FLINK_HOME", "FLINK_LIB_DIR", "FLINK_PLUGINS_DIR", "FLINK_OPT_DIR"}


@pytest.fixture(scope="session")
def _environment_at_start():
    return dict(os.environ)


def _restore_environment(start: dict[str, str]) -> None:
    for key in set(os.environ) - set(start) - _OWN_VARIABLES:
        del os.environ[key]
    for key, value in start.items():
        if os.environ.get(key) != value and key not in _OWN_VARIABLES:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _keep_environment(_environment_at_start):
    """Put back the test process's environment before and after each test.

    Python operators of a mini-cluster job run inside the test process, and
    PyFlink's worker pool copies its own settings into os.environ there
    (PYFLINK_GATEWAY_DISABLED=true and the Java settings of the task
    manager among them). A PyFlink process that a test starts later would
    inherit them and fail to start its Java gateway.
    """
    _restore_environment(_environment_at_start)
    yield
    _restore_environment(_environment_at_start)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _decode_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp{,6} write each 32-bit word of the address in host (little-endian) order.
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """Return (address, port) of every TCP socket that process `pid` listens on."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A is TCP_LISTEN
                continue
            hex_address, hex_port = local.split(":")
            listening.add((str(_decode_address(hex_address)), int(hex_port, 16)))
    return listening


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    """A single-node Kafka broker on 127.0.0.1, stopped after the module's tests."""
    from pyscoring.kafka_local import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# Configuration of the cached census_hashed_ctr export: 2 workers and 2
# parameter servers on the Flink mini cluster, one epoch of 64 global steps
# over a 2^20 x 16 table (64 MiB), split over the two parameter servers.
HASHED_OVERRIDES: dict[str, object] = {
    "train.model": "models.census_hashed_ctr",
    "train.model-params": '{"table_rows": 1048576}',
    "train.workers": 2,
    "train.ps": 2,
    "train.epochs": 1,
    "train.batch-size": 512,
}


@pytest.fixture(scope="session")
def hashed_export():
    """Return the census_hashed_ctr export trained with 2 workers and 2 parameter servers.

    Cached like tests/conftest.py's `census_export_2w2ps`, in
    build/test-cache/hashed-<key>/, with the model module and the ML-cluster
    sources in the key. The value is a `ClusterCensusExport`: version
    folder, manifest, checkpoint folder (two shards per checkpoint, one per
    parameter server) and run folder. The first run trains in a subprocess.
    """
    from pyscoring.config import Config
    from tests.conftest import CLUSTER_CACHE_KEY_SOURCES, cached_cluster_export

    sources = CLUSTER_CACHE_KEY_SOURCES + (
        "models/census_hashed_ctr.py",
        "pyscoring/training/model_module.py",
    )
    return cached_cluster_export("hashed", Config(HASHED_OVERRIDES), sources)
