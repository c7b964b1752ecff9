"""Build and run the streaming scoring job on Flink.

The job reads rows, maps them to the model's signature inputs by column
name, scores them with the Java table function `pyscoring_predict` (the JVM
path, with no Python operator in the job) and writes one output row per
input row: the scores, or a dead letter with the reason.

This module never imports TensorFlow: the scorer's TensorFlow runtime lives
in Flink's JVM, and two TensorFlow runtimes must not share a process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Mapping

from pyscoring import census, jobs, manifest
from pyscoring.config import Config, ConfigError
from pyscoring.metrics import TargetsFileWriter, backlog_reporter_settings

LOG = logging.getLogger(__name__)

# Dead letters keep at most this many characters of the raw row in `raw`, so
# one huge row cannot bloat the dead-letter output; the reason of a cut row
# ends with how many characters the row had. A line that is not valid UTF-8
# is written with its invalid bytes as \xNN and its backslashes doubled.
RAW_MAX_CHARS = 16384

# Reason code of a parsed row whose model input column is NULL, which the
# line parser makes of a numeric field of only "?".
MISSING_VALUE = "MISSING_VALUE"

_SQL_TYPES = {
    "int64": "BIGINT",
    "int32": "INT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "STRING",
}


# Flink SQL types that pyscoring_parse can produce from a text field.
_PARSE_TYPES = frozenset({"BIGINT", "INT", "DOUBLE", "FLOAT", "BOOLEAN", "STRING"})


class DeployError(ValueError):
    """The model, the input or the options cannot make a scoring job."""


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """How to split a text line into named, typed columns.

    `columns` pairs each column name with its Flink SQL type. Lines that
    start with `comment_prefix` are not rows and are skipped.
    """

    columns: tuple[tuple[str, str], ...]
    delimiter: str = ","
    comment_prefix: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def schema_literal(self) -> str:
        return ", ".join(f"`{name}` {sql_type}" for name, sql_type in self.columns)

    @staticmethod
    def parse(spec: str, delimiter: str = ",") -> "InputFormat":
        """Parse `name TYPE, name TYPE, ...` as given on the command line."""
        columns = []
        for part in spec.split(","):
            fields = part.split()
            if len(fields) != 2:
                raise DeployError(
                    f"invalid column {part.strip()!r} in --columns; expected NAME TYPE, "
                    "for example 'age BIGINT, workclass STRING'"
                )
            sql_type = fields[1].upper()
            if sql_type not in _PARSE_TYPES:
                raise DeployError(
                    f"invalid type {fields[1]!r} of column {fields[0]!r} in --columns; "
                    f"the line parser reads {', '.join(sorted(_PARSE_TYPES))}"
                )
            columns.append((fields[0], sql_type))
        return InputFormat(tuple(columns), delimiter)


CENSUS_FORMAT = InputFormat(
    columns=tuple((column.name, _SQL_TYPES[column.dtype]) for column in census.COLUMNS),
    delimiter=census.FIELD_SEPARATOR,
    comment_prefix=census.COMMENT_PREFIX,
)


@dataclasses.dataclass
class DeployRequest:
    """Everything `deploy` needs to build one scoring job."""

    model_dir: Path
    output_dir: Path
    input_path: Path | None = None
    input_format: InputFormat = CENSUS_FORMAT
    # Flink SQL connector options that replace the line source or the file
    # sinks; with source_options, input_format.columns is the table schema.
    source_options: Mapping[str, str] | None = None
    sink_options: Mapping[str, str] | None = None
    config: Config = dataclasses.field(default_factory=Config)
    # Savepoint or retained checkpoint to resume from (see pyscoring.jobs).
    restore_path: Path | None = None


@dataclasses.dataclass
class DeployedJob:
    """A submitted scoring job."""

    job_id: str
    version_dir: Path
    model_name: str
    model_version: int
    targets_file: Path
    table_result: object
    targets_writer: TargetsFileWriter
    # Flink's JSON execution plan: every operator of the job.
    execution_plan: str = ""
    # HOST:PORT of the REST endpoint of the cluster that runs the job.
    rest_address: str = ""
    # Keeps pyscoring's log lines on this process's handlers while Python
    # operators run in this process (see cluster.job.DriverLogging).
    driver_logging: object | None = None

    def __post_init__(self) -> None:
        # Completion is read from this future: once a job ends, PyFlink shuts its
        # mini cluster down and status queries through the job client fail.
        self._result = self.table_result.get_job_client().get_job_execution_result()

    def done(self) -> bool:
        """Return True once the job has finished, failed or been cancelled."""
        return self._result.done()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the job ends or `timeout_s` passes; return whether it ended.

        Raises the job's failure when it failed.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        self._restore_logging()
        self._result.result()
        return True

    def _restore_logging(self) -> None:
        if self.driver_logging is not None:
            self.driver_logging.restore()
            self.driver_logging = None

    def cancel(self) -> None:
        if not self.done():
            self.table_result.get_job_client().cancel().result()
            LOG.info("Cancelled job %s", self.job_id)
        self._restore_logging()


JVM_PATH = "jvm"
PS_PATH = "ps"


def choose_path(config: Config, model: dict) -> tuple[str, str]:
    """Return the scoring path of `model` ("jvm" or "ps") and the reason for the choice.

    auto takes the PS path when the bytes in the version's variables/ folder
    exceed scoring.jvm.max-model-bytes. Partitioned variables alone never
    route a model to the PS path. Raises DeployError when scoring.path=jvm
    names a model over that budget.
    """
    forced = config["scoring.path"]
    budget = config["scoring.jvm.max-model-bytes"]
    variable_bytes = model["variables"]["bytes"]
    over = variable_bytes > budget
    size = (f"{variable_bytes} bytes of variables, {'above' if over else 'within'} "
            f"scoring.jvm.max-model-bytes={budget}")
    if forced == JVM_PATH and over:
        raise DeployError(
            f"model {model['model_name']} version {model['version']} has {size}, so it "
            "cannot be loaded into a task-manager JVM; raise the limit or use --path ps"
        )
    if forced in (JVM_PATH, PS_PATH):
        return forced, f"scoring.path={forced} ({size})"
    if over:
        return PS_PATH, size
    partitioned = " (its partitioned variables fit too)" if model["variables"].get("partitioned") else ""
    return JVM_PATH, size + partitioned


def sql_literal(text: str) -> str:
    """Return `text` as a Flink SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _with_clause(options: Mapping[str, str]) -> str:
    return ", ".join(f"{sql_literal(key)} = {sql_literal(str(value))}" for key, value in options.items())


