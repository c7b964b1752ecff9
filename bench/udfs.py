"""PyFlink Python UDFs that score with Python TensorFlow, for the side-by-side benchmark.

They run in PyFlink's Python worker processes (process mode), never in the
JVM that hosts TensorFlow Java. TensorFlow is imported in `open`, so the
driver that defines the job does not import it.
"""

from __future__ import annotations

import numpy as np
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, udf

_NUMPY_TYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
                "int64": np.int64, "bool": np.bool_, "string": object}


class TensorFlowScorer(ScalarFunction):
    """Scalar function that scores rows with a SavedModel and returns its first output.

    `inputs` lists (name, dtype) pairs in argument order. With `vectorized`,
    `eval` receives one pandas Series per input; otherwise one value each.
    """

    def __init__(self, version_dir: str, inputs: list[tuple[str, str]], output: str,
                 vectorized: bool):
        self.version_dir = version_dir
        self.inputs = inputs
        self.output = output
        self.vectorized = vectorized
        self._call = None
        self._session = None

    def open(self, function_context):
        import tensorflow as tf

        graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(
            self._session, ["serve"], self.version_dir)
        signature = meta_graph.signature_def["serving_default"]
        feeds = [graph.get_tensor_by_name(signature.inputs[name].name) for name, _ in self.inputs]
        fetch = graph.get_tensor_by_name(signature.outputs[self.output].name)
        self._call = self._session.make_callable(fetch, feed_list=feeds)

    def eval(self, *columns):
        if self.vectorized:
            arrays = [
                column.to_numpy(dtype=_NUMPY_TYPES[dtype])
                for column, (_, dtype) in zip(columns, self.inputs)
            ]
            import pandas as pd

            return pd.Series(self._call(*arrays))
        arrays = [np.array([value], dtype=_NUMPY_TYPES[dtype])
                  for value, (_, dtype) in zip(columns, self.inputs)]
        return float(self._call(*arrays)[0])

    def close(self):
        if self._session is not None:
            self._session.close()


def tensorflow_udf(version_dir: str, inputs: list[tuple[str, str]], output: str,
                   vectorized: bool):
    """Return a PyFlink UDF (pandas when `vectorized`) that returns the output as FLOAT."""
    return udf(
        TensorFlowScorer(version_dir, inputs, output, vectorized),
        result_type=DataTypes.FLOAT(),
        func_type="pandas" if vectorized else "general",
    )
