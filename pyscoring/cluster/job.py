"""Build, run and watch the Flink job of an ML cluster.

The job has these operators:

- two one-element sources and `HoldDelay` that feed the AM (parallelism 1),
- the AM, whose output is broadcast to the role operators,
- "ps" (parallelism P) fed by the AM broadcast,
- "worker" (parallelism W) fed by the records and the AM broadcast,
- with train.chief, "chief" (parallelism 1) fed by the AM broadcast: the
  chief node, which trains on no records,
- with train.evaluator, "evaluator" (parallelism 1) fed by the AM broadcast,
- a discarding sink; the AM writes the final result to RUN_DIR/result.json.

Training jobs run in Flink's STREAMING runtime even over bounded input,
because the BATCH runtime's blocking exchanges would hold back the AM's
broadcast until the AM finishes. The failover strategy is "full": a failed
node makes every task restart, so no AM or parameter server keeps the
state of a dead cluster. Flink checkpointing stays off; the TensorFlow
checkpoint is the recovery point, and a restarted job reads its input
again from the source's start.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pyscoring import census, jobs
from pyscoring.config import Config
from pyscoring.training.model_module import Model, resolve_reference

logger = logging.getLogger(__name__)

# Seconds between the AM's start element and its hold element. The AM's first
# output is flushed at the end of its bundle, at most
# python.fn-execution.bundle.time (BUNDLE_TIME_MS) after the start element.
# NOTE: the order rests on this delay, not on a guarantee. On a machine so
# loaded that the hold element overtakes the first flush, no node learns the
# address and the AM fails over after train.register-timeout-ms.
AM_HOLD_DELAY_S = 3.0
BUNDLE_TIME_MS = 100
MINI_CLUSTER_HOST = "127.0.0.1"

RESULT_FILE = "result.json"
DISCARDING_SINK = "org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink"

MODE_BOUNDED = "bounded"
MODE_STREAM = "stream"

# Records are census rows in file column order, the label as class 0 or 1.
COLUMN_NAMES = tuple(column.name for column in census.COLUMNS)
COLUMN_DTYPES = tuple("int64" if column.name == census.LABEL_COLUMN else column.dtype
                      for column in census.COLUMNS)


class ClusterTrainingError(RuntimeError):
    """The training job failed; the message contains the last cluster failure reason."""


@dataclasses.dataclass
class ClusterRun:
    """Paths, topology and model of one training job.

    `model_reference` loads the model module in every node process: a
    dotted module name or the absolute path of a .py file. `params` is a
    ModelParams of that module.
    """

    config: Config
    checkpoint_dir: str
    export_dir: str
    test_path: str | None
    run_dir: str
    params: Any
    mode: str
    shares: list[int]
    last_step: int
    model_reference: str = "models.census_wide_deep"


def flink_settings(config: Config, job_name: str) -> dict[str, str]:
    """Return the Flink configuration of a training job.

    With train.jobmanager the job goes to that cluster's REST endpoint, and
    its Python operators run `python.executable` (this interpreter) on the
    cluster's task managers, so they must share this host's paths.
    """
    jobmanager = config["train.jobmanager"]
    settings = {
        "pipeline.name": job_name,
        "parallelism.default": "1",
        "execution.runtime-mode": "STREAMING",
        **jobs.restart_settings(config, "train", on_cluster=bool(jobmanager)),
        # NOTE: a session cluster reads the failover strategy from its own
        # configuration, not from the job (region on `pyscoring cluster`). The
        # job's operators are joined by pipelined exchanges, so they form one
        # region and a failed task restarts them all either way.
        "jobmanager.execution.failover-strategy": "full",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.fn-execution.bundle.time": str(BUNDLE_TIME_MS),
    }
    if jobmanager:
        cluster, _ = jobs.cluster_settings(jobmanager)
        settings.update(cluster)
        return settings
    # The job runs in a mini cluster inside this process; its endpoints stay
    # on loopback.
    settings.update({
        "jobmanager.bind-host": MINI_CLUSTER_HOST,
        "jobmanager.rpc.address": MINI_CLUSTER_HOST,
        "taskmanager.bind-host": MINI_CLUSTER_HOST,
        "taskmanager.host": MINI_CLUSTER_HOST,
        "rest.bind-address": MINI_CLUSTER_HOST,
        "rest.address": MINI_CLUSTER_HOST,
    })
    return settings


def restart_budget(config: Config) -> int:
    """Return how many restarts the training job's restart strategy allows."""
    settings = jobs.restart_settings(config, "train", on_cluster=bool(config["train.jobmanager"]))
    if settings["restart-strategy.type"] == "fixed-delay":
        return int(settings["restart-strategy.fixed-delay.attempts"])
    return int(settings["restart-strategy.exponential-delay.attempts-before-reset-backoff"])


