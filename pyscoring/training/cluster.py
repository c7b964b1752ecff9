"""Training on the Flink ML cluster: train.workers worker and train.ps parameter-server nodes.

`train_cluster` trains on a bounded file. `train_stream` trains on an
unbounded Flink stream that the caller builds. Both return the chief's
last export. The cluster itself lives in `pyscoring.cluster`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import numpy as np

from models import census_wide_deep as model
from pyscoring import census
from pyscoring.config import Config, ConfigError
from pyscoring.export import ExportResult
from pyscoring.manifest import read_manifest

logger = logging.getLogger(__name__)


def _cluster_params(config: Config, model_params: model.ModelParams | None) -> model.ModelParams:
    """Return `model_params` with num_shards set to train.ps (1 without parameter servers)."""
    shards = max(1, config["train.ps"])
    params = model_params or model.ModelParams(num_shards=shards)
    if params.num_shards != shards:
        logger.info("Setting the model's num_shards from %d to train.ps=%d, so each parameter "
                    "server holds one slice of every partitioned variable",
                    params.num_shards, shards)
        params = dataclasses.replace(params, num_shards=shards)
    return params


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
    model_params: model.ModelParams | None = None,
) -> ExportResult:
    """Train the census model on `train_path` with the Flink ML cluster and export it.

    Rows go to worker line_number % train.workers. Training stops at
    train.epochs * sum(ceil(share / batch size)) global steps, and resumes
    from the latest checkpoint in `checkpoint_dir` after a restart of the
    cluster or of the whole command.
    """
    from pyscoring.cluster import job
    from pyscoring.training.local import resolve_model_params

    _validate(config)
    workers = config["train.workers"]
    train_data = census.load(train_path)
    if not os.path.isfile(test_path):
        raise FileNotFoundError(f"test file {test_path} not found; pass an existing file")
    params = resolve_model_params(_cluster_params(config, model_params), train_data.features,
                                  os.fspath(checkpoint_dir))
    shares = np.bincount(train_data.line_numbers % workers, minlength=workers).tolist()
    last_step = job.total_steps(shares, config["train.batch-size"], config["train.epochs"])
    run = job.prepare_run(config, checkpoint_dir, export_dir, test_path, params,
                          job.MODE_BOUNDED, shares, last_step)
    logger.info("Training on %d rows of %s with %d workers (shares %s) and %d ps for %d "
                "epochs: %d global steps", train_data.num_rows, train_path, workers, shares,
                config["train.ps"], config["train.epochs"], last_step)

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
    model_params: model.ModelParams,
) -> ExportResult:
    """Train on the stream `build_stream(env, table_env)` returns, until train.max-steps.

    The stream's elements are record tuples in the column order of
    `pyscoring.cluster.job.COLUMN_NAMES` (census columns, label as 0 or 1).
    `model_params.numeric_stats` must be set, because a stream has no
    training file to compute them from. The chief exports every
    train.export-every-steps steps or train.export-every-seconds seconds
    and at the end; the last export is returned. With train.max-steps=0
    training runs until the job is cancelled.
    """
    from pyscoring.cluster import job

    _validate(config)
    if model_params.numeric_stats is None:
        raise ValueError("model_params.numeric_stats is missing; compute it with "
                         "models.census_wide_deep.compute_numeric_stats on sample rows")
    params = _cluster_params(config, model_params)
    run = job.prepare_run(config, checkpoint_dir, export_dir, test_path, params,
                          job.MODE_STREAM, [], config["train.max-steps"])
    final = job.run_job(run, build_stream, keyed_records=False)
    return _export_result(final)