def resolve_version_dir(model_dir: Path) -> Path:
    """Return the newest complete version of an export directory, or the version given."""
    model_dir = Path(model_dir)
    if (model_dir / manifest.MANIFEST_FILE).is_file():
        return model_dir
    if not model_dir.is_dir():
        raise DeployError(
            f"model directory {model_dir} does not exist; pass the EXPORT_DIR that "
            "`pyscoring train` wrote, or one of its version folders"
        )
    version = manifest.latest_version(model_dir)
    if version is None:
        nested = sorted(
            str(child) for child in model_dir.iterdir()
            if child.is_dir() and manifest.latest_version(child) is not None
        )
        if nested:
            raise DeployError(
                f"no complete model version in {model_dir}, but these folders below it are "
                f"export directories: {', '.join(nested)}; pass one of them as --model"
            )
        raise DeployError(
            f"no complete model version in {model_dir}: expected a folder <N>/ holding "
            f"{manifest.MANIFEST_FILE}; train and export a model first"
        )
    return Path(manifest.version_path(model_dir, version))


def resolve_model(model_dir: Path, pinned_version: int = 0) -> tuple[Path, Path]:
    """Return the path the scorer gets and the version folder it starts with.

    An export directory resolves to its newest complete version, and the
    scorer gets the export directory, so it swaps to newer versions. A
    version folder, or `pinned_version` above 0, pins that version: the
    scorer gets the version folder.
    """
    model_dir = Path(model_dir)
    if pinned_version and not (model_dir / manifest.MANIFEST_FILE).is_file():
        version_dir = Path(manifest.version_path(model_dir, pinned_version))
        if not (version_dir / manifest.MANIFEST_FILE).is_file():
            versions = manifest.list_versions(model_dir)
            raise DeployError(
                f"scoring.model-version={pinned_version}: {version_dir} is not a complete "
                f"version (complete versions in {model_dir}: "
                f"{', '.join(map(str, versions)) or 'none'}); pin one of those or set 0"
            )
        return version_dir, version_dir
    version_dir = resolve_version_dir(model_dir)
    return (version_dir if version_dir == model_dir else model_dir), version_dir


def check_model_files(version_dir: Path, export_dir: Path | None = None) -> None:
    """Check that a version's files resolve inside its export directory.

    The version folder must resolve inside `export_dir` (default: its parent),
    and the manifest, saved_model.pb and everything under variables/ and
    assets/ inside the version folder, with symbolic links followed. The Java
    scorer applies the same rule to every version it loads.
    """
    version_dir = Path(version_dir)
    export_real = Path(os.path.realpath(export_dir or version_dir.absolute().parent))
    version_real = Path(os.path.realpath(version_dir))
    _require_inside(version_dir, version_real, export_real, "export directory")
    for name in (manifest.MANIFEST_FILE, "saved_model.pb", "variables", "assets"):
        entry = version_dir / name
        if not os.path.lexists(entry):
            continue
        paths = [entry]
        if entry.is_dir():
            for root, folders, files in os.walk(entry):
                paths.extend(Path(root) / child for child in folders + files)
        for path in paths:
            _require_inside(path, Path(os.path.realpath(path)), version_real, "version folder")


