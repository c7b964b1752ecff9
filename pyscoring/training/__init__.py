"""Training of the census model and export of the result.

`train` runs in this process with 1 worker and 0 parameter servers, and
otherwise on the Flink ML cluster (`pyscoring.training.cluster`).
"""

from __future__ import annotations

import os

from pyscoring.config import Config
from pyscoring.export import ExportResult
from pyscoring.training.local import is_local_topology, validate_topology


def train(
    config: Config,
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> ExportResult:
    """Train the census model, evaluate it on `test_path` and export the next version.

    With train.workers=1 and train.ps=0 this trains in this process
    (`pyscoring.training.local.train`); any other topology trains on the
    Flink ML cluster (`pyscoring.training.cluster.train_cluster`).
    """
    if is_local_topology(config):
        from pyscoring.training import local

        return local.train(config, train_path, test_path, export_dir, checkpoint_dir,
                           model_params=model_params)
    from pyscoring.training.cluster import train_cluster

    return train_cluster(config, train_path, test_path, export_dir, checkpoint_dir,
                         model_params=model_params)


__all__ = ["train", "validate_topology", "is_local_topology"]
