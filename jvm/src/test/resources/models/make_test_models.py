"""Write the small SavedModels that the Java tests load.

Run from this folder with the project's environment:
    ../../../../../.venv/bin/python make_test_models.py
It rewrites tiny/1/. The model has three inputs of different dtypes and an
assertion that rejects a negative `count`, so tests can make TensorFlow
fail on chosen rows.
"""

import json
import os
import shutil

import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


def write_tiny(version_dir: str) -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        count = tf.compat.v1.placeholder(tf.int64, [None], name="count")
        label = tf.compat.v1.placeholder(tf.string, [None], name="label")
        weight = tf.compat.v1.get_variable(
            "weight", initializer=tf.constant(2.0), dtype=tf.float32
        )
        check = tf.debugging.assert_non_negative(
            count, message="count must not be negative"
        )
        with tf.control_dependencies([check]):
            is_a = tf.cast(tf.equal(label, "a"), tf.float32)
            y = tf.identity(weight * x + tf.cast(count, tf.float32) + is_a, name="y")
            pair = tf.stack([x, -x], axis=1, name="pair")
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(version_dir)
            signature = tf.compat.v1.saved_model.predict_signature_def(
                inputs={"x": x, "count": count, "label": label},
                outputs={"y": y, "pair": pair},
            )
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={"serving_default": signature},
            )
            builder.save()
    manifest = {
        "format_version": 1,
        "model_name": "tiny",
        "version": 1,
        "tensorflow_version": tf.__version__,
        "signature": {
            "key": "serving_default",
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": [-1]},
                {"name": "count", "dtype": "int64", "shape": [-1]},
                {"name": "label", "dtype": "string", "shape": [-1]},
            ],
            "outputs": [
                {"name": "y", "dtype": "float32", "shape": [-1]},
                {"name": "pair", "dtype": "float32", "shape": [-1, 2]},
            ],
        },
        "feature_mapping": {"x": "x", "count": "count", "label": "label"},
        "variables": {"bytes": 0, "partitioned": False, "ps_shards": 1,
                      "partitioned_variables": []},
        "training": {},
    }
    variables = os.path.join(version_dir, "variables")
    manifest["variables"]["bytes"] = sum(
        os.path.getsize(os.path.join(variables, name)) for name in os.listdir(variables)
    )
    with open(os.path.join(version_dir, "pyscoring.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)


if __name__ == "__main__":
    target = os.path.join(HERE, "tiny", "1")
    shutil.rmtree(target, ignore_errors=True)
    write_tiny(target)
    print("wrote", target)
