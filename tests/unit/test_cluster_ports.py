import socket

import pytest

from pyscoring.cluster.ports import reserve_port


def test_reservations_get_distinct_ports():
    with reserve_port("127.0.0.1") as first, reserve_port("127.0.0.1") as second:
        assert first.port != second.port
        assert first.address == f"127.0.0.1:{first.port}"


def test_reserved_port_accepts_reuseport_listener():
    with reserve_port("127.0.0.1") as reservation:
        # TensorFlow's server sets SO_REUSEPORT when TF_GRPC_REUSE_PORT=true.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("0.0.0.0", reservation.port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", reservation.port), timeout=5)
        accepted, _ = listener.accept()
        accepted.close()
        client.close()
        listener.close()


def test_reserved_port_rejects_plain_bind():
    with reserve_port("127.0.0.1") as reservation:
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(OSError):
            other.bind(("0.0.0.0", reservation.port))
        other.close()