def check_variable_files(version_dir: Path) -> None:
    """Raise DeployError unless `<N>/variables/` contains an index and every data shard it needs.

    The PS path loads no model before the job starts, so a missing shard
    would otherwise show only when the parameter servers restore it.
    """
    variables = Path(version_dir) / "variables"
    if not (variables / "variables.index").is_file():
        raise DeployError(
            f"{variables / 'variables.index'} is missing, so the model's variables cannot be "
            "restored; re-export the model")
    shards = sorted(path.name for path in variables.glob("variables.data-*-of-*"))
    if not shards:
        raise DeployError(
            f"{variables} has no variables.data-* files, so the model's variables cannot be "
            "restored; re-export the model")
    expected = int(shards[0].rsplit("-of-", 1)[1])
    missing = [f"variables.data-{index:05d}-of-{expected:05d}" for index in range(expected)
               if f"variables.data-{index:05d}-of-{expected:05d}" not in shards]
    if missing:
        raise DeployError(
            f"{variables} lacks {', '.join(missing)}, so the model's variables cannot be "
            "restored; copy the whole version folder or re-export the model")


def _require_inside(path: Path, real: Path, root: Path, root_kind: str) -> None:
    if real != root and root not in real.parents:
        raise DeployError(
            f"{path} resolves to {real}, outside the {root_kind} {root}; pyscoring loads "
            "only files inside the export directory, so copy the files into the version "
            "folder instead of linking them"
        )


def preflight(version_dir: Path, config: Config) -> None:
    """Load the version with TensorFlow Java in Flink's client JVM, or raise DeployError.

    The check covers a corrupt SavedModel, ops that TensorFlow Java's runtime
    lacks, the variables budget and the SavedModel's signature against the
    manifest (see io.pyscoring.scoring.ModelCheck). Call it after
    create_table_environment, which starts the JVM.
    """
    from py4j.protocol import Py4JJavaError
    from pyflink.java_gateway import get_gateway

    model_check = get_gateway().jvm.io.pyscoring.scoring.ModelCheck
    try:
        model_check.preflight(str(version_dir), config["scoring.jvm.max-model-bytes"])
    except Py4JJavaError as error:
        message = error.java_exception.getMessage()
        raise DeployError(f"the model in {version_dir} cannot be scored: {message}") from None
    LOG.info("Pre-flight check passed: TensorFlow Java loads %s", version_dir)


def map_features(model: dict, input_format: InputFormat) -> list[str]:
    """Return, for each signature input in order, the input column that feeds it."""
    mapping = model.get("feature_mapping") or {}
    available = dict(input_format.columns)
    columns = []
    for tensor in model["signature"]["inputs"]:
        column = mapping.get(tensor["name"], tensor["name"])
        if column not in available:
            raise DeployError(
                f"the model input {tensor['name']!r} needs the column {column!r}, which the "
                f"input does not have (its columns: {', '.join(input_format.names)}); add it "
                "with --columns or rename the column"
            )
        expected = _SQL_TYPES.get(tensor["dtype"])
        given = available[column]
        if expected and given.split("(")[0] != expected and not (
            expected == "STRING" and given.startswith("VARCHAR")
        ):
            raise DeployError(
                f"the column {column!r} is {given} but the model input {tensor['name']!r} is "
                f"{tensor['dtype']} ({expected}); declare the column as {expected}"
            )
        columns.append(column)
    return columns


def score_columns(
    config: Config, fmt: InputFormat, outputs: list[str]
) -> tuple[list[str], list[str]]:
    """Return the input columns copied into score rows and the score rows' output names.

    Reads deploy.pass-through and deploy.rename-outputs. Raises DeployError
    for an unknown column or output, and when two score columns would share
    a name.
    """
    spec = config["deploy.pass-through"].strip()
    if spec == "*":
        pass_through = [name for name in fmt.names if name != "key"]
    else:
        pass_through = [name.strip() for name in spec.split(",") if name.strip()]
        unknown = [name for name in pass_through if name not in fmt.names]
        if unknown:
            raise DeployError(
                f"deploy.pass-through names {', '.join(unknown)}, which the input does not "
                f"have (its columns: {', '.join(fmt.names)}); list input columns, or * for all"
            )
    renames = {}
    for item in config["deploy.rename-outputs"].split(","):
        if not item.strip():
            continue
        old, sep, new = (part.strip() for part in item.partition("="))
        if not sep or not old or not new:
            raise DeployError(
                f"deploy.rename-outputs: invalid item {item.strip()!r}; expected "
                "OUTPUT=NAME such as output_0=score"
            )
        if old not in outputs:
            raise DeployError(
                f"deploy.rename-outputs renames {old!r}, which is not a model output "
                f"(the outputs: {', '.join(outputs)})"
            )
        renames[old] = new
    output_names = [renames.get(name, name) for name in outputs]
    seen = set()
    for name in ["key", *pass_through, *output_names, "model_version"]:
        if name in seen:
            raise DeployError(
                f"the score rows would have two columns named {name!r}; rename the output "
                "with --rename OUTPUT=NAME or leave the input column out of --pass-through"
            )
        seen.add(name)
    return pass_through, output_names


def event_time_column(config: Config, fmt: InputFormat) -> str | None:
    """Return the input column of deploy.event-time-column, or None when it is unset."""
    column = config["deploy.event-time-column"].strip()
    if not column:
        return None
    types = dict(fmt.columns)
    if column not in types:
        raise DeployError(
            f"deploy.event-time-column names {column!r}, which the input does not have "
            f"(its columns: {', '.join(fmt.names)})"
        )
    sql_type = types[column].upper()
    if sql_type != "BIGINT" and not sql_type.startswith("TIMESTAMP"):
        raise DeployError(
            f"deploy.event-time-column {column!r} is {sql_type}; declare it as BIGINT "
            "(epoch milliseconds), TIMESTAMP_LTZ or TIMESTAMP"
        )
    return column