def row_to_record(row: dict[str, Any]) -> tuple:
    """Return the record tuple (COLUMN_NAMES order) of a row from census.parse_line."""
    return tuple(row[name] for name in COLUMN_NAMES)


class _ParseLines:
    """Flat-map body: (line_number, line) to (line_number, record); skips comments."""

    def __call__(self, value):
        line_number, line = value[0], value[1]
        row = census.parse_line(line)
        if row is None:
            return
        yield line_number, row_to_record(row)


def _line_records(env, table_env, path: str):
    """Bounded stream of (line_number, record) read by the `pyscoring-lines` source."""

    source = str(Path(path).resolve())
    table_env.execute_sql(
        "CREATE TEMPORARY TABLE pyscoring_train_lines (source STRING, line_number BIGINT, "
        "`key` STRING, line STRING) WITH ('connector' = 'pyscoring-lines', "
        f"'path' = '{source.replace(chr(39), chr(39) * 2)}')")
    lines = table_env.to_data_stream(
        table_env.sql_query("SELECT line_number, line FROM pyscoring_train_lines"))
    return lines.flat_map(_ParseLines()).name("parse-census")


def _create_environments(settings: dict[str, str]):
    from pyscoring._internal import flink_env

    flink_env.prepare_environment()
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    configuration = Configuration()
    for key, value in settings.items():
        configuration.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(configuration)
    target = settings.get("execution.target")
    if target and target != "local":
        # Outside `flink run`, Flink 2.3 builds a LocalStreamEnvironment, which
        # overwrites execution.target with "local"; the executor is chosen from
        # the environment's configuration at submission.
        # PyFlink also pointed the Python operators at a loopback server in this
        # process, which only a mini cluster uses. On a cluster the task managers
        # start their own Python workers.
        from pyflink.util.java_utils import get_j_env_configuration

        j_configuration = get_j_env_configuration(env._j_stream_execution_environment)  # noqa: SLF001
        j_configuration.setString("execution.target", target)
        j_configuration.removeKey("python.loopback-server.address")
    table_env = StreamTableEnvironment.create(env)
    for key, value in settings.items():
        table_env.get_config().set(key, value)
    return env, table_env


def _job_description(run: ClusterRun) -> dict[str, Any]:
    config = run.config
    return {
        "workers": config["train.workers"], "ps": config["train.ps"],
        "chief": int(config["train.chief"]), "evaluator": int(config["train.evaluator"]),
        "secret": secrets.token_hex(16),
        "run_dir": run.run_dir, "checkpoint_dir": run.checkpoint_dir,
        "export_dir": run.export_dir, "test_path": run.test_path,
        "am_host": config["train.am-host"], "node_host": config["train.node-host"],
        "restart_attempts": restart_budget(config),
        # train.model is the resolved reference, so a node process loads the
        # same module whatever its working directory.
        "config": {**{key: config[key] for key in config if key.startswith("train.")},
                   "train.model": run.model_reference},
        "mode": run.mode, "shares": run.shares, "last_step": run.last_step,
        "column_names": list(COLUMN_NAMES), "column_dtypes": list(COLUMN_DTYPES),
        "model": run.model_reference,
        "model_params_json": run.params.to_json(),
    }


