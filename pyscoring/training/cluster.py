"""Training on the Flink ML cluster: train.workers worker and train.ps parameter-server nodes.

`train_cluster` trains on a bounded file and `train_table` on a bounded
Flink table that the caller builds. `train_stream` trains on an unbounded
Flink stream that the caller builds. Each returns the chief's last export. The cluster itself lives in `pyscoring.cluster`. The model
module is train.model (see `pyscoring.training.model_module`); its
`prepare_params` receives the number of parameter servers, so a
partitioned model can split its variables into one slice per server.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np

from pyscoring import census
from pyscoring.config import Config, ConfigError
from pyscoring.export import ExportResult
from pyscoring.manifest import read_manifest
from pyscoring.training.model_module import TrainingSetup

logger = logging.getLogger(__name__)


def _validate(config: Config) -> None:
    if config["train.ps"] == 0:
        raise ConfigError(
            f"train.workers={config['train.workers']} with train.ps=0: multi-worker "
            "training keeps its variables on parameter servers; set train.ps to 1 or more")


def _export_result(final: dict) -> ExportResult:
    export = final["result"].get("export")
    if not export:
        raise RuntimeError(f"the chief reported no export: {final['result']}")
    return ExportResult(version=export["version"], path=export["path"],
                        manifest=read_manifest(export["path"]))


def train_cluster(
    config: Config,
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> ExportResult:
    """Train the model of train.model on `train_path` with the Flink ML cluster and export it.

    `model_params` is a ModelParams of that module, as in
    `pyscoring.training.local.train`. Rows go to worker
    line_number % train.workers. Training stops at
    train.epochs * sum(ceil(share / batch size)) global steps, and resumes
    from the latest checkpoint in `checkpoint_dir` after a restart of the
    cluster or of the whole command.
    """
    from pyscoring.cluster import job
    from pyscoring.training.local import requested_params, resolve_model, resolve_model_params

    _validate(config)
    model = resolve_model(config, model_params)
    workers = config["train.workers"]
    train_data = census.load(train_path)
    if not os.path.isfile(test_path):
        raise FileNotFoundError(f"test file {test_path} not found; pass an existing file")
    params = resolve_model_params(
        requested_params(config, model, model_params), train_data.features,
        os.fspath(checkpoint_dir), model=model, num_workers=workers, num_ps=config["train.ps"])
    shares = np.bincount(train_data.line_numbers % workers, minlength=workers).tolist()
    last_step = job.total_steps(shares, config["train.batch-size"], config["train.epochs"])
    run = job.prepare_run(config, checkpoint_dir, export_dir, test_path, params,
                          job.MODE_BOUNDED, shares, last_step, model=model)
    logger.info("Training %s (%s) on %d rows of %s with %d workers (shares %s) and %d ps "
                "for %d epochs: %d global steps", model.name, model.reference,
                train_data.num_rows, train_path, workers, shares, config["train.ps"],
                config["train.epochs"], last_step)

    final = job.run_job(run, lambda env, table_env: job._line_records(
        env, table_env, os.fspath(train_path)), keyed_records=True)
    return _export_result(final)


def train_stream(
    config: Config,
    build_stream: Callable,
    test_path: str | os.PathLike[str] | None,
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> ExportResult:
    """Train on the stream `build_stream(env, table_env)` returns, until train.max-steps.

    The stream's elements are record tuples in the column order of
    `pyscoring.cluster.job.COLUMN_NAMES` (census columns, label as 0 or 1).
    `model_params` is a ModelParams of train.model's module, None for its
    defaults with train.model-params applied. The module's `prepare_params`
    gets no training data, because a stream has no training file, so
    data-dependent fields must be set already: census_wide_deep's
    `numeric_stats` come from `models.census_wide_deep.compute_numeric_stats`
    on sample rows. The chief exports every
    train.export-every-steps steps or train.export-every-seconds seconds
    and at the end; the last export is returned. With train.max-steps=0
    training runs until the job is cancelled.
    """
    from pyscoring.cluster import job
    from pyscoring.training.local import requested_params, resolve_model

    _validate(config)
    model = resolve_model(config, model_params)
    setup = TrainingSetup(train_features=None, num_workers=config["train.workers"],
                          num_ps=config["train.ps"])
    params = model.prepare_params(requested_params(config, model, model_params), setup)
    run = job.prepare_run(config, checkpoint_dir, export_dir, test_path, params,
                          job.MODE_STREAM, [], config["train.max-steps"], model=model)
    final = job.run_job(run, build_stream, keyed_records=False)
    return _export_result(final)


def train_table(
    config: Config,
    build_table: Callable,
    test_path: str | os.PathLike[str] | None,
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> ExportResult:
    """Train for train.epochs passes over the bounded Flink table `build_table(table_env)` returns.

    `build_table` receives a `pyflink.table.StreamTableEnvironment`, may run
    DDL in it, and returns a bounded `pyflink.table.Table`. The table has
    every census column of `pyscoring.cluster.job.COLUMN_NAMES`: BIGINT for
    the numeric columns, STRING for the categorical ones and the label as 0
    or 1. Extra columns are ignored. It is called twice, in two environments:
    a BATCH job counts each worker's share first (see
    `pyscoring.cluster.table_input`), then the training job reads the table
    again and routes every row to its worker. Training stops at
    train.epochs * sum(ceil(share / batch size)) global steps, as for a
    file. As in `train_stream`, the module's `prepare_params` gets no
    training data, so data-dependent fields of `model_params` must be set
    (for census_wide_deep, `numeric_stats`).
    """
    from pyscoring.cluster import job, table_input
    from pyscoring.training.local import requested_params, resolve_model

    _validate(config)
    model = resolve_model(config, model_params)
    workers = config["train.workers"]
    setup = TrainingSetup(train_features=None, num_workers=workers, num_ps=config["train.ps"])
    params = model.prepare_params(requested_params(config, model, model_params), setup)
    shares = table_input.count_shares(config, build_table, job.COLUMN_NAMES)
    last_step = job.total_steps(shares, config["train.batch-size"], config["train.epochs"])
    run = job.prepare_run(config, checkpoint_dir, export_dir, test_path, params,
                          job.MODE_BOUNDED, shares, last_step, model=model)
    logger.info("Training %s (%s) on a %d-row table with %d workers (shares %s) and %d ps "
                "for %d epochs: %d global steps", model.name, model.reference, sum(shares),
                workers, shares, config["train.ps"], config["train.epochs"], last_step)
    build_records = table_input.records_builder(build_table, job.COLUMN_NAMES, workers)
    final = job.run_job(run, build_records, keyed_records=True)
    return _export_result(final)