def sql_type_of(tensor: dict) -> str:
    """Return the Flink SQL type of a manifest tensor with one value per row."""
    return _SQL_TYPES[tensor["dtype"]]


def carried_columns(config: Config, fmt: InputFormat, pass_through: list[str]) -> list[tuple[str, str]]:
    """Return (alias, input column) of the input columns that travel with a row to its score."""
    # Positional aliases, so that no input column name can clash with the
    # view's own columns.
    carried = [(f"in_{index}", column) for index, column in enumerate(pass_through)]
    event_time = event_time_column(config, fmt)
    if event_time:
        carried.append(("event_time", event_time))
    return carried


def build_statements(
    request: DeployRequest, version_dir: Path, model: dict, path_label: str = JVM_PATH,
) -> tuple[list[str], str, list[str]]:
    """Return the DDL statements, the scoring query and the INSERT statements of the job.

    The scoring query becomes the view `pyscoring_scored` through a DataStream
    round trip (see `register_scored_view`); the PS path registers that view
    itself (pyscoring.serving.ps_path). `path_label` labels the dead-letter
    counts.
    """
    fmt = request.input_format
    feature_columns = map_features(model, fmt)
    outputs = [tensor["name"] for tensor in model["signature"]["outputs"]]
    output_types = [
        _SQL_TYPES[tensor["dtype"]] if len(tensor["shape"]) == 1
        else f"ARRAY<{_SQL_TYPES[tensor['dtype']]}>"
        for tensor in model["signature"]["outputs"]
    ]
    pass_through, output_names = score_columns(request.config, fmt, outputs)
    event_time = event_time_column(request.config, fmt)

    ddl = []
    if request.source_options:
        # A user table: the connector and its format deliver typed columns.
        columns_sql = ", ".join(f"`{name}` {sql_type}" for name, sql_type in fmt.columns)
        ddl.append(
            f"CREATE TEMPORARY TABLE pyscoring_source ({columns_sql}) "
            f"WITH ({_with_clause(request.source_options)})"
        )
        key_column = "key" if "key" in fmt.names else fmt.names[0]
        # A `key` input column becomes the view's `key`, so it is not selected twice.
        ddl.append(
            "CREATE TEMPORARY VIEW pyscoring_parsed AS SELECT "
            f"CAST('table' AS STRING) AS source, CAST(`{key_column}` AS STRING) AS `key`, "
            "CAST(NULL AS STRING) AS line, "
            + ", ".join(f"`{name}`" for name in fmt.names if name != "key")
            + ", CAST(NULL AS STRING) AS error_code, CAST(NULL AS STRING) AS error "
            "FROM pyscoring_source"
        )
    else:
        if request.input_path is None:
            raise DeployError("no input: pass --input PATH or Flink source options")
        input_path = Path(request.input_path).resolve()
        if not input_path.exists():
            raise DeployError(f"input {input_path} does not exist; pass an existing file or folder")
        source = {
            "connector": "pyscoring-lines",
            "path": str(input_path),
            "rows-per-second": str(request.config["source.rows-per-second"]),
            "loop": "true" if request.config["source.loop"] else "false",
        }
        ddl.append(
            "CREATE TEMPORARY TABLE pyscoring_source (source STRING, line_number BIGINT, "
            f"`key` STRING, line STRING, line_bytes BYTES) WITH ({_with_clause(source)})"
        )
        where = ""
        if fmt.comment_prefix:
            where = f" WHERE s.line IS NULL OR s.line NOT LIKE {sql_literal(fmt.comment_prefix + '%')}"
        aliases = ", ".join(f"`{name}`" for name in fmt.names)
        # `line` of a line that is not valid UTF-8 is NULL; its escaped bytes
        # take its place, so the dead letter's raw column shows them.
        ddl.append(
            "CREATE TEMPORARY VIEW pyscoring_parsed AS SELECT s.source, s.`key`, "
            "COALESCE(s.line, pyscoring_escape_bytes(s.line_bytes)) AS line, "
            + ", ".join(f"p.`{name}`" for name in fmt.names)
            + ", p.error_code, p.error FROM pyscoring_source AS s, "
            f"LATERAL TABLE(pyscoring_parse(s.line, {sql_literal(fmt.schema_literal())}, "
            f"{sql_literal(fmt.delimiter)}, s.line_bytes)) AS p({aliases}, error_code, error)" + where
        )

    ddl.append(_checked_view(fmt, model, feature_columns))
    ddl.append(
        "CREATE TEMPORARY VIEW pyscoring_valid AS SELECT * FROM pyscoring_checked "
        "WHERE error_code IS NULL"
    )
    score_aliases = [f"out_{index}" for index in range(len(outputs))]
    arguments = ", ".join(f"v.`{column}`" for column in feature_columns)
    carried = carried_columns(request.config, fmt, pass_through)
    scoring_query = (
        "SELECT v.source, v.`key`, v.line, "
        + "".join(f"v.`{column}` AS {alias}, " for alias, column in carried)
        + ", ".join(f"r.{alias}" for alias in score_aliases)
        + ", r.model_version, r.score_error_code, r.score_error FROM pyscoring_valid AS v, "
        f"LATERAL TABLE(pyscoring_predict({sql_literal(str(version_dir))}, {arguments})) AS r("
        + ", ".join(score_aliases)
        + ", model_version, score_error_code, score_error)"
    )

    output_dir = Path(request.output_dir).resolve()
    scores_columns = ", ".join(
        ["`key` STRING"]
        + [f"`{name}` {dict(fmt.columns)[name]}" for name in pass_through]
        + [f"`{name}` {sql_type}" for name, sql_type in zip(output_names, output_types)]
        + ["model_version BIGINT"]
    )
    dead_columns = "`source` STRING, `key` STRING, `reason_code` STRING, `reason` STRING, `raw` STRING"
    sink = complete_kafka_sink_options(request.sink_options, request.config)
    if sink and "connector" not in sink:
        raise DeployError(
            "--sink-option replaces the whole scores table, so it needs connector=...; "
            f"got only {', '.join(sorted(sink))}"
        )
    scores_options = dict(sink) if sink else file_sink_options(
        output_dir / "scores", request.config
    )
    dead_options = file_sink_options(output_dir / "dead-letters", request.config)
    if sink and sink.get("connector") != "filesystem":
        dead_options = dict(sink)
        # Two exactly-once Kafka sinks with one transactional-id prefix would
        # fence each other's transactions, so the dead letters get their own.
        for key in ("topic", "table-name", "path", "sink.transactional-id-prefix"):
            if key in dead_options:
                dead_options[key] = f"{dead_options[key]}-dead-letters"
    ddl.append(f"CREATE TEMPORARY TABLE pyscoring_scores ({scores_columns}) WITH ({_with_clause(scores_options)})")
    ddl.append(f"CREATE TEMPORARY TABLE pyscoring_dead_letters ({dead_columns}) WITH ({_with_clause(dead_options)})")

    model_name = sql_literal(model["model_name"])
    raw = f"SUBSTRING(line, 1, {RAW_MAX_CHARS})"

    def reason(column: str) -> str:
        return (
            f"CASE WHEN CHAR_LENGTH(line) > {RAW_MAX_CHARS} THEN CONCAT({column}, "
            f"' (raw holds the first {RAW_MAX_CHARS} of ', CAST(CHAR_LENGTH(line) AS STRING), "
            f"' characters)') ELSE {column} END"
        )

    # The latency function returns model_version unchanged; it records each
    # row's end-to-end latency as the row reaches the scores sink.
    version_column = "model_version"
    if event_time:
        version_column = (
            f"pyscoring_end_to_end_latency(event_time, {sql_literal(model['model_name'])}, "
            "model_version)"
        )
    inserts = [
        "INSERT INTO pyscoring_scores SELECT `key`, "
        + "".join(f"in_{index} AS `{name}`, " for index, name in enumerate(pass_through))
        + ", ".join(f"{alias} AS `{name}`" for alias, name in zip(score_aliases, output_names))
        + f", {version_column} FROM pyscoring_scored WHERE score_error_code IS NULL",
        "INSERT INTO pyscoring_dead_letters "
        f"SELECT source, `key`, pyscoring_count_dead_letter({model_name}, '{path_label}', error_code, "
        f"CAST(NULL AS BIGINT)), {reason('error')}, {raw} FROM pyscoring_checked "
        "WHERE error_code IS NOT NULL "
        f"UNION ALL SELECT source, `key`, pyscoring_count_dead_letter({model_name}, '{path_label}', "
        f"score_error_code, model_version), {reason('score_error')}, {raw} "
        "FROM pyscoring_scored WHERE score_error_code IS NOT NULL",
    ]
    return ddl, scoring_query, inserts


