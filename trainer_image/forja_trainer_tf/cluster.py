"""This worker's place in a multi-worker attempt, read from ``TF_CONFIG``.

The operator gives every pod of a multi-worker ``distill-qat-tflite`` attempt a
``TF_CONFIG`` (``{"cluster": {"worker": [...]}, "task": {"type": "worker",
"index": i}}``), the variable ``tf.distribute.MultiWorkerMirroredStrategy`` reads.
Worker 0 is the chief: it alone writes checkpoints, progress and the artifact.

Plain Python (no TensorFlow), so the parse is unit-tested without loading TF.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from forja_api.contract import TF_CONFIG_ENV, InvalidConfig

__all__ = ["TFCluster"]


@dataclass(frozen=True)
class TFCluster:
    """The workers' addresses (as this worker dials them) and this worker's index."""

    workers: tuple[str, ...] = ()
    index: int = 0

    @property
    def num_workers(self) -> int:
        return max(1, len(self.workers))

    @property
    def multi_worker(self) -> bool:
        return len(self.workers) > 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TFCluster:
        """One worker when TF_CONFIG is unset; InvalidConfig naming the key otherwise."""
        raw = (os.environ if env is None else env).get(TF_CONFIG_ENV)
        if not raw:
            return cls()
        try:
            config = json.loads(raw)
        except ValueError as exc:
            raise InvalidConfig(f"{TF_CONFIG_ENV}: not JSON ({exc})") from None
        if not isinstance(config, dict):
            raise InvalidConfig(f"{TF_CONFIG_ENV}: must be a JSON object")
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise InvalidConfig(f"{TF_CONFIG_ENV}: cluster and task must be objects")
        extra = sorted(set(cluster) - {"worker"})
        if extra:
            # A chief, ps or evaluator task would change who writes; forja makes none.
            raise InvalidConfig(
                f"{TF_CONFIG_ENV}.cluster: only 'worker' tasks are supported, got {extra}"
            )
        workers = cluster.get("worker") or []
        if not isinstance(workers, list) or not all(isinstance(w, str) and w for w in workers):
            raise InvalidConfig(f"{TF_CONFIG_ENV}.cluster.worker: must be a list of host:port")
        if task.get("type", "worker") != "worker":
            raise InvalidConfig(
                f"{TF_CONFIG_ENV}.task.type: only 'worker' is supported, got {task.get('type')!r}"
            )
        index = task.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < max(
            1, len(workers)
        ):
            raise InvalidConfig(
                f"{TF_CONFIG_ENV}.task.index: {index!r} is not a worker of {len(workers)}"
            )
        return cls(tuple(workers), index)
