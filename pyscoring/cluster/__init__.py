"""The ML cluster: TensorFlow worker and parameter-server nodes run as Flink operators.

- `am`: the application manager (state machine, registration, heartbeats).
- `protocol`: its gRPC service with JSON messages, and the node-side client.
- `operators`: the Flink functions of the AM and the roles.
- `supervisor`: starts and watches each node's own TensorFlow process.
- `node`: the node process entry point; `trainer`: the default worker loop.
- `channel`: the bounded record channel from an operator to its node.
- `ports`: TensorFlow server ports reserved without a race.
- `job`: builds and runs the Flink job.
- `context`: `NodeContext`, the argument of a node entry function.

This package imports no TensorFlow at module level; only node processes do.
"""