def complete_kafka_sink_options(
    options: Mapping[str, str] | None, config: Config
) -> dict[str, str] | None:
    """Return sink options with what an exactly-once Kafka sink needs checked and filled in.

    Options of other connectors, and of Kafka sinks with another delivery
    guarantee, come back unchanged. An exactly-once Kafka sink must name
    sink.transactional-id-prefix, and gets properties.transaction.timeout.ms
    from deploy.kafka.transaction-timeout-ms when it leaves the timeout out:
    the connector's own default of one hour exceeds the broker's default
    transaction.max.timeout.ms of 15 minutes, and the producer then fails to start.
    """
    if not options:
        return None
    options = dict(options)
    if options.get("connector") not in ("kafka", "upsert-kafka"):
        return options
    if options.get("sink.delivery-guarantee", "").lower() != "exactly-once":
        return options
    if not options.get("sink.transactional-id-prefix"):
        raise DeployError(
            "an exactly-once Kafka sink needs a transactional-id prefix that no other job "
            "on the Kafka cluster uses; add --sink-option sink.transactional-id-prefix=NAME"
        )
    if "properties.transaction.timeout.ms" not in options:
        timeout_ms = config["deploy.kafka.transaction-timeout-ms"]
        options["properties.transaction.timeout.ms"] = str(timeout_ms)
        LOG.info("Setting properties.transaction.timeout.ms=%d on the exactly-once Kafka sink "
                 "(deploy.kafka.transaction-timeout-ms)", timeout_ms)
    return options


