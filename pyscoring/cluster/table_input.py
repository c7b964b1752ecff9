"""Bounded training input from a Flink table, split over the workers by a hash of each row.

PyFlink gives a Python operator no end-of-input signal, so a worker gets
the size of its share of a bounded input from a count made before training. Both
the count and the training job route a row to worker

    MOD(MOD(HASH_CODE(<the row's census columns as one string>), W) + W, W)

(HASH_CODE is Java's hashCode of the string, and the outer MOD turns a
negative remainder into a non-negative one). The same expression over the
same rows gives the same worker in both jobs and after every restart, so
each worker's share matches its count. A table whose rows change between
the two reads breaks that match: the worker then fails with a message that
names its expected and received record counts.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from pyscoring.config import Config

logger = logging.getLogger(__name__)

TABLE_VIEW = "pyscoring_train_table"
WORKER_COLUMN = "pyscoring_worker"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def worker_expression(columns: tuple[str, ...], workers: int) -> str:
    """Return the SQL expression of the worker index (0 to workers - 1) of a row."""
    parts = ", ".join(f"COALESCE(CAST({_quote(name)} AS STRING), '')" for name in columns)
    hashed = f"HASH_CODE(CONCAT_WS('|', {parts}))"
    return f"MOD(MOD({hashed}, {workers}) + {workers}, {workers})"


def _register_view(table_env, build_table: Callable, columns: tuple[str, ...]) -> None:
    table = build_table(table_env)
    names = list(table.get_schema().get_field_names())
    missing = [name for name in columns if name not in names]
    if missing:
        raise ValueError(
            f"the training table lacks the columns {', '.join(missing)}; its columns are "
            f"{', '.join(names)}. Give it every census column ({', '.join(columns)}), with "
            "the label as 0 or 1")
    table_env.create_temporary_view(TABLE_VIEW, table)


def routed_query(columns: tuple[str, ...], workers: int) -> str:
    """Return the SQL query of (worker index, census columns) over the registered table."""
    selected = ", ".join(_quote(name) for name in columns)
    return (f"SELECT {worker_expression(columns, workers)} AS {WORKER_COLUMN}, {selected} "
            f"FROM {TABLE_VIEW}")


def count_shares(config: Config, build_table: Callable, columns: tuple[str, ...]) -> list[int]:
    """Count the rows of each worker's share with a bounded Flink job in BATCH mode.

    The job runs where the training job runs: in a mini cluster in this
    process, or on the cluster of train.jobmanager. Raises ValueError when
    the table is empty or a worker gets no rows.
    """
    from pyscoring.cluster import job

    workers = config["train.workers"]
    name = f"pyscoring-train count shares of {workers} workers"
    settings = {**job.flink_settings(config, name), "execution.runtime-mode": "BATCH"}
    started = time.monotonic()
    logger.info("Counting the training table's rows per worker (%d workers)", workers)
    _, table_env = job._create_environments(settings)  # noqa: SLF001
    _register_view(table_env, build_table, columns)
    query = (f"SELECT {WORKER_COLUMN}, COUNT(*) FROM ({routed_query(columns, workers)}) "
             f"GROUP BY {WORKER_COLUMN}")
    shares = [0] * workers
    with table_env.execute_sql(query).collect() as rows:
        for row in rows:
            shares[int(row[0])] = int(row[1])
    logger.info("Counted %d rows of the training table in %.1f s; shares per worker: %s",
                sum(shares), time.monotonic() - started, shares)
    if not sum(shares):
        raise ValueError("the training table has no rows; check its source and filters")
    empty = [index for index, share in enumerate(shares) if share == 0]
    if empty:
        raise ValueError(
            f"workers {empty} get no rows of the {sum(shares)}-row training table; "
            f"lower train.workers below {workers}")
    return shares


class _ToWorkerRecord:
    """Map body: a routed row to (worker index, record tuple)."""

    def __init__(self, column_count: int):
        self._column_count = column_count

    def __call__(self, row):
        return int(row[0]), tuple(row[index] for index in range(1, self._column_count + 1))


def records_builder(build_table: Callable, columns: tuple[str, ...], workers: int) -> Callable:
    """Return the `build_records(env, table_env)` of the training job over the table.

    Its stream yields (worker index, record) pairs, for build_job's
    `keyed_records=True` routing.
    """

    def build_records(env, table_env):
        _register_view(table_env, build_table, columns)
        rows = table_env.to_data_stream(table_env.sql_query(routed_query(columns, workers)))
        return rows.map(_ToWorkerRecord(len(columns))).name("route-table-rows")

    return build_records
