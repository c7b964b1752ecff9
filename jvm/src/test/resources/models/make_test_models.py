"""Write the small SavedModels that the Java tests load.

Run from this folder with the project's environment:
    ../../../../../.venv/bin/python make_test_models.py
It rewrites tiny/1/ and missing_op/1/.

tiny has three inputs of different dtypes and an assertion that rejects a
negative `count`, so tests can make TensorFlow fail on chosen rows.

missing_op is tiny with one node added to its graph whose op,
PyscoringTestMissingOp, no TensorFlow build registers. It is written by
editing the GraphDef inside saved_model.pb, because an op that Python
TensorFlow 2.18 has and TensorFlow Java 1.1.0 lacks is not at hand. Neither
runtime can load it, so it tests the checks that name a missing op.
"""

import json
import os
import shutil

import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


def save_export(session, version_dir: str, model_name: str, inputs: dict, outputs: dict) -> None:
    """Save the session's graph as a SavedModel version with one serving signature and a manifest.

    `inputs` and `outputs` map each signature name to (tensor, manifest dtype, manifest shape),
    in signature order. Every input is fed from the column of the same name.
    """
    builder = tf.compat.v1.saved_model.Builder(version_dir)
    signature = tf.compat.v1.saved_model.predict_signature_def(
        inputs={name: tensor for name, (tensor, _, _) in inputs.items()},
        outputs={name: tensor for name, (tensor, _, _) in outputs.items()},
    )
    builder.add_meta_graph_and_variables(
        session,
        ["serve"],
        signature_def_map={"serving_default": signature},
    )
    builder.save()
    variables = os.path.join(version_dir, "variables")
    manifest = {
        "format_version": 1,
        "model_name": model_name,
        "version": 1,
        "created_at": "2026-01-01T00:00:00Z",
        "tensorflow_version": tf.__version__,
        "signature": {
            "key": "serving_default",
            "inputs": [
                {"name": name, "dtype": dtype, "shape": shape}
                for name, (_, dtype, shape) in inputs.items()
            ],
            "outputs": [
                {"name": name, "dtype": dtype, "shape": shape}
                for name, (_, dtype, shape) in outputs.items()
            ],
        },
        "feature_mapping": {name: name for name in inputs},
        "variables": {
            "bytes": sum(
                os.path.getsize(os.path.join(variables, name)) for name in os.listdir(variables)
            ),
            "partitioned": False,
            "ps_shards": 1,
            "partitioned_variables": [],
        },
        "training": {"global_step": 0, "workers": 1, "ps": 0, "metrics": {}},
    }
    with open(os.path.join(version_dir, "pyscoring.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)


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
            save_export(
                session,
                version_dir,
                "tiny",
                inputs={
                    "x": (x, "float32", [-1]),
                    "count": (count, "int64", [-1]),
                    "label": (label, "string", [-1]),
                },
                outputs={"y": (y, "float32", [-1]), "pair": (pair, "float32", [-1, 2])},
            )


MISSING_OP = "PyscoringTestMissingOp"


def write_missing_op(version_dir: str) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    write_tiny(version_dir)
    path = os.path.join(version_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    node = saved_model.meta_graphs[0].graph_def.node.add()
    node.name = "unregistered"
    node.op = MISSING_OP
    node.input.append("x")
    with open(path, "wb") as handle:
        handle.write(saved_model.SerializeToString())
    manifest_path = os.path.join(version_dir, "pyscoring.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest["model_name"] = "missing_op"
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=2)


if __name__ == "__main__":
    for name, write in (("tiny", write_tiny), ("missing_op", write_missing_op)):
        target = os.path.join(HERE, name, "1")
        shutil.rmtree(target, ignore_errors=True)
        write(target)
        print("wrote", target)
