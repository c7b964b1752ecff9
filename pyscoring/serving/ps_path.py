"""Assemble the PS scoring path inside a deploy job.

The scoring part of the job is, besides the SQL source, parse and sinks
that both paths share:

    datagen ticks -> AM (1) --broadcast--> ps (P)
    AM + ps messages --broadcast--> batch-rows, ps-scoring-worker
    rows -> batch-rows (Java) -> ps-scoring-worker (W) -> scored view

The parameter servers' (empty) output joins the AM's messages on their
way to the workers, so every cluster operator is upstream of the scored
view, and any INSERT that reads the view runs the whole cluster. For
deploy the view is `pyscoring_scored`, with the columns of the JVM path's
scoring query, so the INSERT statements of deploy serve both paths. Worker and PS nodes are
the ML cluster's node processes (pyscoring.cluster.node); the workers run
pyscoring.serving.node:serve_worker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Sequence

from pyscoring.config import Config

LOG = logging.getLogger(__name__)

SERVE_ENTRY = "pyscoring.serving.node:serve_worker"
TICKS_TABLE = "pyscoring_am_ticks"

# Flink SQL types of input and output columns, and the PyFlink types the
# scoring workers declare for them.
_TYPE_NAMES = {
    "BIGINT": "LONG", "INT": "INT", "INTEGER": "INT", "SMALLINT": "SHORT",
    "TINYINT": "BYTE", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN",
    "STRING": "STRING",
}


class PsPathError(ValueError):
    """The PS path cannot score this model or these columns."""


def pyflink_type(sql_type: str, column: str):
    """Return the PyFlink type of a Flink SQL type; PsPathError names the column otherwise."""
    from pyflink.common import Types

    name = _TYPE_NAMES.get(sql_type.strip().upper())
    if name is None:
        raise PsPathError(
            f"column {column!r} has type {sql_type}, which the PS path does not carry; "
            f"cast it to one of {', '.join(sorted(_TYPE_NAMES))}, or leave it out of "
            "--pass-through")
    return getattr(Types, name)()


@dataclasses.dataclass(frozen=True)
class PsTopology:
    """Node counts of the PS path."""

    workers: int
    parameter_servers: int

    @staticmethod
    def from_config(config: Config, model: dict) -> "PsTopology":
        ps = config["scoring.ps.parameter-servers"] or max(
            1, int(model["variables"].get("ps_shards") or 0),
            int(model["training"].get("ps") or 0))
        workers = config["scoring.ps.workers"] or config["deploy.parallelism"]
        return PsTopology(workers=workers, parameter_servers=ps)


def job_description(config: Config, run_dir: Path, topology: PsTopology) -> dict[str, Any]:
    """Return the description the cluster operators and nodes read (see cluster.job)."""
    node_config = {key: config[key] for key in config if key.startswith("train.")}
    node_config["train.node-entry"] = SERVE_ENTRY
    return {
        "workers": topology.workers, "ps": topology.parameter_servers,
        "secret": secrets.token_hex(16), "run_dir": str(run_dir),
        "checkpoint_dir": str(run_dir), "export_dir": str(run_dir), "test_path": None,
        "am_host": config["train.am-host"], "node_host": config["train.node-host"],
        "restart_attempts": config["deploy.restart-attempts"], "config": node_config,
        "mode": "serve", "shares": [], "last_step": 0,
        "column_names": [], "column_dtypes": [], "model_params_json": "{}",
    }


def flink_settings() -> dict[str, str]:
    """Flink settings the PS path needs on top of deploy's."""
    return {
        # A failed node restarts every task, so no AM or parameter server
        # keeps the state of a dead cluster.
        "jobmanager.execution.failover-strategy": "full",
    }