def _checked_view(fmt: InputFormat, model: dict, feature_columns: list[str]) -> str:
    """Return the view `pyscoring_checked`: parsed rows with NULL model inputs rejected.

    A row whose column for a model input is NULL gets the reason code
    MISSING_VALUE, because the scorer needs a value for every input. The
    first such column names the row's reason.
    """
    codes = ["WHEN error_code IS NOT NULL THEN error_code"]
    reasons = ["WHEN error_code IS NOT NULL THEN error"]
    for tensor, column in zip(model["signature"]["inputs"], feature_columns):
        codes.append(f"WHEN `{column}` IS NULL THEN '{MISSING_VALUE}'")
        reason = (
            f"column '{column}' has no value ('?' in a numeric field, or NULL), and the "
            f"model input '{tensor['name']}' needs one; fill in the value or drop the row"
        )
        reasons.append(f"WHEN `{column}` IS NULL THEN {sql_literal(reason)}")
    columns = ", ".join(f"`{name}`" for name in fmt.names if name != "key")
    return (
        f"CREATE TEMPORARY VIEW pyscoring_checked AS SELECT source, `key`, line, {columns}, "
        f"CASE {' '.join(codes)} END AS error_code, "
        f"CASE {' '.join(reasons)} END AS error FROM pyscoring_parsed"
    )


def file_sink_options(path: Path, config: Config) -> dict[str, str]:
    """Return the options of a JSON file sink whose output is committed at checkpoints.

    Flink's filesystem sink rolls a row-format part file after 30 minutes by
    default and commits only rolled files, so the rollover interval follows
    the checkpoint interval: a row becomes visible within about two
    checkpoint intervals.
    """
    interval_ms = config["deploy.checkpoint-interval-ms"]
    return {
        "connector": "filesystem",
        "path": str(path),
        "format": "json",
        "sink.rolling-policy.rollover-interval": f"{interval_ms} ms",
        "sink.rolling-policy.check-interval": f"{max(interval_ms // 2, 100)} ms",
    }


def _job_parameters(config: Config, targets_file: Path, path_label: str) -> str:
    parameters = config.jvm_job_parameters()
    parameters["metrics.targets-file"] = str(targets_file)
    # Read by io.pyscoring.metrics.EndToEndLatencyFunction for its path label.
    parameters["pyscoring.path-label"] = path_label
    # Flink cannot parse an empty map value; an absent key gives the Java
    # side its default, which equals the Python default.
    parameters = {key: value for key, value in parameters.items() if value != ""}
    for key, value in parameters.items():
        if "," in value or ":" in key:
            raise ConfigError(f"{key}: the value {value!r} must not contain a comma")
    return ",".join(f"{key}:{value}" for key, value in parameters.items())


def flink_settings(config: Config, job_name: str, targets_file: Path,
                   path_label: str = JVM_PATH) -> dict[str, str]:
    """Return the Flink configuration of a scoring job on the path `path_label`."""
    bind_host = config["deploy.bind-host"]
    on_cluster = bool(config["deploy.jobmanager"])
    # Injected test failures get restarts of their own, so they do not use up
    # the budget for real failures.
    restarts = jobs.restart_settings(
        config, "deploy", on_cluster, len(config.injected_failures()))
    # A cluster's reporters come from its own configuration (see
    # pyscoring.standalone); a mini cluster takes them from the job's settings.
    reporter = {} if on_cluster else backlog_reporter_settings(
        config["metrics.host"], config["metrics.port-range"])
    return {
        **reporter,
        **restarts,
        "pipeline.name": job_name,
        "parallelism.default": str(config["deploy.parallelism"]),
        "execution.runtime-mode": "STREAMING",
        "execution.checkpointing.interval": f"{config['deploy.checkpoint-interval-ms']} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        # The async operator caps rows in flight per subtask, which also caps the
        # batch size: 10 by default, so it must follow the batch settings.
        "table.exec.async-table.max-concurrent-operations": str(config.effective_in_flight()),
        # Flink fails the job when a row outlives this timeout, so it is set past
        # the scorer's own row timeout, which turns a late row into a dead letter.
        "table.exec.async-table.timeout": f"{config.flink_async_timeout_ms()} ms",
        # Flink 2.3 retries a row whose future failed (3 times by default). The
        # scorer turns every row error into an error row, so a failed future is
        # an injected test failure or a fatal error, which must fail the task.
        "table.exec.async-table.retry-strategy": "NO_RETRY",
        "pipeline.global-job-parameters": _job_parameters(config, targets_file, path_label),
        "jobmanager.bind-host": bind_host,
        "jobmanager.rpc.address": bind_host,
        "taskmanager.bind-host": bind_host,
        "taskmanager.host": bind_host,
        "rest.bind-address": bind_host,
        "rest.address": bind_host,
    }


