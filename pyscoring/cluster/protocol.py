"""gRPC service of the application manager (AM), with JSON messages.

The service `pyscoring.cluster.ApplicationManager` has four unary methods,
each taking and returning one JSON object:

- `Register`: a node announces role, index, host, port and pid.
- `GetClusterSpec`: a node polls for the complete cluster spec.
- `Heartbeat`: a node reports progress; the reply carries the AM's command
  ("continue", "stop" or "restart"), whether the chief is ready and
  whether every worker has finished (`workers_done`).
- `Report`: a node or its supervisor reports that the node finished or failed.

Every request carries `secret` (generated per job) and `version` (the
cluster incarnation). The AM rejects a wrong secret with
UNAUTHENTICATED and a stale version with FAILED_PRECONDITION.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping

import grpc

logger = logging.getLogger(__name__)

SERVICE = "pyscoring.cluster.ApplicationManager"
METHODS = ("Register", "GetClusterSpec", "Heartbeat", "Report")

COMMAND_CONTINUE = "continue"
COMMAND_STOP = "stop"
COMMAND_RESTART = "restart"

ROLE_WORKER = "worker"
ROLE_PS = "ps"
# The optional chief creates the variables, checkpoints and exports without
# training. The evaluator evaluates checkpoints outside the cluster spec.
ROLE_CHIEF = "chief"
ROLE_EVALUATOR = "evaluator"
ROLES = (ROLE_WORKER, ROLE_PS, ROLE_CHIEF, ROLE_EVALUATOR)
# Roles whose nodes run training steps or have the chief's duties. The
# parameter servers and the evaluator stop once these nodes are done.
TRAINING_ROLES = (ROLE_WORKER, ROLE_CHIEF)


class RejectedError(Exception):
    """The AM rejected a request: wrong secret, stale version or invalid content."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data.decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def generic_handler(
    methods: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]],
) -> grpc.GenericRpcHandler:
    """Wrap `methods` (name to function of request dict) as a generic gRPC handler.

    A function raises RejectedError to end the call with that status code.
    """

    def wrap(function):
        def handle(request: dict[str, Any], context: grpc.ServicerContext):
            try:
                return function(request)
            except RejectedError as error:
                context.abort(error.code, str(error))
        return handle

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            wrap(function), request_deserializer=decode, response_serializer=encode
        )
        for name, function in methods.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class AMClient:
    """Client of the AM for one node of one cluster incarnation."""

    def __init__(self, address: str, secret: str, version: int, timeout_s: float = 10.0):
        self.address = address
        self._secret = secret
        self.version = version
        self._timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._calls = {
            name: self._channel.unary_unary(
                f"/{SERVICE}/{name}", request_serializer=encode, response_deserializer=decode
            )
            for name in METHODS
        }

    def call(self, method: str, **fields: Any) -> dict[str, Any]:
        """Send one request; raises RejectedError on rejection and grpc.RpcError otherwise."""
        request = dict(fields, secret=self._secret, version=self.version)
        try:
            return self._calls[method](request, timeout=self._timeout_s)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.INVALID_ARGUMENT):
                raise RejectedError(code, error.details()) from None
            raise

    def close(self) -> None:
        self._channel.close()
