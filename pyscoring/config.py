"""Configuration keys of pyscoring, declared once.

Every key the CLI, the Python API and the Java scorer read is an `Option` in
`OPTIONS`. The reference page docs/configuration.md is generated from this
registry (`python -m pyscoring.config`), and a test keeps the Java side's
`io.pyscoring.scoring.ScoringOptions` in step with the `scoring.*` and
`metrics.*` keys here.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One configuration key with its type, default and documentation."""

    key: str
    type: type
    default: Any
    description: str
    min_value: float | None = None
    choices: tuple[str, ...] | None = None
    # Java reads the key from the job parameters when True.
    jvm: bool = False

    def parse(self, raw: Any) -> Any:
        """Convert a raw value (a CLI string or a Python value) to the option's type."""
        if self.type is bool:
            value = _parse_bool(self.key, raw)
        elif self.type in (int, float):
            try:
                value = self.type(raw)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{self.key}: expected {self.type.__name__}, got {raw!r}"
                ) from None
        else:
            value = str(raw)
        if self.min_value is not None and value < self.min_value:
            raise ConfigError(
                f"{self.key}: {value!r} is below the minimum {self.min_value:g}"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{self.key}: {value!r} is not one of {', '.join(self.choices)}"
            )
        return value


def _parse_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


_MIB = 1024 * 1024

