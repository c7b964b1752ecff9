"""The `batch-rows` Java operator in a PyFlink job: rows from `to_data_stream` reach a Python
flat_map as batches, each row exactly once, with the AM address taken from a broadcast stream.

The job runs in a child process, like the other Flink tests, because the pytest process may
import Python TensorFlow, which must not share a process with the TensorFlow Java that Flink's
JVM loads. The child finds pyscoring's jars as `pyscoring._internal.flink_env` does, so
PYSCORING_FLINK_LIB_DIR selects the lib folder.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 300

ROWS = 300
MAX_BATCH_ROWS = 7
MAX_DELAY_MS = 50
PARALLELISM = 2
AM_ADDRESS = "127.0.0.1:40123"
AM_VERSION = 3
# The AM function waits this long before it emits the address, so rows most
# likely reach `batch-rows` first and are buffered there until the address comes.
AM_DELAY_S = 1.0

_JOB_SCRIPT = """
import json, sys, time
from pyscoring._internal import flink_env
flink_env.prepare_environment()
from pyflink.common import Configuration, Row, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyscoring.serving.batching import batch_rows

arguments = json.loads(sys.argv[1])
settings = {
    "parallelism.default": "1",
    "execution.runtime-mode": "STREAMING",
    # Checkpoints pass `batch-rows` while it buffers rows and while it batches them.
    "execution.checkpointing.interval": "100 ms",
    "python.executable": sys.executable,
    "python.client.executable": sys.executable,
    "jobmanager.bind-host": "127.0.0.1", "jobmanager.rpc.address": "127.0.0.1",
    "taskmanager.bind-host": "127.0.0.1", "taskmanager.host": "127.0.0.1",
    "rest.bind-address": "127.0.0.1", "rest.address": "127.0.0.1",
}
configuration = Configuration()
for key, value in settings.items():
    configuration.set_string(key, value)
env = StreamExecutionEnvironment.get_execution_environment(configuration)
table_env = StreamTableEnvironment.create(env)

table = table_env.from_elements(
    [(index, f"row-{index}", index * 0.5) for index in range(arguments["rows"])],
    ["id", "name", "score"])
rows = table_env.to_data_stream(table)

def publish_am(_):
    time.sleep(arguments["am_delay_s"])
    yield json.dumps({"kind": "final", "address": "127.0.0.1:1", "version": 99})
    yield json.dumps({"kind": "am", "address": arguments["am_address"],
                      "version": arguments["am_version"]})

am = (env.from_collection([0], type_info=Types.INT())
      .flat_map(publish_am, output_type=Types.STRING()).name("publish-am"))
batches = batch_rows(rows, am, arguments["max_batch_rows"], arguments["max_delay_ms"],
                     arguments["parallelism"])

def unpack(batch):
    members = batch[2]
    description = json.dumps({
        "batch": type(batch).__name__, "fields": list(batch.as_dict()),
        "am_address": type(batch[0]).__name__, "am_version": type(batch[1]).__name__,
        "rows": type(members).__name__, "row": type(members[0]).__name__,
        "row_fields": list(members[0].as_dict()),
    })
    for row in members:
        yield Row(members[0][0], len(members), batch[0], batch[1], description,
                  row[0], row[1], row[2])

output_type = Types.ROW([Types.LONG(), Types.INT(), Types.STRING(), Types.INT(), Types.STRING(),
                         Types.LONG(), Types.STRING(), Types.DOUBLE()])
with batches.flat_map(unpack, output_type=output_type).execute_and_collect() as results:
    collected = [list(row) for row in results]
with open(arguments["out"], "w", encoding="utf-8") as file:
    json.dump(collected, file)
"""

BatchedRow = collections.namedtuple(
    "BatchedRow",
    "batch_first_id batch_size am_address am_version types id name score")


@pytest.fixture(scope="module")
def batched_rows(tmp_path_factory) -> list[BatchedRow]:
    """Run the batching job once and return its output rows."""
    folder = tmp_path_factory.mktemp("row-batching")
    out = folder / "rows.json"
    arguments = {
        "rows": ROWS, "max_batch_rows": MAX_BATCH_ROWS, "max_delay_ms": MAX_DELAY_MS,
        "parallelism": PARALLELISM, "am_address": AM_ADDRESS, "am_version": AM_VERSION,
        "am_delay_s": AM_DELAY_S, "out": str(out),
    }
    log = folder / "job.log"
    with open(log, "w", encoding="utf-8") as log_file:
        process = subprocess.run(
            [sys.executable, "-c", _JOB_SCRIPT, json.dumps(arguments)], cwd=REPO_ROOT,
            stdout=log_file, stderr=subprocess.STDOUT, timeout=JOB_TIMEOUT_S, check=False)
    log_lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    tail = "\n".join(log_lines[-40:])
    assert process.returncode == 0, (
        f"batching job failed with exit code {process.returncode}:\n{tail}")
    return [BatchedRow(*row) for row in json.loads(out.read_text(encoding="utf-8"))]


def test_every_row_arrives_once(batched_rows):
    ids = [row.id for row in batched_rows]
    assert len(ids) == ROWS
    assert sorted(ids) == list(range(ROWS))


def test_rows_keep_their_values(batched_rows):
    for row in batched_rows:
        assert row.name == f"row-{row.id}"
        assert row.score == row.id * 0.5


def test_batch_sizes_respect_maximum(batched_rows):
    members = collections.defaultdict(list)
    for row in batched_rows:
        members[row.batch_first_id].append(row)
    for first_id, rows in members.items():
        assert 1 <= len(rows) <= MAX_BATCH_ROWS, f"batch of row {first_id}: {len(rows)} rows"
        assert {row.batch_size for row in rows} == {len(rows)}
    assert len(members) >= ROWS // MAX_BATCH_ROWS


def test_batches_carry_am_address(batched_rows):
    assert {row.am_address for row in batched_rows} == {AM_ADDRESS}
    assert {row.am_version for row in batched_rows} == {AM_VERSION}


def test_python_sees_rows_of_rows(batched_rows):
    descriptions = {row.types for row in batched_rows}
    assert len(descriptions) == 1
    types = json.loads(descriptions.pop())
    assert types["batch"] == "Row"
    assert types["fields"] == ["am_address", "am_version", "rows"]
    assert types["am_address"] == "str"
    assert types["am_version"] == "int"
    assert types["rows"] == "list"
    assert types["row"] == "Row"
    assert types["row_fields"] == ["id", "name", "score"]


@pytest.mark.parametrize("max_batch_rows, max_delay_ms, parallelism, error", [
    (0, 10, 1, ValueError),
    (1, -1, 1, ValueError),
    (1, 10, 0, ValueError),
    (2**31, 10, 1, ValueError),
    (True, 10, 1, TypeError),
    (1, 10.0, 1, TypeError),
])
def test_batch_rows_rejects_invalid_settings(max_batch_rows, max_delay_ms, parallelism, error):
    from pyscoring.serving.batching import batch_rows

    # The settings are checked before the streams are used, so no Flink job is needed.
    with pytest.raises(error):
        batch_rows(None, None, max_batch_rows, max_delay_ms, parallelism)