def build_job(env, run: ClusterRun, records, keyed_records: bool, run_id: str):
    """Add the AM and the role operators to `env`; return their joint output stream.

    `records` yields record tuples, or (line_number, record) pairs when
    `keyed_records` is True; pairs are routed to worker line_number % W.
    """
    from pyflink.common import Types

    from pyscoring.cluster import operators

    job = _job_description(run)
    job["run_id"] = run_id
    workers, ps = job["workers"], job["ps"]

    start = env.from_collection([0], type_info=Types.INT()).name("am-start")
    hold = (env.from_collection([1], type_info=Types.INT()).name("am-hold-source")
            .map(operators.HoldDelay(AM_HOLD_DELAY_S), output_type=Types.INT())
            .name("am-hold").set_parallelism(1).disable_chaining())
    am = (start.union(hold)
          .flat_map(operators.ApplicationManagerFunction(job), output_type=Types.STRING())
          .name("application-manager").uid("application-manager")
          .set_parallelism(1).set_max_parallelism(1).disable_chaining())
    outputs = [am]
    if ps:
        outputs.append(
            am.broadcast()
            .flat_map(operators.ParameterServerFunction(job), output_type=Types.STRING())
            .name("ps").uid("ps").set_parallelism(ps))
    if job["chief"]:
        outputs.append(
            am.broadcast()
            .flat_map(operators.ChiefFunction(job), output_type=Types.STRING())
            .name("chief").uid("chief").set_parallelism(1).set_max_parallelism(1))
    if job["evaluator"]:
        outputs.append(
            am.broadcast()
            .flat_map(operators.EvaluatorFunction(job), output_type=Types.STRING())
            .name("evaluator").uid("evaluator").set_parallelism(1).set_max_parallelism(1))

    if keyed_records:
        records = (records
                   .partition_custom(lambda key, partitions: key % partitions,
                                     lambda pair: pair[0])
                   .map(lambda pair: pair[1]).name("drop-line-number")
                   .set_parallelism(workers))
    else:
        records = records.rebalance()
    outputs.append(
        records.connect(am.broadcast())
        .flat_map(operators.WorkerFunction(job), output_type=Types.STRING())
        .name("worker").uid("worker").set_parallelism(workers))
    result = outputs[0]
    for other in outputs[1:]:
        result = result.union(other)
    return result


class _StatusWatcher(threading.Thread):
    """Drive a ProgressReporter from the AM's status.json."""

    def __init__(self, run: ClusterRun, interval_s: float = 0.5):
        super().__init__(name="cluster-status", daemon=True)
        from pyscoring.training.local import ProgressReporter

        self._path = os.path.join(run.run_dir, "status.json")
        self._reporter = ProgressReporter(
            log_every_steps=run.config["train.log-every-steps"],
            last_step=run.last_step or None)
        self._interval_s = interval_s
        self._closed = threading.Event()
        self._last: tuple[int, int, int] | None = None  # version, step, examples

    def run(self) -> None:
        while not self._closed.wait(self._interval_s):
            try:
                with open(self._path, encoding="utf-8") as file:
                    status = json.load(file)
            except (OSError, ValueError):
                continue
            key = (status["version"], status["global_step"], status["examples"])
            if key == self._last or status["loss"] is None:
                continue
            examples = status["examples"]
            if self._last is not None and self._last[0] == status["version"]:
                examples -= self._last[2]
            self._last = key
            self._reporter.update(int(status["global_step"]), max(0, int(examples)),
                                  float(status["loss"]))

    def close(self) -> None:
        self._closed.set()
        self.join(2.0)
        self._reporter.close()


_FAILURE_PATTERN = re.compile(r"ClusterFailure: (.*?)(?:\n\n|\n\tat |\Z)", re.S)
_TERMINAL_STATES = ("FINISHED", "FAILED", "CANCELED", "ENDED")


def _failure_reason(error: BaseException) -> str:
    text = str(error)
    matches = _FAILURE_PATTERN.findall(text)
    if matches:
        return matches[-1].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:20])