OPTIONS: tuple[Option, ...] = (
    # Scoring in the JVM.
    Option("scoring.max-batch-size", int, 64,
           "Rows in one TensorFlow call at most. Larger batches raise throughput "
           "until TensorFlow saturates the cores; a row waits for at most "
           "scoring.max-batch-delay-ms before its batch runs anyway.",
           min_value=1, jvm=True),
    Option("scoring.max-batch-delay-ms", int, 5,
           "Milliseconds a batch stays open after its first row before it runs "
           "even if it is not full. 0 runs every row as soon as the scoring "
           "thread is free, so batches form only under load.",
           min_value=0, jvm=True),
    Option("scoring.max-in-flight", int, 0,
           "Rows per scoring subtask that have entered the scorer and not yet "
           "left it (Flink's table.exec.async-table.max-concurrent-operations). "
           "0 means twice scoring.max-batch-size, so one batch fills while "
           "another runs.",
           min_value=0),
    Option("scoring.async-timeout-ms", int, 0,
           "Milliseconds a row may wait for its result before the scorer "
           "completes it with error code TIMEOUT (a dead letter). 0 derives it "
           "from the batch settings: scoring.max-batch-delay-ms plus 3 times "
           "scoring.batch-timeout-ms (the running batch, one queued batch and "
           "the row's own). Deploy sets Flink's "
           "table.exec.async-table.timeout, which fails the job, to twice this "
           "plus 1 s.",
           min_value=0, jvm=True),
    Option("scoring.batch-timeout-ms", int, 10000,
           "Milliseconds one batch may take in TensorFlow, splits after an "
           "error included; sets the row timeout when "
           "scoring.async-timeout-ms is 0.",
           min_value=1, jvm=True),
    Option("scoring.watch-interval-ms", int, 5000,
           "Milliseconds between two scans of the export directory for a new "
           "model version, which each scoring subtask swaps in between two "
           "batches. 0 disables the scan.",
           min_value=0, jvm=True),
    Option("scoring.model-version", int, 0,
           "Model version to serve, pinned: deploy scores EXPORT_DIR/<N>/ and "
           "does not swap to newer versions. 0 serves the newest version and "
           "follows new ones.",
           min_value=0),
    Option("scoring.test.fail-at-rows", str, "",
           "Test only: row counts separated by ';' such as 200;200;200. "
           "Attempt k of scoring subtask 0 fails when the k-th count of rows "
           "has entered the scorer, to test recovery. Empty injects no "
           "failure. Deploy adds one restart per listed failure to "
           "deploy.restart-attempts.",
           jvm=True),
    Option("parse.max-field-chars", int, 65536,
           "Characters one field of an input line may have; a longer field "
           "makes the line a dead letter with reason code FIELD_TOO_LONG.",
           min_value=1, jvm=True),
    Option("scoring.tensorflow.intra-op-threads", int, 0,
           "Threads one TensorFlow kernel may use (ConfigProto "
           "intra_op_parallelism_threads); 0 lets TensorFlow use every core.",
           min_value=0, jvm=True),
    Option("scoring.tensorflow.inter-op-threads", int, 0,
           "Threads that run independent TensorFlow ops at once (ConfigProto "
           "inter_op_parallelism_threads); 0 lets TensorFlow choose.",
           min_value=0, jvm=True),
    Option("scoring.jvm.max-model-bytes", int, 1024 * _MIB,
           "Bytes of a version's variables/ folder above which the model is "
           "not loaded into a task-manager JVM.",
           min_value=1, jvm=True),
    Option("scoring.path", str, "auto",
           "Which scorer serves the model: jvm, ps, or auto (decided by "
           "scoring.jvm.max-model-bytes).",
           choices=("auto", "jvm", "ps")),
    Option("scoring.ps.parameter-servers", int, 0,
           "Parameter-server nodes of the PS path; 0 takes the export's "
           "training PS count (at least 1). Each restores its own share of "
           "the variables from the export.", min_value=0),
    Option("scoring.ps.workers", int, 0,
           "Python worker nodes of the PS path; 0 takes deploy.parallelism.",
           min_value=0),
    # Metrics.
    Option("metrics.host", str, "127.0.0.1",
           "Address the Prometheus endpoints bind to. Loopback by default; set "
           "0.0.0.0 only behind a firewall, because the endpoints have no "
           "authentication.",
           jvm=True),
    Option("metrics.port-range", str, "9250-9299",
           "Ports the Prometheus endpoints may bind, as FIRST-LAST; each "
           "process takes the first free port.",
           jvm=True),
    Option("metrics.targets-file", str, "",
           "Prometheus file_sd targets file that deploy keeps up to date with "
           "every endpoint of the job. Empty means "
           "OUTPUT_DIR/prometheus-targets.json.",
           jvm=True),
    # The deployed job.
    Option("deploy.parallelism", int, 1,
           "Parallelism of the scoring job's operators.", min_value=1),
    Option("deploy.checkpoint-interval-ms", int, 5000,
           "Milliseconds between checkpoints of the scoring job. The file sinks "
           "roll their part files at this interval and commit them at the next "
           "checkpoint, so a scored row becomes visible within about two intervals.",
           min_value=100),
    Option("deploy.restart-attempts", int, 3,
           "Restarts of the scoring job (fixed delay) before it fails.",
           min_value=0),
    Option("deploy.restart-strategy", str, "auto",
           "Flink restart strategy of the scoring job: fixed-delay, "
           "exponential-delay, or auto, which is fixed-delay in the embedded "
           "mini cluster and exponential-delay with deploy.jobmanager. On a "
           "standalone cluster every restart fails at once until a lost task "
           "manager is replaced, so fixed-delay with deploy.restart-attempts=3 "
           "gives up within seconds.",
           choices=("auto", "fixed-delay", "exponential-delay")),
    Option("deploy.restart-delay-ms", int, 1000,
           "Milliseconds before a restart of the scoring job: the delay of "
           "fixed-delay and the first delay of exponential-delay.", min_value=0),
    Option("deploy.restart-max-delay-ms", int, 30000,
           "Largest delay in milliseconds between restarts under "
           "exponential-delay, which doubles the delay after each failure up "
           "to this value.", min_value=0),
    Option("deploy.restart-backoff-attempts", int, 30,
           "Restarts under exponential-delay before the scoring job fails. The "
           "defaults keep restarting for about 13 minutes (1, 2, 4, 8 and 16 s, "
           "then 30 s apart); Flink resets the count and the delay after the "
           "job has run for an hour without failure.", min_value=0),
    Option("deploy.kafka.transaction-timeout-ms", int, 600000,
           "Kafka transaction timeout (properties.transaction.timeout.ms) that "
           "deploy sets on an exactly-once Kafka sink whose options leave it out. "
           "It must not exceed the broker's transaction.max.timeout.ms (900000 "
           "by default), or the producer fails to start, and it must exceed the "
           "longest expected checkpoint plus restart time, or the broker aborts "
           "transactions that Flink still has to commit.",
           min_value=1),
    Option("source.rows-per-second", float, 0.0,
           "Rate limit of the line source over all subtasks; 0 means unlimited.",
           min_value=0),
    Option("source.loop", bool, False,
           "Read the input again from the start after its end, forever."),
    Option("deploy.bind-host", str, "127.0.0.1",
           "Address the scoring job's Flink processes bind to (RPC, REST, blob "
           "server, data exchange). Loopback by default; set 0.0.0.0 only "
           "behind a firewall."),
    # Columns, lifecycle and health of the deployed job.
    Option("deploy.pass-through", str, "*",
           "Input columns copied into every score row, separated by commas. * "
           "copies every input column except one named key (each score row has "
           "`key` already); an empty value copies none."),
    Option("deploy.rename-outputs", str, "",
           "New names of signature outputs in the score rows, as OUTPUT=NAME "
           "pairs separated by commas, for example output_0=score."),
    Option("deploy.event-time-column", str, "",
           "Input column with each row's event time: BIGINT epoch milliseconds, "
           "TIMESTAMP_LTZ, or TIMESTAMP read as UTC. When set, every score row "
           "records the seconds from its event time to the scores sink in "
           "pyscoring_end_to_end_latency_seconds. Empty records nothing."),
    Option("deploy.checkpoint-dir", str, "",
           "Folder of the job's checkpoints. They are kept when the job is "
           "cancelled or fails, so `deploy --from-savepoint` can resume from "
           "the newest one. Empty means OUTPUT_DIR/checkpoints."),
    Option("deploy.jobmanager", str, "",
           "HOST:PORT of the REST endpoint of a running Flink cluster that "
           "deploy submits the job to. Empty runs the job in a mini cluster "
           "inside the deploy process, whose REST endpoint binds a free port "
           "of deploy.bind-host."),
    # Training.
    Option("train.workers", int, 1, "Worker nodes.", min_value=1),
    Option("train.ps", int, 0, "Parameter-server nodes.", min_value=0),
    Option("train.epochs", int, 5, "Passes over bounded input.", min_value=1),
    Option("train.batch-size", int, 256, "Examples per training step and worker.",
           min_value=1),
    Option("train.learning-rate", float, 0.005,
           "Learning rate the model's build_train_op hook receives; without the "
           "hook, pyscoring trains every variable with Adam at this rate.", min_value=0),
    Option("train.checkpoint-every-steps", int, 500,
           "Global steps between checkpoints written by the chief.", min_value=1),
    Option("train.log-every-steps", int, 200,
           "Global steps between progress lines when output is not a terminal.",
           min_value=1),
    Option("train.seed", int, 42, "Random seed of initialization and shuffling."),
    Option("train.model", str, "models.census_wide_deep",
           "Model module to train and export: a dotted module name importable "
           "from the Python path, or the path of a .py file. It defines "
           "MODEL_NAME, a ModelParams dataclass and build_model (README, "
           "'Your own model'). Empty means models.census_wide_deep."),
    Option("train.model-params", str, "",
           "JSON object of ModelParams fields that replace the model's defaults, "
           'such as {"table_rows": 65536}. Empty keeps the defaults. Fields that '
           "the model fills from the data or the topology, such as num_shards, "
           "are set after these."),
    # Training on the Flink ML cluster (train.workers > 1 or train.ps > 0).
    Option("train.checkpoint-every-seconds", int, 0,
           "Seconds between checkpoints written by the chief, in addition to "
           "train.checkpoint-every-steps; 0 turns the timer off.", min_value=0),
    Option("train.chief", bool, False,
           "Run a chief node beside the workers: it creates or restores the "
           "variables, writes the checkpoints and the exports, and trains on no "
           "records. False makes worker 0 the chief."),
    Option("train.evaluator", bool, False,
           "Run an evaluator node that evaluates each new checkpoint on the test "
           "file and appends AUC, accuracy and loss to RUN_DIR/evaluations.jsonl."),
    Option("train.export-every-steps", int, 0,
           "Stream mode: global steps between export versions written by the chief; "
           "0 turns this trigger off. The chief also exports when training ends.",
           min_value=0),
    Option("train.export-every-seconds", int, 0,
           "Stream mode: seconds between export versions written by the chief; "
           "0 turns this trigger off.", min_value=0),
    Option("train.max-steps", int, 0,
           "Global step at which stream-mode training stops and the chief writes the "
           "final export; 0 trains until the stream ends or the job is cancelled.",
           min_value=0),
    Option("train.restart-attempts", int, 3,
           "Restarts of the ML cluster (a Flink restart of every task, fixed delay) "
           "before the training job fails with the last reason.", min_value=0),
    Option("train.restart-delay-ms", int, 1000,
           "Milliseconds between a cluster failure and its restart.", min_value=0),
    Option("train.restart-strategy", str, "auto",
           "Flink restart strategy of the training job: fixed-delay "
           "(train.restart-attempts, train.restart-delay-ms apart), "
           "exponential-delay, or auto, which is fixed-delay in the embedded "
           "mini cluster and exponential-delay with train.jobmanager.",
           choices=("auto", "fixed-delay", "exponential-delay")),
    Option("train.restart-max-delay-ms", int, 30000,
           "Largest delay in milliseconds between restarts under "
           "exponential-delay, which starts at train.restart-delay-ms and "
           "doubles after each failure.", min_value=0),
    Option("train.restart-backoff-attempts", int, 30,
           "Restarts under exponential-delay before the training job fails "
           "with the last reason; Flink resets the count after an hour "
           "without failure.", min_value=0),
    Option("train.jobmanager", str, "",
           "HOST:PORT of the REST endpoint of a running Flink cluster that "
           "train submits the ML-cluster job to. Empty runs the job in a mini "
           "cluster inside the train process. The cluster's task managers "
           "must run this project's Python environment and see the data, "
           "checkpoint, export and run folders under the same paths."),
    Option("train.heartbeat-interval-ms", int, 1000,
           "Milliseconds between a node's heartbeats to the application manager.",
           min_value=10),
    Option("train.heartbeat-timeout-ms", int, 30000,
           "Milliseconds without a heartbeat after which the application manager "
           "declares a node dead and restarts the cluster.", min_value=100),
    Option("train.register-timeout-ms", int, 120000,
           "Milliseconds the application manager waits for every node to register "
           "before it restarts the cluster.", min_value=100),
    Option("train.am-host", str, "127.0.0.1",
           "Address the application manager's gRPC server binds to and announces. "
           "Loopback by default; on a multi-host Flink cluster set an address the "
           "task managers can reach, behind a firewall."),
    Option("train.node-host", str, "127.0.0.1",
           "Address a node announces in the cluster spec. TensorFlow 2.18's servers "
           "listen on every interface whatever this says."),
    Option("train.channel-capacity", int, 4096,
           "Records a worker process holds from Flink at most while it trains; a "
           "full channel blocks the Flink operator (backpressure).", min_value=1),
    Option("train.channel-startup-capacity", int, 200000,
           "Records a worker process holds at most before its cluster spec is "
           "complete, so records queued ahead of the AM's address cannot block it.",
           min_value=1),
    Option("train.channel-frame-records", int, 256,
           "Records per frame on the channel from the Flink operator to the node "
           "process.", min_value=1),
    Option("train.node-entry", str, "",
           "Worker entry function as module:function receiving a "
           "pyscoring.cluster.context.NodeContext; empty runs pyscoring's census "
           "trainer (pyscoring.cluster.trainer:train_worker)."),
    Option("train.node-threads", int, 1,
           "TensorFlow intra-op and inter-op threads of each worker process; 0 lets "
           "TensorFlow use every core.", min_value=0),
    Option("train.run-dir", str, "",
           "Folder of the cluster's logs, events.jsonl and status.json; empty means "
           "CHECKPOINT_DIR/cluster."),
    # The standalone Flink cluster of `pyscoring cluster`.
    Option("cluster.dir", str, "",
           "Folder of the standalone cluster: its config.yaml, logs, process "
           "ids, checkpoints and savepoints. Empty means build/flink-cluster "
           "in the project."),
    Option("cluster.taskmanagers", int, 1,
           "Task managers that `pyscoring cluster start` starts.", min_value=1),
    Option("cluster.taskmanager.slots", int, 1,
           "Task slots per task manager. Each slot's scorer shares the task "
           "manager's cores with the others, so more slots add throughput only "
           "where TensorFlow leaves cores idle.",
           min_value=1),
    Option("cluster.jobmanager.rpc-port", int, 6123,
           "Port of the job manager's RPC endpoint, which the task managers "
           "connect to.",
           min_value=1),
    Option("cluster.rest-port", int, 8081,
           "Port of the job manager's REST API and web UI; `--jobmanager` takes "
           "this port.",
           min_value=1),
    Option("cluster.blob-port", str, "0",
           "Port or FIRST-LAST range of the job manager's blob server; 0 lets "
           "the operating system choose."),
    Option("cluster.taskmanager.rpc-ports", str, "0",
           "Port or FIRST-LAST range the task managers' RPC endpoints bind; each "
           "task manager takes a free port of the range, and 0 lets the "
           "operating system choose."),
    Option("cluster.jobmanager.memory-mb", int, 1024,
           "Process memory of the job manager (jobmanager.memory.process.size), "
           "in MiB.",
           min_value=512),
    Option("cluster.taskmanager.memory-mb", int, 2048,
           "Process memory of one task manager (taskmanager.memory.process.size), "
           "in MiB. JavaCPP's maxPhysicalBytes is set to the same size, so "
           "TensorFlow Java raises an OutOfMemoryError before the process "
           "outgrows its budget.",
           min_value=1024),
    Option("cluster.taskmanager.tensorflow-memory-mb", int, 512,
           "Native memory of one task manager reserved for TensorFlow Java "
           "(taskmanager.memory.task.off-heap.size), in MiB: the variables of "
           "every model its slots load plus TensorFlow's working memory.",
           min_value=64),
)

