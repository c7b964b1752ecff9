"""Export a trained model module as a versioned SavedModel with its manifest.

`export_model` writes `EXPORT_DIR/.tmp-<N>-<random>/`: a SavedModel with
tag "serve" and the predict signature "serving_default", then
`pyscoring.json`. It then renames the folder to `EXPORT_DIR/<N>/`, where N
is one more than the largest integer folder. The folder layout and the
manifest format are described in docs/architecture.md. The manifest's
`model` section records the module reference and the params JSON, which
`load_manifest_model` turns back into the model and its params.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import secrets
import shutil
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from pyscoring import census
from pyscoring.manifest import (
    FORMAT_VERSION,
    TEMP_PREFIX,
    latest_version,
    list_versions,
    next_version,
    read_manifest,
    version_path,
    write_manifest,
)
from pyscoring.training.model_module import (
    LOGIT,
    MODE_PREDICT,
    PROBABILITY,
    Model,
    ModelLoadError,
    feature_placeholders,
    load_model,
    model_of_params,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ExportResult",
    "ServingGraph",
    "build_serving_graph",
    "export_model",
    "latest_version",
    "load_manifest_model",
    "list_versions",
    "read_manifest",
    "restore_serving_session",
    "score_with_python_tf",
]

SERVE_TAG = tf.compat.v1.saved_model.tag_constants.SERVING
SIGNATURE_KEY = "serving_default"
OUTPUT_NAMES = (PROBABILITY, LOGIT)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """A written export version: its number, folder and manifest."""

    version: int
    path: str
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.manifest["training"]["metrics"]


@dataclasses.dataclass(frozen=True)
class ServingGraph:
    """A graph with raw-column placeholders and the model's output tensors."""

    graph: tf.Graph
    inputs: dict[str, tf.Tensor]
    outputs: dict[str, tf.Tensor]


def build_serving_graph(params, *, model: Model | None = None) -> ServingGraph:
    """Build a new graph that maps raw feature columns to probability and logit.

    `model` builds the graph; None means the module that defines the class
    of `params`.
    """
    model = model or model_of_params(params)
    graph = tf.Graph()
    with graph.as_default():
        inputs = feature_placeholders()
        outputs = model.build_model(inputs, MODE_PREDICT, params)
    return ServingGraph(
        graph=graph,
        inputs=inputs,
        outputs={PROBABILITY: outputs.probability, LOGIT: outputs.logit},
    )


def load_manifest_model(manifest: Mapping[str, Any]) -> tuple[Model, Any]:
    """Load the model module and params that an export's manifest records.

    Raises ModelLoadError when the manifest has no `model` section, which
    exports written before it existed lack, or when the module no longer
    loads.
    """
    section = manifest.get("model")
    if section is None:
        raise ModelLoadError(
            f"the manifest of {manifest.get('model_name')!r} version "
            f"{manifest.get('version')} records no model module and params; export the "
            "model again with this pyscoring to rebuild its graph"
        )
    model = load_model(section["module"])
    if model.name != manifest["model_name"]:
        raise ModelLoadError(
            f"{section['module']} now defines MODEL_NAME {model.name!r}, but the export "
            f"was written by {manifest['model_name']!r}; load the module version that "
            "wrote the export"
        )
    return model, model.params_from_json(json.dumps(section["params"]))


def resolve_checkpoint(checkpoint: str | os.PathLike[str]) -> str:
    """Return the checkpoint prefix of `checkpoint`, a prefix or a checkpoint folder.

    A folder resolves to its latest checkpoint. Raises FileNotFoundError when
    the folder contains no checkpoint.
    """
    checkpoint = os.fspath(checkpoint)
    if os.path.isdir(checkpoint):
        prefix = tf.train.latest_checkpoint(checkpoint)
        if prefix is None:
            raise FileNotFoundError(
                f"no checkpoint found in {checkpoint}; train the model first or "
                "pass the checkpoint folder that training wrote"
            )
        return prefix
    return checkpoint


def restore_serving_session(
    serving: ServingGraph, checkpoint: str | os.PathLike[str]
) -> tf.compat.v1.Session:
    """Open a session on `serving.graph` with the variables restored from `checkpoint`.

    Only the model's variables are restored, so optimizer slots and the
    global step in the checkpoint are ignored.
    """
    prefix = resolve_checkpoint(checkpoint)
    session = tf.compat.v1.Session(graph=serving.graph)
    with serving.graph.as_default():
        saver = tf.compat.v1.train.Saver()
        saver.restore(session, prefix)
    logger.debug("Restored serving graph from %s", prefix)
    return session