def read_result(run: ClusterRun, run_id: str) -> dict[str, Any] | None:
    """Return the AM's final result of run `run_id`, or None while there is none."""
    try:
        with open(os.path.join(run.run_dir, RESULT_FILE), encoding="utf-8") as file:
            result = json.load(file)
    except (OSError, ValueError):
        return None
    return result if result.get("run_id") == run_id else None


class DriverLogging:
    """Keep this process's log handlers for pyscoring's loggers while a job runs.

    In a local mini cluster PyFlink runs the Python operators in this process
    ("loopback mode") and replaces the root logger's handlers with one that
    forwards records to the Flink log. While the job runs, the "pyscoring"
    logger gets the handlers the root logger had before, so progress lines
    and errors still reach the console. `restore` puts the root logger back.
    """

    def __init__(self):
        root = logging.getLogger()
        self._root_handlers = list(root.handlers)
        self._root_level = root.level
        self._package = logging.getLogger("pyscoring")
        self._package_propagate = self._package.propagate
        self._package_level = self._package.level
        self._added = [handler for handler in self._root_handlers
                       if handler not in self._package.handlers]
        for handler in self._added:
            self._package.addHandler(handler)
        self._package.propagate = False
        if self._package.level == logging.NOTSET:
            self._package.setLevel(self._root_level)

    def restore(self) -> None:
        for handler in self._added:
            self._package.removeHandler(handler)
        self._package.propagate = self._package_propagate
        self._package.setLevel(self._package_level)
        root = logging.getLogger()
        root.handlers = self._root_handlers
        root.setLevel(self._root_level)


class TrainingJob:
    """A submitted training job: `wait` for its result or `cancel` it.

    `rest_address` is HOST:PORT of the Flink cluster that runs the job, or
    empty for the embedded mini cluster of this process.
    """

    def __init__(self, run: ClusterRun, job_client, job_name: str, run_id: str,
                 driver_logging: DriverLogging | None = None, rest_address: str = ""):
        self.run = run
        self._driver_logging = driver_logging
        self.job_name = job_name
        self.job_id = str(job_client.get_job_id())
        self.rest_address = rest_address
        self._client = job_client
        self._run_id = run_id
        self._watcher = _StatusWatcher(run)
        self._watcher.start()
        self._started = time.monotonic()

    @property
    def web_ui_url(self) -> str:
        """The job's page in the cluster's web UI, or empty in the embedded mini cluster."""
        if not self.rest_address:
            return ""
        return f"http://{self.rest_address}/#/job/running/{self.job_id}/overview"

    def status(self) -> str:
        """Return the Flink job status; "ENDED" once the embedded mini cluster has shut down.

        Raises ClusterTrainingError when the cluster at `rest_address` does not respond.
        """
        try:
            # PyFlink's JobStatus enum; its str() is "JobStatus.RUNNING", its name "RUNNING".
            return self._client.get_job_status().result().name
        except Exception as error:  # py4j wraps the Java client's exception
            if self.rest_address:
                raise ClusterTrainingError(
                    f"the Flink cluster at {self.rest_address} did not return the status of "
                    f"training job {self.job_id}: {_failure_reason(error)}; check the cluster "
                    "with `pyscoring cluster status`") from None
            # The mini cluster stops with its only job.
            if "MiniCluster is not yet running or has already been shut down" in str(error):
                return "ENDED"
            raise

    def cancel(self) -> None:
        logger.info("Cancelling training job %s", self.job_id)
        try:
            self._client.cancel().result()
        except Exception as error:  # py4j error when the job already ended
            logger.info("Cancel of job %s returned: %s", self.job_id, error)

    def wait(self, poll_s: float = 0.5) -> dict[str, Any]:
        """Block until the cluster reported its final result; return it.

        In stream mode the job is cancelled after the result, because its
        source does not end. Raises ClusterTrainingError when the job fails
        or ends without a result.
        """
        try:
            while True:
                result = read_result(self.run, self._run_id)
                status = self.status()
                if result is not None and (self.run.mode == MODE_STREAM
                                           or status in _TERMINAL_STATES):
                    break
                if status in _TERMINAL_STATES:
                    break
                time.sleep(poll_s)
            if status not in _TERMINAL_STATES:
                self.cancel()
            elif status == "FAILED" or (status == "ENDED" and result is None):
                page = f" and the job's page is {self.web_ui_url}" if self.web_ui_url else ""
                raise ClusterTrainingError(
                    f"training job {self.job_name} failed: {self._failure()}; node logs "
                    f"are in {os.path.join(self.run.run_dir, 'logs')}{page}")
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            self._watcher.close()
            if self._driver_logging is not None:
                self._driver_logging.restore()
        if result is None:
            raise ClusterTrainingError(
                f"training job {self.job_name} ended ({status}) without a final result; "
                f"see {self.run.run_dir}")
        logger.info("ML cluster finished in %.1f s after %d restarts",
                    time.monotonic() - self._started, result["version"])
        return result

    def _failure(self) -> str:
        try:
            self._client.get_job_execution_result().result()
        except Exception as error:  # py4j wraps the job's exception
            return _failure_reason(error)
        return "unknown reason"