def create_table_environment(settings: Mapping[str, str]):
    """Create a StreamTableEnvironment with `settings` and pyscoring's SQL functions."""
    from pyscoring._internal import flink_env

    flink_env.prepare_environment()
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    configuration = Configuration()
    for key, value in settings.items():
        configuration.set_string(key, value)
    execution = StreamExecutionEnvironment.get_execution_environment(configuration)
    target = settings.get("execution.target")
    if target and target != "local":
        # Outside `flink run`, Flink 2.3 builds a LocalStreamEnvironment, which
        # overwrites execution.target with "local". The executor is chosen from
        # the environment's configuration at submission, so it is set again here.
        from pyflink.util.java_utils import get_j_env_configuration

        get_j_env_configuration(execution._j_stream_execution_environment).setString(
            "execution.target", target
        )
    environment = StreamTableEnvironment.create(execution)
    for key, value in settings.items():
        environment.get_config().set(key, value)
    environment.create_java_temporary_function(
        "pyscoring_parse", "io.pyscoring.parse.ParseFunction"
    )
    environment.create_java_temporary_function(
        "pyscoring_predict", "io.pyscoring.scoring.PredictFunction"
    )
    environment.create_java_temporary_function(
        "pyscoring_end_to_end_latency", "io.pyscoring.metrics.EndToEndLatencyFunction"
    )
    environment.create_java_temporary_function(
        "pyscoring_escape_bytes", "io.pyscoring.parse.EscapeBytesFunction"
    )
    environment.create_java_temporary_function(
        "pyscoring_count_dead_letter", "io.pyscoring.parse.CountDeadLetterFunction"
    )
    return environment


# Flink 2.3's planner class that numbers execution nodes; it is loaded by the
# planner's own classloader (flink-table-planner-loader), not the application's.
_EXEC_NODE_CONTEXT = "org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext"
_PLANNING_LOCK = threading.Lock()


def reset_operator_ids(environment) -> None:
    """Restart the planner's node numbering, so that a job's operator uids do not depend on earlier jobs.

    With table.exec.uid.generation=ALWAYS (jobs.UID_SETTINGS) the planner
    names each operator `<id>_<transformation>`, and <id> comes from the
    static counter of ExecNodeContext, which grows with every statement the
    JVM plans. Reset before planning, the same statements get the same uids
    in any process, the first deploy of a fresh process included, so a
    second deploy in one process restores the first one's savepoint.
    ExecNodeContext.resetIdCounter() is public in Flink 2.3 (marked for tests).
    The counter is shared by the JVM, so deploy keeps _PLANNING_LOCK from the
    reset until the job is submitted. NOTE: a job that the same process plans
    outside deploy at that moment can still shift the ids.
    """
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = environment._j_tenv.getPlanner().getClass().getClassLoader()  # noqa: SLF001
    context_class = gateway.jvm.java.lang.Class.forName(_EXEC_NODE_CONTEXT, True, loader)
    reset = context_class.getMethod("resetIdCounter", gateway.new_array(gateway.jvm.java.lang.Class, 0))
    reset.invoke(None, gateway.new_array(gateway.jvm.java.lang.Object, 0))


def register_scored_view(environment, scoring_query: str) -> None:
    """Register the scorer's output as the view `pyscoring_scored`.

    The scores and the dead letters both filter this view on its error code.
    Flink 2.3's planner pushes such a filter into the async correlate that
    runs the scorer, and then rejects the plan ("Async correlate does not
    support projections or conditions"). A DataStream round trip is a
    boundary the optimizer does not push through; both sinks reuse the one
    scoring operator.
    """
    scored = environment.sql_query(scoring_query)
    environment.create_temporary_view(
        "pyscoring_scored", environment.from_data_stream(environment.to_data_stream(scored))
    )


def _register_ps_scored_view(environment, request: DeployRequest, version_dir: Path,
                             model: dict, output_dir: Path, targets_file: Path) -> None:
    """Add the PS path (pyscoring.serving.ps_path) as the view `pyscoring_scored`."""
    from pyscoring.serving import ps_path

    fmt = request.input_format
    outputs = model["signature"]["outputs"]
    matrices = [tensor["name"] for tensor in outputs if len(tensor["shape"]) != 1]
    if matrices:
        raise DeployError(
            f"the PS path scores outputs with one value per row; {', '.join(matrices)} "
            "has more dimensions; use --path jvm"
        )
    feature_columns = map_features(model, fmt)
    pass_through, _ = score_columns(request.config, fmt, [tensor["name"] for tensor in outputs])
    carried = carried_columns(request.config, fmt, pass_through)
    types = dict(fmt.columns)
    rows_query = (
        "SELECT v.source, v.`key`, v.line, "
        + "".join(f"v.`{column}` AS {alias}, " for alias, column in carried)
        + ", ".join(f"v.`{column}`" for column in feature_columns)
        + " FROM pyscoring_valid AS v"
    )
    try:
        ps_path.build(
            environment, config=request.config, model=model, version_dir=version_dir,
            rows_query=rows_query,
            carried=[("source", "STRING"), ("key", "STRING"), ("line", "STRING")]
            + [(alias, types[column]) for alias, column in carried],
            feature_count=len(feature_columns),
            output_names=[f"out_{index}" for index in range(len(outputs))],
            output_sql_types=[sql_type_of(tensor) for tensor in outputs],
            run_dir=ps_path.run_dir_of(request.config, output_dir), targets_file=targets_file,
        )
    except ps_path.PsPathError as error:
        raise DeployError(str(error)) from None