def build(
    environment, *, config: Config, model: dict, version_dir: Path, rows_query: str,
    carried: Sequence[tuple[str, str]], feature_count: int, output_names: Sequence[str],
    output_sql_types: Sequence[str], run_dir: Path, targets_file: Path,
    view_name: str = "pyscoring_scored",
) -> None:
    """Add the PS path to the job and register its output as the view `view_name`.

    `rows_query` selects the `carried` columns (name, SQL type), copied to
    the output unchanged, and then the `feature_count` signature inputs in
    the manifest's order. The view has the carried columns, the signature
    outputs named `output_names`, model_version, score_error_code and
    score_error.
    """
    from pyflink.common import Types

    from pyscoring.cluster.operators import ParameterServerFunction
    from pyscoring.config import parse_port_range
    from pyscoring.serving.batching import batch_rows
    from pyscoring.serving.operators import (
        ScoringWorkerFunction,
        ServingApplicationManagerFunction,
    )

    topology = PsTopology.from_config(config, model)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = job_description(config, run_dir, topology)
    LOG.info("PS path: %d worker nodes and %d parameter servers; node logs and cluster "
             "events in %s", topology.workers, topology.parameter_servers, run_dir)

    environment.execute_sql(
        f"CREATE TEMPORARY TABLE {TICKS_TABLE} (tick INT) WITH ("
        "'connector' = 'datagen', 'rows-per-second' = '1')")
    ticks = environment.to_data_stream(environment.from_path(TICKS_TABLE))
    am = (ticks.flat_map(ServingApplicationManagerFunction(job), output_type=Types.STRING())
          .name("application-manager").uid("application-manager")
          .set_parallelism(1).set_max_parallelism(1))
    ps = (am.broadcast().flat_map(ParameterServerFunction(job), output_type=Types.STRING())
          .name("ps").uid("ps").set_parallelism(topology.parameter_servers))
    cluster_messages = am.union(ps)

    rows = environment.to_data_stream(environment.sql_query(rows_query))
    batches = batch_rows(rows, am, config["scoring.max-batch-size"],
                         config["scoring.max-batch-delay-ms"], topology.workers)

    inputs = model["signature"]["inputs"]
    head = [name for name, _ in carried]
    head_types = [pyflink_type(sql_type, name) for name, sql_type in carried]
    names = head + list(output_names) + ["model_version", "score_error_code", "score_error"]
    types = head_types + [pyflink_type(sql_type, name)
                          for name, sql_type in zip(output_names, output_sql_types)]
    types += [Types.LONG(), Types.STRING(), Types.STRING()]
    first_port, last_port = parse_port_range(config["metrics.port-range"])
    serving = {
        "version_dir": str(version_dir),
        "input_names": [tensor["name"] for tensor in inputs],
        "input_dtypes": [tensor["dtype"] for tensor in inputs],
        "feature_positions": list(range(len(head), len(head) + feature_count)),
        "carried": len(head),
        "model_name": model["model_name"], "model_version": int(model["version"]),
        "tensorflow_version": model.get("tensorflow_version", ""),
        "metrics_host": config["metrics.host"],
        "metrics_port_range": [first_port, last_port],
        "targets_file": str(targets_file),
    }
    scored = (batches.connect(cluster_messages.broadcast())
              .flat_map(ScoringWorkerFunction(job, serving),
                        output_type=Types.ROW_NAMED(names, types))
              .name("ps-scoring-worker").uid("ps-scoring-worker")
              .set_parallelism(topology.workers))
    environment.create_temporary_view(view_name, environment.from_data_stream(scored))


class DrainAtEndOfInput(threading.Thread):
    """Stop a PS-path job with a draining savepoint once its bounded source has finished.

    The AM's tick source never ends, so a PS-path job outlives a bounded
    input. Once every vertex of the input source is FINISHED and the AM's
    status file (`status_file`) shows every node registered, a
    stop-with-savepoint with drain ends the ticks too. Every operator
    finishes its input and the last batches are scored. The savepoint
    commits the sinks' last files, and the job ends as a JVM-path job does.
    A drain that fails, for example because the cluster failed over during
    it, is tried again once the restarted source has finished.
    """

    def __init__(self, rest_address: str, job_id: str, source_name: str, savepoint_dir: Path,
                 status_file: Path, poll_s: float = 1.0):
        super().__init__(name="ps-path-drain", daemon=True)
        self._rest_address = rest_address
        self._job_id = job_id
        self._source_name = source_name
        self._savepoint_dir = savepoint_dir
        self._status_file = status_file
        self._poll_s = poll_s
        self._closed = threading.Event()
        self.savepoint: Path | None = None

    def _cluster_running(self) -> bool:
        try:
            with open(self._status_file, encoding="utf-8") as file:
                return json.load(file).get("state") == "running"
        except (OSError, ValueError):
            return False

    def _input_ended(self, client) -> bool:
        states = client.vertex_states(self._job_id)
        sources = [state for name, state in states.items() if self._source_name in name]
        return bool(sources) and all(state == "FINISHED" for state in sources)

    def run(self) -> None:
        from pyscoring.jobs import JobsError, RestClient

        client = RestClient(self._rest_address)
        while not self._closed.wait(self._poll_s):
            try:
                if not (self._input_ended(client) and self._cluster_running()):
                    continue
            except JobsError:
                return  # The job and its mini cluster are gone.
            LOG.info("The input of job %s has ended; stopping it with a draining savepoint "
                     "in %s", self._job_id, self._savepoint_dir)
            try:
                self.savepoint = client.stop_with_savepoint(self._job_id, self._savepoint_dir,
                                                            drain=True)
                return
            except JobsError as error:
                LOG.warning("Draining stop of job %s failed: %s; trying again once its input "
                            "has ended again", self._job_id, error)

    def close(self) -> None:
        self._closed.set()


def run_dir_of(config: Config, output_dir: Path) -> Path:
    """Folder of the PS path's cluster logs and events: train.run-dir or OUTPUT_DIR/ps-cluster."""
    return Path(config["train.run-dir"] or os.path.join(output_dir, "ps-cluster")).resolve()
