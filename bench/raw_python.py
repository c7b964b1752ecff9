"""Measure Python TensorFlow alone: a tight loop of SavedModel calls over prebuilt batches.

The counterpart of io.pyscoring.bench.RawTensorFlowBench: the same model,
rows and batch sizes, through a tf.compat.v1 session's callable with numpy
feeds built once. Prints one JSON object per line and repeat, with the
mean cores the process used. Run
`python -m bench.raw_python --model DIR --data FILE --columns a,b,... [--batch-sizes 1,64]`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pyscoring import manifest

_NUMPY_TYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
                "int64": np.int64, "bool": np.bool_, "string": object}


def read_columns(path: str, delimiter: str, columns: list[str], inputs: list[dict],
                 limit: int) -> dict[str, np.ndarray]:
    """Read up to `limit` rows into one array per signature input."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if len(rows) == limit:
                break
            if not line.strip() or line.startswith("|"):
                continue
            fields = [field.strip() for field in line.rstrip("\r\n").split(delimiter)]
            if len(fields) >= len(columns):
                rows.append(fields)
    arrays = {}
    for tensor in inputs:
        index = columns.index(tensor["name"])
        values = [row[index] for row in rows]
        if tensor["dtype"] == "string":
            arrays[tensor["name"]] = np.array(values, dtype=object)
        else:
            arrays[tensor["name"]] = np.array(values).astype(_NUMPY_TYPES[tensor["dtype"]])
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_python")
    parser.add_argument("--model", required=True, help="export or version folder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--columns", required=True, help="column names of the data file")
    parser.add_argument("--delimiter", default=",")
    parser.add_argument("--batch-sizes", default="1,64,1024")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--intra-op", type=int, default=0)
    parser.add_argument("--inter-op", type=int, default=0)
    args = parser.parse_args()

    import tensorflow as tf

    exports = manifest.list_versions(args.model)
    version_dir = manifest.version_path(args.model, exports[-1]) if exports else args.model
    model = manifest.read_manifest(version_dir)
    inputs = model["signature"]["inputs"]
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    arrays = read_columns(args.data, args.delimiter, args.columns.split(","), inputs,
                          max(batch_sizes) * 4)
    rows = len(next(iter(arrays.values())))

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.intra_op,
                                      inter_op_parallelism_threads=args.inter_op)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
        signature = meta_graph.signature_def["serving_default"]
        feeds = [graph.get_tensor_by_name(signature.inputs[tensor["name"]].name)
                 for tensor in inputs]
        fetches = [graph.get_tensor_by_name(signature.outputs[tensor["name"]].name)
                   for tensor in model["signature"]["outputs"]]
        call = session.make_callable(fetches, feed_list=feeds)
        for batch_size in batch_sizes:
            batches = [
                [arrays[tensor["name"]][start:start + batch_size] for tensor in inputs]
                for start in range(0, max(1, rows - batch_size + 1), batch_size)
            ]

            def loop(seconds: float) -> int:
                deadline = time.perf_counter() + seconds
                done = 0
                while True:
                    for batch in batches:
                        call(*batch)
                        done += batch_size
                    if time.perf_counter() >= deadline:
                        return done

            loop(args.warmup_seconds)
            for repeat in range(args.repeats):
                cpu_before = time.process_time()
                start = time.perf_counter()
                done = loop(args.seconds)
                elapsed = time.perf_counter() - start
                print(json.dumps({
                    "model": model["model_name"], "batch_size": batch_size, "mode": "prebuilt",
                    "repeat": repeat, "rows": done, "seconds": elapsed,
                    "rows_per_second": done / elapsed,
                    "cpu_cores": (time.process_time() - cpu_before) / elapsed,
                    "intra_op": args.intra_op, "inter_op": args.inter_op,
                }), flush=True)


if __name__ == "__main__":
    main()