def submit_job(run: ClusterRun, build_records: Callable, keyed_records: bool) -> TrainingJob:
    """Build and submit the training job; returns at once."""
    from pyflink.datastream.connectors.base import Sink

    config = run.config
    job_name = (f"pyscoring-train {config['train.workers']}w+{config['train.ps']}ps "
                f"{run.mode}")
    env, table_env = _create_environments(flink_settings(config, job_name))
    records = build_records(env, table_env)
    run_id = secrets.token_hex(8)
    stream = build_job(env, run, records, keyed_records, run_id)
    stream.sink_to(Sink(DISCARDING_SINK)).name("discard")
    rest_address = ""
    if config["train.jobmanager"]:
        _, rest_address = jobs.cluster_settings(config["train.jobmanager"])
    logger.info("Submitting %s to %s; cluster logs and events in %s", job_name,
                f"the Flink cluster at {rest_address}" if rest_address
                else "the embedded Flink mini cluster of this process", run.run_dir)
    driver_logging = DriverLogging()
    try:
        job_client = env.execute_async(job_name)
    except BaseException:
        driver_logging.restore()
        raise
    job = TrainingJob(run, job_client, job_name, run_id, driver_logging, rest_address)
    if rest_address:
        logger.info("Training job %s runs on the Flink cluster at %s; follow it at %s. This "
                    "command waits for its result; Ctrl-C cancels it on the cluster",
                    job.job_id, rest_address, job.web_ui_url)
    else:
        logger.info("Training job %s runs in the embedded Flink mini cluster of this process",
                    job.job_id)
    return job


def run_job(run: ClusterRun, build_records: Callable, keyed_records: bool) -> dict[str, Any]:
    """Submit the training job and wait for its final result (see TrainingJob.wait)."""
    return submit_job(run, build_records, keyed_records).wait()


def total_steps(shares: list[int], batch_size: int, epochs: int) -> int:
    """Global steps of `epochs` passes when each worker steps through its own share."""
    return epochs * sum(math.ceil(share / batch_size) for share in shares if share)


def prepare_run(config: Config, checkpoint_dir, export_dir, test_path,
                params, mode: str, shares: list[int],
                last_step: int, *, model: Model | None = None) -> ClusterRun:
    """Return the ClusterRun of a job; `model` None means the module of train.model."""
    reference = model.reference if model else resolve_reference(config["train.model"])
    checkpoint_dir = os.path.abspath(os.fspath(checkpoint_dir))
    run_dir = config["train.run-dir"] or os.path.join(checkpoint_dir, "cluster")
    os.makedirs(run_dir, exist_ok=True)
    return ClusterRun(
        config=config, checkpoint_dir=checkpoint_dir,
        export_dir=os.path.abspath(os.fspath(export_dir)),
        test_path=os.path.abspath(os.fspath(test_path)) if test_path else None,
        run_dir=os.path.abspath(run_dir), params=params, mode=mode, shares=shares,
        last_step=last_step, model_reference=reference)
