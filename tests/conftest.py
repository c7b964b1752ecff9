"""Shared fixtures: `census_export` trains the census model once and caches the export.

The cache folder is build/test-cache/<key>/, where the key is a sha256 over
the model and training source files, the training configuration, the
TensorFlow version and the sha256 of both data files. A change to any of
them trains again on the next run. Training runs in a subprocess, so the
pytest process does not import TensorFlow for this fixture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

from pyscoring import manifest
from pyscoring.config import Config

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data" / "adult"
TRAIN_PATH = DATA_DIR / "adult.data"
TEST_PATH = DATA_DIR / "adult.test"
CACHE_ROOT = REPO_ROOT / "build" / "test-cache"

# Configuration of the cached training run: the defaults of pyscoring.config.
CENSUS_TRAIN_OVERRIDES: dict[str, object] = {}

# Files whose content decides the trained model and its export.
CACHE_KEY_SOURCES = (
    "models/census_wide_deep.py",
    "pyscoring/census.py",
    "pyscoring/evaluation.py",
    "pyscoring/export.py",
    "pyscoring/manifest.py",
    "pyscoring/training/__init__.py",
    "pyscoring/training/local.py",
    "pyscoring/training/model_module.py",
)

TRAIN_TIMEOUT_SECONDS = 900

_TRAIN_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from pyscoring.config import Config
from pyscoring.training import train
arguments = json.loads(sys.argv[1])
train(Config(arguments["config"]), arguments["train_path"], arguments["test_path"],
      arguments["export_dir"], arguments["checkpoint_dir"])
"""


@dataclasses.dataclass(frozen=True)
class CensusExport:
    """A cached census export: version folder, its manifest and the training inputs."""

    export_dir: Path
    version_dir: Path
    checkpoint_dir: Path
    manifest: dict
    config: Config
    train_path: Path
    test_path: Path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def census_cache_key(config: Config) -> tuple[str, dict]:
    """Return the cache key and the inputs it hashes."""
    inputs = {
        "sources": {name: _sha256_file(REPO_ROOT / name) for name in CACHE_KEY_SOURCES},
        "config": {key: config[key] for key in config if key.startswith("train.")},
        "data": {path.name: _sha256_file(path) for path in (TRAIN_PATH, TEST_PATH)},
        "tensorflow": metadata.version("tensorflow-cpu"),
    }
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], inputs


def _train_into(folder: Path, config: Config, timeout_s: float = TRAIN_TIMEOUT_SECONDS) -> None:
    arguments = {
        "config": {key: config[key] for key in config if key.startswith("train.")},
        "train_path": str(TRAIN_PATH),
        "test_path": str(TEST_PATH),
        "export_dir": str(folder / "exports"),
        "checkpoint_dir": str(folder / "checkpoints"),
    }
    completed = subprocess.run(
        [sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    (folder / "train.log").write_text(completed.stderr + completed.stdout)
    if completed.returncode != 0:
        raise RuntimeError(
            f"training the cached census export failed with exit code "
            f"{completed.returncode}; output ends with:\n{completed.stderr[-4000:]}"
        )


def _cached_export(folder: Path, config: Config) -> CensusExport | None:
    export_dir = folder / "exports"
    version = manifest.latest_version(export_dir)
    if version is None:
        return None
    version_dir = Path(manifest.version_path(export_dir, version))
    return CensusExport(
        export_dir=export_dir,
        version_dir=version_dir,
        checkpoint_dir=folder / "checkpoints",
        manifest=manifest.read_manifest(version_dir),
        config=config,
        train_path=TRAIN_PATH,
        test_path=TEST_PATH,
    )


def _cached_or_trained(key: str, inputs: dict, config: Config, timeout_s: float) -> CensusExport:
    """Return the export cached in CACHE_ROOT/<key>/, training it there first when missing.

    A new cache folder is written under a temporary name and renamed into
    place, so parallel runs never see half a cache.
    """
    folder = CACHE_ROOT / key
    cached = _cached_export(folder, config)
    if cached is not None:
        logger.info("Reusing the cached export %s", cached.version_dir)
        return cached
    if folder.exists():
        shutil.rmtree(folder)

    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    temp_folder = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=CACHE_ROOT))
    try:
        (temp_folder / "cache-key.json").write_text(json.dumps(inputs, indent=2))
        logger.info("Training the export of %s into %s", key, temp_folder)
        _train_into(temp_folder, config, timeout_s=timeout_s)
        try:
            os.rename(temp_folder, folder)
        except OSError:
            # Another pytest process filled the same key first, so its
            # folder is used and this one is discarded.
            if _cached_export(folder, config) is None:
                raise
    finally:
        if temp_folder.exists():
            shutil.rmtree(temp_folder, ignore_errors=True)

    cached = _cached_export(folder, config)
    if cached is None:
        raise RuntimeError(f"training finished but {folder / 'exports'} has no version")
    return cached


