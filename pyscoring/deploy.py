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
import time
from pathlib import Path
from typing import Mapping

from pyscoring import census, manifest
from pyscoring.config import Config, ConfigError
from pyscoring.metrics import TargetsFileWriter

LOG = logging.getLogger(__name__)

# Dead letters keep at most this many characters of the raw row, so one huge
# row cannot bloat the dead-letter output; the reason names the cause.
RAW_MAX_CHARS = 16384

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
        self._result.result()
        return True

    def cancel(self) -> None:
        if not self.done():
            self.table_result.get_job_client().cancel().result()
            LOG.info("Cancelled job %s", self.job_id)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _with_clause(options: Mapping[str, str]) -> str:
    return ", ".join(f"{_quote(key)} = {_quote(str(value))}" for key, value in options.items())


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


def build_statements(
    request: DeployRequest, version_dir: Path, model: dict
) -> tuple[list[str], str, list[str]]:
    """Return the DDL statements, the scoring query and the INSERT statements of the job.

    The scoring query becomes the view `pyscoring_scored` through a DataStream
    round trip (see `register_scored_view`).
    """
    fmt = request.input_format
    feature_columns = map_features(model, fmt)
    outputs = [tensor["name"] for tensor in model["signature"]["outputs"]]
    output_types = [
        _SQL_TYPES[tensor["dtype"]] if len(tensor["shape"]) == 1
        else f"ARRAY<{_SQL_TYPES[tensor['dtype']]}>"
        for tensor in model["signature"]["outputs"]
    ]

    ddl = []
    if request.source_options:
        # A user table: the connector and its format deliver typed columns.
        columns_sql = ", ".join(f"`{name}` {sql_type}" for name, sql_type in fmt.columns)
        ddl.append(
            f"CREATE TEMPORARY TABLE pyscoring_source ({columns_sql}) "
            f"WITH ({_with_clause(request.source_options)})"
        )
        key_column = "key" if "key" in fmt.names else fmt.names[0]
        ddl.append(
            "CREATE TEMPORARY VIEW pyscoring_parsed AS SELECT "
            f"CAST('table' AS STRING) AS source, CAST(`{key_column}` AS STRING) AS `key`, "
            "CAST(NULL AS STRING) AS line, "
            + ", ".join(f"`{name}`" for name in fmt.names)
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
            f"`key` STRING, line STRING) WITH ({_with_clause(source)})"
        )
        where = ""
        if fmt.comment_prefix:
            where = f" WHERE s.line IS NULL OR s.line NOT LIKE {_quote(fmt.comment_prefix + '%')}"
        aliases = ", ".join(f"`{name}`" for name in fmt.names)
        ddl.append(
            "CREATE TEMPORARY VIEW pyscoring_parsed AS SELECT s.source, s.`key`, s.line, "
            + ", ".join(f"p.`{name}`" for name in fmt.names)
            + ", p.error_code, p.error FROM pyscoring_source AS s, "
            f"LATERAL TABLE(pyscoring_parse(s.line, {_quote(fmt.schema_literal())}, "
            f"{_quote(fmt.delimiter)})) AS p({aliases}, error_code, error)" + where
        )

    ddl.append(
        "CREATE TEMPORARY VIEW pyscoring_valid AS SELECT * FROM pyscoring_parsed "
        "WHERE error_code IS NULL"
    )
    score_aliases = [f"out_{index}" for index in range(len(outputs))]
    arguments = ", ".join(f"v.`{column}`" for column in feature_columns)
    scoring_query = (
        "SELECT v.source, v.`key`, v.line, "
        + ", ".join(f"r.{alias}" for alias in score_aliases)
        + ", r.model_version, r.score_error_code, r.score_error FROM pyscoring_valid AS v, "
        f"LATERAL TABLE(pyscoring_predict({_quote(str(version_dir))}, {arguments})) AS r("
        + ", ".join(score_aliases)
        + ", model_version, score_error_code, score_error)"
    )

    output_dir = Path(request.output_dir).resolve()
    scores_columns = ", ".join(
        ["`key` STRING"]
        + [f"`{name}` {sql_type}" for name, sql_type in zip(outputs, output_types)]
        + ["model_version BIGINT"]
    )
    dead_columns = "`source` STRING, `key` STRING, `reason_code` STRING, `reason` STRING, `raw` STRING"
    sink = request.sink_options
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
        for key in ("topic", "table-name", "path"):
            if key in dead_options:
                dead_options[key] = f"{dead_options[key]}-dead-letters"
    ddl.append(f"CREATE TEMPORARY TABLE pyscoring_scores ({scores_columns}) WITH ({_with_clause(scores_options)})")
    ddl.append(f"CREATE TEMPORARY TABLE pyscoring_dead_letters ({dead_columns}) WITH ({_with_clause(dead_options)})")

    raw = f"SUBSTRING(line, 1, {RAW_MAX_CHARS})"
    inserts = [
        "INSERT INTO pyscoring_scores SELECT `key`, "
        + ", ".join(f"{alias} AS `{name}`" for alias, name in zip(score_aliases, outputs))
        + ", model_version FROM pyscoring_scored WHERE score_error_code IS NULL",
        "INSERT INTO pyscoring_dead_letters "
        f"SELECT source, `key`, error_code, error, {raw} FROM pyscoring_parsed "
        "WHERE error_code IS NOT NULL "
        f"UNION ALL SELECT source, `key`, score_error_code, score_error, {raw} "
        "FROM pyscoring_scored WHERE score_error_code IS NOT NULL",
    ]
    return ddl, scoring_query, inserts


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


