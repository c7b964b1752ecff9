"""Score a Flink table from a PyFlink program: one call for either scoring path.

Call `prepare_pyflink()` before the program creates its first PyFlink
environment: the JVM then loads Flink's lib folder with pyscoring's and
TensorFlow Java's jars (build/flink-lib, or PYSCORING_FLINK_LIB_DIR).

`register_scorer(table_env, name, model_dir, input_table)` picks the
scoring path of the export as deploy does (see `deploy.choose_path`) and
registers the temporary view `name`: every column of `input_table`, then
the signature's outputs, `model_version`, `score_error_code` and
`score_error`. The view has this schema on both paths, so SQL written
against it does not change when a model moves from one path to the other:

    path = register_scorer(table_env, "scored", "exports/census", "events")
    table_env.execute_sql("INSERT INTO sink SELECT * FROM scored WHERE score_error_code IS NULL")

On the JVM path the view reads `pyscoring_predict`; on the PS path it is
the output of an ML cluster added to the job (pyscoring.serving.ps_path).
The PS path's job keeps running after a bounded input ends, because the
AM's tick source never ends. Stop it once its output is complete. `pyscoring
deploy` stops such a job itself with a draining savepoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from pyscoring import deploy, manifest
from pyscoring.config import Config

LOG = logging.getLogger(__name__)

# Job settings each path needs; register_scorer sets those the caller left unset.
_COMMON_SETTINGS = ("table.exec.async-table.max-concurrent-operations",
                    "table.exec.async-table.timeout", "table.exec.async-table.retry-strategy")


def prepare_pyflink() -> Path:
    """Point PyFlink at the lib folder with pyscoring's jars; returns the folder.

    Call it before the first PyFlink environment of the process is created.
    """
    from pyscoring._internal import flink_env

    return flink_env.prepare_environment()


def table_columns(table_env, table_name: str) -> list[tuple[str, str]]:
    """Return (name, Flink SQL type) of each column of `table_name`, without NOT NULL."""
    schema = table_env.from_path(table_name)._j_table.getResolvedSchema()  # noqa: SLF001
    columns = []
    for column in schema.getColumns():
        sql_type = column.getDataType().getLogicalType().asSummaryString()
        columns.append((column.getName(), sql_type.replace(" NOT NULL", "")))
    return columns


def _set_unset(table_env, settings: dict[str, str], keys) -> None:
    configuration = table_env.get_config()
    for key in keys:
        if configuration.get(key, None) is None:
            configuration.set(key, settings[key])


def register_scorer(table_env, name: str, model_dir, input_table: str,
                    config: Config | None = None) -> str:
    """Register the view `name` of `input_table` scored by the export in `model_dir`.

    Returns the scoring path, "jvm" or "ps". `config` supplies scoring.*
    keys (scoring.path forces a path), the PS path's node counts, train.*
    node settings and metrics.*. Its train.run-dir receives the PS path's
    cluster logs (a new temporary folder when unset). Raises
    deploy.DeployError when the model cannot score the table's columns.
    """
    config = config or Config()
    model_path, version_dir = deploy.resolve_model(Path(model_dir),
                                                   config["scoring.model-version"])
    model = manifest.read_manifest(version_dir)
    deploy.check_model_files(version_dir, None if model_path == version_dir else model_path)
    path, reason = deploy.choose_path(config, model)
    if path == deploy.PS_PATH:
        deploy.check_variable_files(version_dir)
    columns = table_columns(table_env, input_table)
    features = deploy.map_features(model, deploy.InputFormat(tuple(columns)))
    outputs = model["signature"]["outputs"]
    output_names = [tensor["name"] for tensor in outputs]
    clashes = sorted(set(output_names + ["model_version", "score_error_code", "score_error"])
                     & {column for column, _ in columns})
    if clashes:
        raise deploy.DeployError(
            f"{input_table} already has the columns {', '.join(clashes)}, which the scores "
            "add; rename them in a view first")
    settings = deploy.flink_settings(config, "", Path(os.devnull))
    _set_unset(table_env, settings, _COMMON_SETTINGS)
    LOG.info("Registering %s: model %s version %d on the %s path: %s", name,
             model["model_name"], model["version"], path.upper(), reason)
    if path == deploy.JVM_PATH:
        _register_jvm(table_env, name, model_path.resolve(), input_table, columns, features,
                      output_names)
    else:
        _register_ps(table_env, name, config, model, version_dir.resolve(), input_table,
                     columns, features, outputs)
    return path


def _register_jvm(table_env, name: str, model_path: Path, input_table: str, columns, features,
                  output_names) -> None:
    if "pyscoring_predict" not in table_env.list_user_defined_functions():
        table_env.create_java_temporary_function(
            "pyscoring_predict", "io.pyscoring.scoring.PredictFunction")
    aliases = [f"out_{index}" for index in range(len(output_names))]
    query = (
        "SELECT " + "".join(f"t.`{column}`, " for column, _ in columns)
        + "".join(f"r.{alias} AS `{output}`, " for alias, output in zip(aliases, output_names))
        + "r.model_version, r.score_error_code, r.score_error FROM "
        + f"`{input_table}` AS t, LATERAL TABLE(pyscoring_predict("
        + deploy.sql_literal(str(model_path)) + ", "
        + ", ".join(f"t.`{column}`" for column in features) + ")) AS r("
        + ", ".join(aliases) + ", model_version, score_error_code, score_error)"
    )
    # The DataStream round trip keeps the planner from pushing a filter on
    # the view into the async correlate (see deploy.register_scored_view).
    scored = table_env.sql_query(query)
    table_env.create_temporary_view(name, table_env.from_data_stream(
        table_env.to_data_stream(scored)))


def _register_ps(table_env, name: str, config: Config, model: dict, version_dir: Path,
                 input_table: str, columns, features, outputs) -> None:
    from pyscoring.serving import ps_path

    failover = table_env.get_config().get("jobmanager.execution.failover-strategy", None)
    if failover != "full":
        LOG.warning(
            "The PS path needs jobmanager.execution.failover-strategy: full in the job's "
            "configuration (found %s); with region failover a failed node leaves the AM and "
            "the parameter servers running with the state of a dead cluster", failover)
    run_dir = Path(config["train.run-dir"] or tempfile.mkdtemp(prefix=f"pyscoring-{name}-"))
    targets_file = Path(config["metrics.targets-file"] or run_dir / "prometheus-targets.json")
    rows_query = (
        "SELECT " + ", ".join(f"t.`{column}`" for column, _ in columns) + ", "
        + ", ".join(f"t.`{column}` AS feature_{index}" for index, column in enumerate(features))
        + f" FROM `{input_table}` AS t"
    )
    try:
        ps_path.build(
            table_env, config=config, model=model, version_dir=version_dir,
            rows_query=rows_query, carried=columns, feature_count=len(features),
            output_names=[tensor["name"] for tensor in outputs],
            output_sql_types=[deploy.sql_type_of(tensor) for tensor in outputs],
            run_dir=run_dir.resolve(), targets_file=targets_file, view_name=name,
        )
    except ps_path.PsPathError as error:
        raise deploy.DeployError(str(error)) from None
