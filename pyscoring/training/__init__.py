"""Training of the census model and export of the result.

`train` runs in this process with 1 worker and 0 parameter servers.
Multi-node training is meant to run through the Flink ML cluster, which
this build does not provide yet.
"""

from pyscoring.training.local import train, validate_topology

__all__ = ["train", "validate_topology"]
