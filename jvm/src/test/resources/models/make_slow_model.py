"""Write the SavedModel `slow/1/`, whose graph spins for a time that an input gives.

Run from this folder with the project's environment:
    ../../../../../.venv/bin/python make_slow_model.py
It rewrites slow/1/.

The model takes `x` (float32) and `delay_ms` (int64) per row and returns
`y = 2 * x`, but only after a tf.while_loop has spun until `tf.timestamp()`
reaches the batch's start plus the largest `delay_ms` of the batch. The
delay is wall-clock time, so a row with a large `delay_ms` keeps TensorFlow
busy for that long on a loaded machine too, and a batch of rows with
`delay_ms` 0 returns in microseconds. The delay is clamped to
MAX_DELAY_MS, so synthetic sample rows cannot hold a check for long. The
loop busy-waits on one CPU core, because the only sleep ops of TensorFlow
2.18 (SleepDataset and ExperimentalSleepDataset) act on tf.data datasets.
"""

import os
import shutil

import tensorflow as tf

from make_test_models import save_export

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_DELAY_MS = 10_000


def write_slow(version_dir: str) -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        delay_ms = tf.compat.v1.placeholder(tf.int64, [None], name="delay_ms")
        weight = tf.compat.v1.get_variable(
            "weight", initializer=tf.constant(2.0), dtype=tf.float32
        )
        longest_ms = tf.clip_by_value(
            tf.reduce_max(tf.concat([delay_ms, tf.zeros([1], tf.int64)], axis=0)),
            0,
            MAX_DELAY_MS,
        )
        start = tf.timestamp()
        end = start + tf.cast(longest_ms, tf.float64) / 1000.0
        [iterations] = tf.while_loop(
            lambda i: tf.timestamp() < end,
            lambda i: i + 1,
            [tf.constant(0, tf.int64)],
            name="spin",
        )
        with tf.control_dependencies([iterations]):
            y = tf.identity(weight * x, name="y")
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            save_export(
                session,
                version_dir,
                "slow",
                inputs={"x": (x, "float32", [-1]), "delay_ms": (delay_ms, "int64", [-1])},
                outputs={"y": (y, "float32", [-1])},
            )


if __name__ == "__main__":
    target = os.path.join(HERE, "slow", "1")
    shutil.rmtree(target, ignore_errors=True)
    write_slow(target)
    print("wrote", target)