OPTIONS_BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}


class Config(Mapping[str, Any]):
    """Values for every key in OPTIONS: defaults overlaid with overrides."""

    def __init__(self, overrides: Mapping[str, Any] | None = None):
        values = {option.key: option.default for option in OPTIONS}
        for key, raw in (overrides or {}).items():
            option = OPTIONS_BY_KEY.get(key)
            if option is None:
                raise ConfigError(
                    f"unknown configuration key {key!r}; the keys are listed in "
                    "docs/configuration.md"
                )
            values[key] = option.parse(raw)
        self._values = values
        self._validate()

    def _validate(self) -> None:
        first, last = parse_port_range(self["metrics.port-range"])
        del first, last
        _parse_row_list(self["scoring.test.fail-at-rows"])
        in_flight = self["scoring.max-in-flight"]
        batch = self["scoring.max-batch-size"]
        if in_flight and in_flight < batch:
            raise ConfigError(
                f"scoring.max-in-flight ({in_flight}) is below "
                f"scoring.max-batch-size ({batch}), so no batch could fill; "
                "raise it to at least twice the batch size or set 0"
            )

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        merged = dict(self._values)
        merged.update(overrides)
        return Config(merged)

    def row_timeout_ms(self) -> int:
        """Milliseconds the scorer lets a row wait, with 0 resolved from the batch settings."""
        return self["scoring.async-timeout-ms"] or (
            self["scoring.max-batch-delay-ms"] + 3 * self["scoring.batch-timeout-ms"]
        )

    def flink_async_timeout_ms(self) -> int:
        """Flink's async timeout, after which it fails the job: past the scorer's own."""
        return 2 * self.row_timeout_ms() + 1000

    def injected_failures(self) -> list[int]:
        """Row counts of scoring.test.fail-at-rows, in attempt order."""
        return _parse_row_list(self["scoring.test.fail-at-rows"])

    def effective_in_flight(self) -> int:
        """Rows in flight per scoring subtask, with 0 resolved."""
        return self["scoring.max-in-flight"] or 2 * self["scoring.max-batch-size"]

    def jvm_job_parameters(self) -> dict[str, str]:
        """Keys the Java scorer reads, as Flink global job parameters."""
        return {
            option.key: _format_value(self[option.key])
            for option in OPTIONS
            if option.jvm
        }