def export_model(
    checkpoint: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    params,
    *,
    global_step: int,
    workers: int,
    ps: int,
    metrics: Mapping[str, float],
    model: Model | None = None,
) -> ExportResult:
    """Write the model restored from `checkpoint` as the next version of `export_dir`.

    `checkpoint` is a checkpoint prefix or a folder whose latest checkpoint
    is used. `model` rebuilds the serving graph; None means the module that
    defines the class of `params`. `metrics` contains "auc", "accuracy" and
    "loss" on the test data.
    Raises FileExistsError when the version folder appears while the export
    runs, because a version is never overwritten. The temporary folder is
    removed when the export fails.
    """
    export_dir = os.fspath(export_dir)
    missing_metrics = {"auc", "accuracy", "loss"} - set(metrics)
    if missing_metrics:
        raise ValueError(f"metrics are missing {', '.join(sorted(missing_metrics))}")
    model = model or model_of_params(params)
    os.makedirs(export_dir, exist_ok=True)

    version = next_version(export_dir)
    temp_dir = os.path.join(
        export_dir, f"{TEMP_PREFIX}{version}-{secrets.token_hex(4)}"
    )
    final_dir = version_path(export_dir, version)
    try:
        manifest = _write_saved_model(
            checkpoint, temp_dir, params, model,
            version=version,
            training={
                "global_step": int(global_step),
                "workers": int(workers),
                "ps": int(ps),
                "metrics": {key: float(value) for key, value in metrics.items()},
            },
        )
        _rename_no_replace(temp_dir, final_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise

    logger.info(
        "Exported %s version %d to %s (%d variable bytes)",
        model.name, version, final_dir, manifest["variables"]["bytes"],
    )
    return ExportResult(version=version, path=final_dir, manifest=manifest)


def _write_saved_model(
    checkpoint, temp_dir: str, params, model: Model, *, version: int,
    training: dict[str, Any],
) -> dict[str, Any]:
    """Write the SavedModel into `temp_dir`, then the manifest, and return the manifest."""
    serving = build_serving_graph(params, model=model)
    with serving.graph.as_default():
        signature = tf.compat.v1.saved_model.predict_signature_def(
            inputs=serving.inputs, outputs=serving.outputs
        )
        partitioned = _partitioned_variable_names(tf.compat.v1.global_variables())
        builder = tf.compat.v1.saved_model.Builder(temp_dir)
        session = restore_serving_session(serving, checkpoint)
        try:
            builder.add_meta_graph_and_variables(
                session,
                [SERVE_TAG],
                signature_def_map={SIGNATURE_KEY: signature},
                strip_default_attrs=True,
            )
        finally:
            session.close()
        builder.save()

    manifest = {
        "format_version": FORMAT_VERSION,
        "model_name": model.name,
        "version": version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "tensorflow_version": tf.__version__,
        "signature": {
            "key": SIGNATURE_KEY,
            "inputs": [
                _tensor_spec(name, serving.inputs[name]) for name in census.FEATURE_NAMES
            ],
            "outputs": [
                _tensor_spec(name, serving.outputs[name]) for name in OUTPUT_NAMES
            ],
        },
        "feature_mapping": {name: name for name in census.FEATURE_NAMES},
        "variables": {
            "bytes": _folder_bytes(os.path.join(temp_dir, "variables")),
            "partitioned": bool(partitioned),
            "ps_shards": _ps_shards(params, partitioned),
            "partitioned_variables": partitioned,
        },
        "training": training,
        "model": {"module": model.reference, "params": json.loads(params.to_json())},
    }
    write_manifest(temp_dir, manifest)
    return manifest


def _ps_shards(params, partitioned: list[str]) -> int:
    """Return the params' num_shards, or 1 for a model without the field and no partitions.

    A model without `num_shards` that partitions variables gets ValueError,
    because the slice count of the export would be unknown.
    """
    shards = getattr(params, "num_shards", None)
    if shards is not None:
        return int(shards)
    if partitioned:
        raise ValueError(
            f"{type(params).__module__}.ModelParams has no num_shards field, but the model "
            f"partitions {', '.join(partitioned)}; add num_shards, the slice count of its "
            "partitioner, to ModelParams"
        )
    return 1


def _tensor_spec(name: str, tensor: tf.Tensor) -> dict[str, Any]:
    shape = [-1 if size is None else int(size) for size in tensor.shape.as_list()]
    return {"name": name, "dtype": tensor.dtype.name, "shape": shape}


def _partitioned_variable_names(variables) -> list[str]:
    """Return the full names of variables that the saver writes as more than one slice."""
    slices: dict[str, int] = {}
    for variable in variables:
        info = variable._save_slice_info  # pylint: disable=protected-access
        if info is not None:
            slices[info.full_name] = slices.get(info.full_name, 0) + 1
    return sorted(name for name, count in slices.items() if count > 1)


def _folder_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def _rename_no_replace(source: str, target: str) -> None:
    # os.rename replaces an empty target folder on POSIX, so the existence
    # check comes first. A non-empty target makes os.rename fail, so a
    # complete version is never replaced even if it appears after the check.
    if os.path.lexists(target):
        raise FileExistsError(
            f"export version folder {target} already exists; versions are never "
            "overwritten, so run the export again to write the next version"
        )
    try:
        os.rename(source, target)
    except OSError as error:
        raise FileExistsError(
            f"cannot rename {source} to {target}: {error.strerror}; another export "
            "may have written this version at the same time, so run the export again"
        ) from error


def score_with_python_tf(
    version_dir: str | os.PathLike[str], features: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Score `features` with the SavedModel in `version_dir` and return each output.

    `features` maps every signature input name to a 1-D array, all of the
    same length. Strings may be `str` or `bytes`. The result maps each
    signature output name (probability, logit) to a numpy array.
    """
    version_dir = os.fspath(version_dir)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], version_dir)
        signature = meta_graph.signature_def[SIGNATURE_KEY]
        missing = sorted(set(signature.inputs) - set(features))
        if missing:
            raise ValueError(
                f"features are missing the signature inputs {', '.join(missing)}"
            )
        feed = {
            signature.inputs[name].name: np.asarray(features[name])
            for name in signature.inputs
        }
        names = list(signature.outputs)
        values = session.run([signature.outputs[name].name for name in names], feed)
    return dict(zip(names, values))
