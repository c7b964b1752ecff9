"""The argument of a node entry function: `NodeContext`.

A node entry function is `def main(context: NodeContext) -> dict | None`,
named as "module:function" in train.node-entry. It runs in the node's own
process on every worker and on the chief node of train.chief (parameter
servers and the evaluator run pyscoring's own loops). It returns the
result the chief reports to the AM, for example
{"global_step": ..., "export_path": ...}, or None.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pyscoring.cluster.channel import ChannelReader, ChannelWriter
from pyscoring.config import Config


@dataclasses.dataclass
class NodeContext:
    """Role, cluster and data of one node.

    `cluster_spec` maps each role ("worker", "ps", and "chief" with
    train.chief) to its "host:port" list, ready for
    `tf.train.ClusterSpec`. `server` is the node's started
    `tf.distribute.Server`, None on the evaluator. `records` is the channel
    of row tuples in the column order of `column_names` (census.COLUMNS,
    label last), None on a parameter server, the chief node and the
    evaluator. In bounded mode `share_size` is the number of rows
    this worker receives, and `last_step` the global step at which training
    stops. In stream mode `share_size` is None and `last_step` is
    train.max-steps (0 for no limit). A scoring worker (mode "serve") also
    has `responses`, the channel back to its Flink operator, and `serving`,
    the export it scores: {"version_dir", "input_names", "input_dtypes"}.
    `workers_done` returns whether every worker has finished, and
    `stop_requested` whether the AM ordered this node to stop; both follow
    the heartbeats, so they lag by up to train.heartbeat-interval-ms.
    `run_dir` is the cluster's run folder on the evaluator, None elsewhere.
    """

    role: str
    index: int
    cluster_spec: dict[str, list[str]]
    server: Any
    config: Config
    checkpoint_dir: str
    export_dir: str
    test_path: str | None
    mode: str
    records: ChannelReader | None
    column_names: tuple[str, ...]
    column_dtypes: tuple[str, ...]
    share_size: int | None
    last_step: int
    model_params_json: str
    report_progress: Callable[[int, float, int], None]
    report_ready: Callable[[], None]
    wait_for_chief: Callable[[], None]
    responses: ChannelWriter | None = None
    serving: dict[str, Any] | None = None
    workers_done: Callable[[], bool] | None = None
    stop_requested: Callable[[], bool] | None = None
    run_dir: str | None = None

    @property
    def is_chief(self) -> bool:
        """Whether this node has the chief's duties: the chief node, else worker 0."""
        if "chief" in self.cluster_spec:
            return self.role == "chief"
        return self.role == "worker" and self.index == 0

    @property
    def num_workers(self) -> int:
        return len(self.cluster_spec.get("worker", []))

    @property
    def num_ps(self) -> int:
        return len(self.cluster_spec.get("ps", []))

    def dataset(self, batch_size: int):
        """Return the incoming records as a tf.data.Dataset of column batches.

        In bounded mode the dataset ends after this worker's share, so
        `.cache().repeat()` gives further epochs; in stream mode it follows
        the stream.
        """
        if self.records is None:
            raise ValueError(f"{self.role}:{self.index} receives no records")
        self.records.start_consuming()
        return self.records.dataset(self.column_names, self.column_dtypes, batch_size,
                                    limit=self.share_size)
