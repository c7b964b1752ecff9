"""Fixtures of the standalone-cluster and Kafka tests: free ports, listening sockets, a Kafka broker."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)


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
