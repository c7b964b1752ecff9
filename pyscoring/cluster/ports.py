"""Ports for TensorFlow servers, reserved without a bind-release-rebind race.

`reserve_port` binds a socket with SO_REUSEPORT to a port the kernel picks
and keeps it open. A TensorFlow server started with the environment
variable TF_GRPC_REUSE_PORT=true (read by TensorFlow 2.18's gRPC server)
also sets SO_REUSEPORT, so it can bind the same port while the reservation
is held. The reservation socket never listens, so every connection goes to
TensorFlow. Another process asking the kernel for a free port does not get
a held port, so two jobs on one host do not collide.

TensorFlow 2.18's gRPC server listens on 0.0.0.0 (every interface) without
authentication, whatever address the cluster spec names.
"""

from __future__ import annotations

import logging
import socket

logger = logging.getLogger(__name__)

# Environment of a node process so that TensorFlow's server shares the reserved port.
TF_REUSE_PORT_ENV = {"TF_GRPC_REUSE_PORT": "true"}


class PortReservation:
    """A bound, non-listening SO_REUSEPORT socket that keeps `port` taken until `close`."""

    def __init__(self, host: str):
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                     socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # TensorFlow binds the wildcard address, so the reservation does too;
            # a non-listening socket accepts no connection on any address.
            self._socket.bind(("::" if ":" in host else "0.0.0.0", 0))
        except OSError:
            self._socket.close()
            raise
        self.host = host
        self.port = self._socket.getsockname()[1]
        logger.debug("Reserved port %d", self.port)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> "PortReservation":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def reserve_port(host: str) -> PortReservation:
    """Reserve a free TCP port for a TensorFlow server whose cluster spec names `host`."""
    return PortReservation(host)
