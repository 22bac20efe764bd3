"""Progress reporting: a local line per update, and the pod annotation when in a pod.

When ``FORJA_POD_NAME`` is set the reporter patches its own pod's
``forja.dev/progress`` annotation with a :class:`forja_api.contract.Progress` JSON,
at most once every ``PROGRESS_MIN_INTERVAL_SECONDS`` (the operator sees it through
its pod watch), through the throttle both trainer images share
(:mod:`forja_progress`). A skipped update is kept and sent by the next allowed one
or by :meth:`ProgressReporter.flush`. API errors never stop training.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from forja_api.contract import (
    PROGRESS_ANNOTATION,
    PROGRESS_MIN_INTERVAL_SECONDS,
    CheckpointRef,
    Progress,
)
from forja_progress import AnnotationThrottle, SendFn, pod_patcher_from_env

__all__ = ["LOCAL_PREFIX", "AnnotationPatcher", "ProgressReporter"]

log = logging.getLogger(__name__)
LOCAL_PREFIX = "forja-progress "
AnnotationPatcher = SendFn
"""Takes the progress JSON and writes it to the pod annotation."""


class ProgressReporter:
    def __init__(
        self,
        patcher: AnnotationPatcher | None = None,
        *,
        min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        stream: Any = None,
    ) -> None:
        self._throttle = (
            AnnotationThrottle(patcher, min_interval, clock) if patcher is not None else None
        )
        self._stream = stream if stream is not None else sys.stdout

    @classmethod
    def from_env(cls) -> ProgressReporter:
        """The pod annotation when the operator named the pod, and local lines always."""
        patch = pod_patcher_from_env()
        if patch is None:
            return cls()
        return cls(lambda text: patch({PROGRESS_ANNOTATION: text}))

    def report(
        self,
        step: str,
        epoch: int,
        total_epochs: int,
        metrics: dict[str, float] | None = None,
        *,
        step_index: int = 0,
        steps_total: int = 0,
        checkpoint: CheckpointRef | None = None,
        batch_size: int | None = None,
        force: bool = False,
    ) -> Progress:
        merged = dict(metrics or {})
        if steps_total:
            merged.update({"step_index": float(step_index), "steps_total": float(steps_total)})
        progress = Progress(
            step=step,
            epoch=epoch,
            total_epochs=total_epochs,
            metrics={k: round(float(v), 6) for k, v in merged.items()},
            checkpoint=checkpoint,
            batch_size=batch_size,
        )
        text = progress.to_json()
        print(LOCAL_PREFIX + text, file=self._stream, flush=True)
        if self._throttle is not None:
            self._throttle.offer(text)
            if force or self._throttle.wait_seconds() <= 0:
                self._throttle.flush()
        return progress

    def flush(self) -> None:
        """Send a report the interval held back (before a long step, and at the end)."""
        if self._throttle is not None:
            self._throttle.flush()


def parse_local_line(line: str) -> dict[str, Any] | None:
    """Parse one local progress line (used by tests and log readers)."""
    if not line.startswith(LOCAL_PREFIX):
        return None
    data: dict[str, Any] = json.loads(line[len(LOCAL_PREFIX):])
    return data