def _parse_row_list(text: str) -> list[int]:
    rows = []
    for part in text.split(";"):
        if not part.strip():
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(
                "scoring.test.fail-at-rows: expected positive row counts separated by "
                f"';' such as 200;200;200, got {text!r}"
            )
        rows.append(value)
    return rows


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse FIRST-LAST into two ports, first <= last."""
    parts = text.split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        first, last = int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError(
            f"metrics.port-range: expected FIRST-LAST such as 9250-9299, got {text!r}"
        ) from None
    if not 1 <= first <= last <= 65535:
        raise ConfigError(
            f"metrics.port-range: {text!r} must satisfy 1 <= FIRST <= LAST <= 65535"
        )
    return first, last


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse KEY=VALUE strings from the command line."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def render_markdown(format_default: Callable[[Option], str] | None = None) -> str:
    """Render the reference table of docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `pyscoring/config.py` by `python -m pyscoring.config`;",
        "do not edit by hand. Set a key with `--set KEY=VALUE` on the command",
        "line or `Config({KEY: VALUE})` in Python. Keys marked JVM are passed",
        "to the Java scorer as Flink global job parameters.",
        "",
        "| key | type | default | JVM | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for option in OPTIONS:
        default = format_default(option) if format_default else repr(option.default)
        kind = option.type.__name__
        if option.choices:
            kind = " \\| ".join(option.choices)
        lines.append(
            f"| `{option.key}` | {kind} | `{default}` | "
            f"{'yes' if option.jvm else ''} | {option.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown(lambda option: _format_value(option.default)))
