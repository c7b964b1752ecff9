"""Training of a model module (train.model) and export of the result.

`train` runs in this process with 1 worker and 0 parameter servers, and
otherwise on the Flink ML cluster (`pyscoring.training.cluster`). The
submodules that import TensorFlow load on first use, so
`pyscoring.training.model_module` imports without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyscoring.config import Config

if TYPE_CHECKING:
    from pyscoring.export import ExportResult


def train(
    config: Config,
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    model_params=None,
) -> "ExportResult":
    """Train the model of train.model, evaluate it on `test_path` and export the next version.

    `model_params` is a ModelParams of that module; None starts from its
    defaults with train.model-params applied. With train.workers=1 and
    train.ps=0 this trains in this process (`pyscoring.training.local.train`);
    any other topology trains on the Flink ML cluster
    (`pyscoring.training.cluster.train_cluster`).
    """
    from pyscoring.training import local

    if local.is_local_topology(config):
        return local.train(config, train_path, test_path, export_dir, checkpoint_dir,
                           model_params=model_params)
    from pyscoring.training.cluster import train_cluster

    return train_cluster(config, train_path, test_path, export_dir, checkpoint_dir,
                         model_params=model_params)


def __getattr__(name: str):
    # is_local_topology and validate_topology live in the TensorFlow-importing
    # module `local`, which loads on first access.
    if name in ("is_local_topology", "validate_topology"):
        from pyscoring.training import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["train", "validate_topology", "is_local_topology"]