def _job_parameters(config: Config, targets_file: Path) -> str:
    parameters = config.jvm_job_parameters()
    parameters["metrics.targets-file"] = str(targets_file)
    for key, value in parameters.items():
        if "," in value or ":" in key:
            raise ConfigError(f"{key}: the value {value!r} must not contain a comma")
    return ",".join(f"{key}:{value}" for key, value in parameters.items())


def flink_settings(config: Config, job_name: str, targets_file: Path) -> dict[str, str]:
    """Return the Flink configuration of a scoring job."""
    return {
        "pipeline.name": job_name,
        "parallelism.default": str(config["deploy.parallelism"]),
        "execution.runtime-mode": "STREAMING",
        "execution.checkpointing.interval": f"{config['deploy.checkpoint-interval-ms']} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(config["deploy.restart-attempts"]),
        "restart-strategy.fixed-delay.delay": "1 s",
        # The async operator caps rows in flight per subtask, which also caps the
        # batch size: 10 by default, so it must follow the batch settings.
        "table.exec.async-table.max-concurrent-operations": str(config.effective_in_flight()),
        "table.exec.async-table.timeout": f"{config['scoring.async-timeout-ms']} ms",
        "pipeline.global-job-parameters": _job_parameters(config, targets_file),
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
    environment = StreamTableEnvironment.create(execution)
    for key, value in settings.items():
        environment.get_config().set(key, value)
    environment.create_java_temporary_function(
        "pyscoring_parse", "io.pyscoring.parse.ParseFunction"
    )
    environment.create_java_temporary_function(
        "pyscoring_predict", "io.pyscoring.scoring.PredictFunction"
    )
    return environment


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


def deploy(request: DeployRequest) -> DeployedJob:
    """Submit the scoring job and return at once; see DeployedJob.wait()."""
    version_dir = resolve_version_dir(request.model_dir)
    model = manifest.read_manifest(version_dir)
    path = request.config["scoring.path"]
    if path == "ps":
        raise DeployError(
            "scoring.path=ps: the PS scoring path is not available in this build; "
            "use --path jvm or auto"
        )
    budget = request.config["scoring.jvm.max-model-bytes"]
    variable_bytes = model["variables"]["bytes"]
    if variable_bytes > budget:
        raise DeployError(
            f"model {model['model_name']} version {model['version']} has {variable_bytes} "
            f"bytes of variables, above scoring.jvm.max-model-bytes={budget}, so it cannot be "
            "loaded into a task-manager JVM; raise the limit"
        )
    LOG.info(
        "Scoring model %s version %d on the JVM path: %d bytes of variables, within "
        "scoring.jvm.max-model-bytes=%d",
        model["model_name"], model["version"], variable_bytes, budget,
    )

    output_dir = Path(request.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    targets_file = Path(request.config["metrics.targets-file"] or output_dir / "prometheus-targets.json")
    ddl, scoring_query, inserts = build_statements(request, version_dir.resolve(), model)
    job_name = f"pyscoring-deploy {model['model_name']} v{model['version']}"
    environment = create_table_environment(flink_settings(request.config, job_name, targets_file))
    for statement in ddl:
        LOG.debug("SQL: %s", statement)
        environment.execute_sql(statement)
    register_scored_view(environment, scoring_query)
    statement_set = environment.create_statement_set()
    for statement in inserts:
        statement_set.add_insert_sql(statement)
    from pyflink.table.explain_detail import ExplainDetail

    execution_plan = statement_set.explain(ExplainDetail.JSON_EXECUTION_PLAN)
    table_result = statement_set.execute()
    job_id = str(table_result.get_job_client().get_job_id())
    writer = TargetsFileWriter(targets_file, labels={"job": "pyscoring", "model": model["model_name"]})
    writer.start()
    LOG.info("Submitted job %s (%s) to the embedded Flink mini cluster", job_id, job_name)
    return DeployedJob(
        job_id=job_id,
        version_dir=version_dir,
        model_name=model["model_name"],
        model_version=model["version"],
        targets_file=targets_file,
        table_result=table_result,
        targets_writer=writer,
        execution_plan=execution_plan,
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
