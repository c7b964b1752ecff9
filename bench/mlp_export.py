"""Export a small MLP on numeric columns as a pyscoring export, with its manifest.

The model takes eight float32 columns f0..f7 (shape [-1] each), stacks them
and runs two hidden ReLU layers of 64 and 32 units and a sigmoid output
`score`. The weights are random with a fixed seed: the benchmarks measure
speed, not quality. Run `python -m bench.mlp_export EXPORT_DIR`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import shutil

from pyscoring import manifest

MODEL_NAME = "bench_mlp"
INPUT_NAMES = tuple(f"f{index}" for index in range(8))
OUTPUT_NAME = "score"
HIDDEN_UNITS = (64, 32)


def export_mlp(export_dir: str, seed: int = 7) -> str:
    """Write the MLP as the next version of `export_dir`; return the version folder."""
    import tensorflow as tf

    os.makedirs(export_dir, exist_ok=True)
    version = manifest.next_version(export_dir)
    temp_dir = os.path.join(export_dir, f"{manifest.TEMP_PREFIX}{version}-{secrets.token_hex(4)}")
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.set_random_seed(seed)
            inputs = {
                name: tf.compat.v1.placeholder(tf.float32, [None], name=name)
                for name in INPUT_NAMES
            }
            hidden = tf.stack([inputs[name] for name in INPUT_NAMES], axis=1)
            width = len(INPUT_NAMES)
            for layer, units in enumerate(HIDDEN_UNITS):
                weights = tf.compat.v1.get_variable(
                    f"dense_{layer}/kernel", [width, units],
                    initializer=tf.compat.v1.glorot_uniform_initializer())
                bias = tf.compat.v1.get_variable(
                    f"dense_{layer}/bias", [units], initializer=tf.compat.v1.zeros_initializer())
                hidden = tf.nn.relu(tf.matmul(hidden, weights) + bias)
                width = units
            weights = tf.compat.v1.get_variable(
                "output/kernel", [width, 1], initializer=tf.compat.v1.glorot_uniform_initializer())
            bias = tf.compat.v1.get_variable(
                "output/bias", [1], initializer=tf.compat.v1.zeros_initializer())
            score = tf.identity(
                tf.sigmoid(tf.squeeze(tf.matmul(hidden, weights) + bias, axis=1)), name=OUTPUT_NAME)
            with tf.compat.v1.Session(graph=graph) as session:
                session.run(tf.compat.v1.global_variables_initializer())
                builder = tf.compat.v1.saved_model.Builder(temp_dir)
                signature = tf.compat.v1.saved_model.predict_signature_def(
                    inputs=inputs, outputs={OUTPUT_NAME: score})
                builder.add_meta_graph_and_variables(
                    session, ["serve"], signature_def_map={"serving_default": signature},
                    strip_default_attrs=True)
                builder.save()
        variable_bytes = sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(os.path.join(temp_dir, "variables"))
            for name in names
        )
        manifest.write_manifest(temp_dir, {
            "format_version": manifest.FORMAT_VERSION,
            "model_name": MODEL_NAME,
            "version": version,
            "created_at": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "tensorflow_version": tf.__version__,
            "signature": {
                "key": "serving_default",
                "inputs": [{"name": name, "dtype": "float32", "shape": [-1]}
                           for name in INPUT_NAMES],
                "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1]}],
            },
            "feature_mapping": {name: name for name in INPUT_NAMES},
            "variables": {"bytes": variable_bytes, "partitioned": False, "ps_shards": 0,
                          "partitioned_variables": []},
            "training": {"global_step": 0, "workers": 0, "ps": 0,
                         "metrics": {"auc": 0.5, "accuracy": 0.0, "loss": 0.0}},
        })
        final_dir = manifest.version_path(export_dir, version)
        os.rename(temp_dir, final_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return final_dir


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mlp_export")
    parser.add_argument("export_dir", help="export folder; the MLP becomes its next version")
    args = parser.parse_args()
    print(export_mlp(args.export_dir))


if __name__ == "__main__":
    main()