def deploy(request: DeployRequest) -> DeployedJob:
    """Submit the scoring job and return at once; see DeployedJob.wait().

    Raises DeployError before anything is submitted when the model cannot be
    scored: a missing directory, a manifest or SavedModel that does not load,
    files outside the export directory, ops TensorFlow Java lacks, or a
    signature that the input columns do not match.
    """
    model_path, version_dir = resolve_model(request.model_dir, request.config["scoring.model-version"])
    try:
        model = manifest.read_manifest(version_dir)
    except manifest.ManifestError as error:
        raise DeployError(f"{error}; re-export the model") from None
    check_model_files(version_dir, None if model_path == version_dir else model_path)
    path, reason = choose_path(request.config, model)
    LOG.info("Scoring model %s version %d on the %s path: %s",
             model["model_name"], model["version"], path.upper(), reason)
    if path == PS_PATH:
        check_variable_files(version_dir)

    output_dir = Path(request.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    targets_file = Path(request.config["metrics.targets-file"] or output_dir / "prometheus-targets.json")
    ddl, scoring_query, inserts = build_statements(request, model_path.resolve(), model, path)
    job_name = f"pyscoring-deploy {model['model_name']} v{model['version']}"
    placement = jobs.place_job(
        request.config["deploy.jobmanager"],
        output_dir,
        jobs.checkpoint_dir_of(request.config, output_dir),
        request.restore_path,
        request.config["deploy.bind-host"],
    )
    settings = flink_settings(request.config, job_name, targets_file, path)
    settings.update(placement.settings)
    if path == PS_PATH:
        from pyscoring.serving import ps_path

        settings.update(ps_path.flink_settings())
    environment = create_table_environment(settings)
    if path == JVM_PATH:
        # The PS path never loads the model into a JVM, this client's included.
        preflight(version_dir.resolve(), request.config)
    for statement in ddl:
        LOG.debug("SQL: %s", statement)
        environment.execute_sql(statement)
    driver_logging = None
    if path == PS_PATH and placement.embedded:
        from pyscoring.cluster.job import DriverLogging

        # The PS path's Python operators run in this process, and PyFlink
        # takes over the root logger's handlers when they start.
        driver_logging = DriverLogging()
    try:
        # The operator uids come from a counter that every plan in this JVM
        # shares, so two deploys in threads of one process plan one at a time.
        with _PLANNING_LOCK:
            reset_operator_ids(environment)
            statement_set = environment.create_statement_set()
            if path == PS_PATH:
                _register_ps_scored_view(
                    environment, request, version_dir.resolve(), model, output_dir, targets_file)
            else:
                register_scored_view(environment, scoring_query)
            for statement in inserts:
                statement_set.add_insert_sql(statement)
            from pyflink.table.explain_detail import ExplainDetail

            execution_plan = statement_set.explain(ExplainDetail.JSON_EXECUTION_PLAN)
            table_result = statement_set.execute()
    except BaseException:
        if driver_logging is not None:
            driver_logging.restore()
        raise
    job_id = str(table_result.get_job_client().get_job_id())
    writer = TargetsFileWriter(targets_file, labels={"job": "pyscoring", "model": model["model_name"]})
    writer.start()
    LOG.info("Submitted job %s (%s) to %s", job_id, job_name, placement.describe())
    if path == PS_PATH and request.source_options is None and not request.config["source.loop"]:
        from pyscoring.serving import ps_path

        ps_path.DrainAtEndOfInput(
            placement.rest_address, job_id, "pyscoring_source", output_dir / "final-savepoint",
            ps_path.run_dir_of(request.config, output_dir) / "status.json").start()
    jobs.write_job_record(output_dir, {
        "job_id": job_id,
        "job_name": job_name,
        "rest_address": placement.rest_address,
        "embedded": placement.embedded,
        "checkpoint_dir": str(placement.checkpoint_dir),
        "restored_from": str(placement.restore_path) if placement.restore_path else None,
        "parallelism": request.config["deploy.parallelism"],
    })
    return DeployedJob(
        job_id=job_id,
        version_dir=version_dir,
        model_name=model["model_name"],
        model_version=model["version"],
        targets_file=targets_file,
        table_result=table_result,
        targets_writer=writer,
        execution_plan=execution_plan,
        rest_address=placement.rest_address,
        driver_logging=driver_logging,
    )


def read_json_lines(folder: Path) -> list[dict]:
    """Read the committed part files of a file sink (hidden in-progress files are skipped)."""
    rows = []
    if not folder.is_dir():
        return rows
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.startswith(".") or name.startswith("_"):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as handle:
                rows.extend(json.loads(line) for line in handle if line.strip())
    return rows
