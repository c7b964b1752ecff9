"""Group rows into micro-batches in Java before they reach Python scoring operators.

PyFlink gives a Python function no end-of-bundle hook, so a Python operator
cannot close a batch on its own when the input pauses or a checkpoint
barrier comes. The Java operator `io.pyscoring.serving.RowBatchOperator`
does it upstream: it emits one element per batch, a Row with the fields

- `am_address` (str): the latest address that the AM published,
- `am_version` (int): the version that came with that address,
- `rows` (list of pyflink.common.Row): the batch's input rows in arrival order,
  at most `max_batch_rows` of them.

A batch is emitted when it is full, `max_delay_ms` after its first row, before
each checkpoint barrier and at the end of input, and only once the AM stream
carried a message {"kind": "am", "address": ..., "version": ...}. Rows that
arrive earlier are held (in checkpointed state) until that message comes.
"""

from __future__ import annotations

OPERATOR_NAME = "batch-rows"
AM_ADDRESS_FIELD = "am_address"
AM_VERSION_FIELD = "am_version"
ROWS_FIELD = "rows"

# Java int and long bounds of the operator's parameters.
_MAX_INT = 2**31 - 1
_MAX_LONG = 2**63 - 1


def _check_integer(name: str, value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def batch_rows(rows_stream, am_stream, max_batch_rows: int, max_delay_ms: int,
               parallelism: int):
    """Add the `batch-rows` operator and return its stream of batches (see the module docstring).

    `rows_stream` is a pyflink DataStream of rows: the result of
    `StreamTableEnvironment.to_data_stream`, or a stream with a
    `Types.ROW`/`Types.ROW_NAMED` output type. `am_stream` carries the AM's
    JSON messages and must have the output type `Types.STRING()`; it is
    broadcast to every subtask. The operator has the name and uid
    "batch-rows" and runs with `parallelism` subtasks.
    """
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    _check_integer("max_batch_rows", max_batch_rows, 1, _MAX_INT)
    _check_integer("max_delay_ms", max_delay_ms, 0, _MAX_LONG)
    _check_integer("parallelism", parallelism, 1, _MAX_INT)
    operator_class = get_gateway().jvm.io.pyscoring.serving.RowBatchOperator
    j_batches = operator_class.apply(rows_stream._j_data_stream, am_stream._j_data_stream,
                                     max_batch_rows, max_delay_ms, parallelism)
    return DataStream(j_batches)