@pytest.fixture(scope="session")
def census_export() -> CensusExport:
    """Return the census export for the default training configuration.

    The first run trains in a subprocess and fills build/test-cache/<key>/,
    which took about 12 s on a 2-core machine with the default
    configuration. Later runs with the same key reuse it.
    """
    config = Config(CENSUS_TRAIN_OVERRIDES)
    key, inputs = census_cache_key(config)
    return _cached_or_trained(key, inputs, config, TRAIN_TIMEOUT_SECONDS)


# Configuration of the cached ML-cluster run: 2 workers and 2 parameter
# servers on the Flink mini cluster. Three epochs keep the run short; the
# export still reaches ROC AUC >= 0.88 on adult.test.
CENSUS_2W2PS_OVERRIDES: dict[str, object] = {
    "train.workers": 2,
    "train.ps": 2,
    "train.epochs": 3,
}

# Files whose content decides the ML-cluster export, on top of CACHE_KEY_SOURCES.
CLUSTER_CACHE_KEY_SOURCES = CACHE_KEY_SOURCES + (
    "pyscoring/training/cluster.py",
    "pyscoring/cluster/am.py",
    "pyscoring/cluster/channel.py",
    "pyscoring/cluster/context.py",
    "pyscoring/cluster/job.py",
    "pyscoring/cluster/node.py",
    "pyscoring/cluster/operators.py",
    "pyscoring/cluster/ports.py",
    "pyscoring/cluster/protocol.py",
    "pyscoring/cluster/supervisor.py",
    "pyscoring/cluster/trainer.py",
)

CLUSTER_TRAIN_TIMEOUT_SECONDS = 900


@dataclasses.dataclass(frozen=True)
class ClusterCensusExport(CensusExport):
    """A cached ML-cluster census export plus the cluster's run folder."""

    run_dir: Path = Path()


@pytest.fixture(scope="session")
def census_export_2w2ps() -> ClusterCensusExport:
    """Return the census export trained with 2 workers and 2 parameter servers.

    Cached like `census_export`, in build/test-cache/2w2ps-<key>/, with the
    ML-cluster sources in the key. The first run trains on the Flink mini
    cluster in a subprocess, which took about 90 s on a busy 2-core machine.
    The run folder (checkpoints/cluster/) contains the node logs and events.
    """
    return cached_cluster_export("2w2ps", Config(CENSUS_2W2PS_OVERRIDES),
                                 CLUSTER_CACHE_KEY_SOURCES)


def cached_cluster_export(prefix: str, config: Config,
                          sources: tuple[str, ...]) -> ClusterCensusExport:
    """Return the export that `config` trains on the ML cluster, cached in build/test-cache/.

    The folder is `<prefix>-<key>`, where the key is a sha256 over the
    `sources` files, the train.* keys of `config`, the data files and the
    TensorFlow and Flink versions.
    """
    inputs = {
        "sources": {name: _sha256_file(REPO_ROOT / name) for name in sources},
        "config": {key: config[key] for key in config if key.startswith("train.")},
        "data": {path.name: _sha256_file(path) for path in (TRAIN_PATH, TEST_PATH)},
        "tensorflow": metadata.version("tensorflow-cpu"),
        "flink": metadata.version("apache-flink"),
    }
    key = f"{prefix}-" + hashlib.sha256(
        json.dumps(inputs, sort_keys=True).encode()
    ).hexdigest()[:16]
    cached = _cached_or_trained(key, inputs, config, CLUSTER_TRAIN_TIMEOUT_SECONDS)
    return ClusterCensusExport(**dataclasses.asdict(cached),
                               run_dir=CACHE_ROOT / key / "checkpoints" / "cluster")
