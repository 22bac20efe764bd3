"""Progress reporting: a local line per update, and the pod annotation when in a pod.

When ``FORJA_POD_NAME`` is set the reporter patches its own pod's
``forja.dev/progress`` annotation with a :class:`forja_api.contract.Progress` JSON,
at most once every ``PROGRESS_MIN_INTERVAL_SECONDS`` (the operator sees it through
its pod watch). A skipped update is kept and sent by the next allowed one or by
:meth:`ProgressReporter.flush`. API errors never stop training.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from forja_api.contract import (
    NAMESPACE_ENV,
    POD_NAME_ENV,
    PROGRESS_ANNOTATION,
    PROGRESS_MIN_INTERVAL_SECONDS,
    CheckpointRef,
    Progress,
)

__all__ = ["LOCAL_PREFIX", "AnnotationPatcher", "ProgressReporter", "kubernetes_patcher"]

log = logging.getLogger(__name__)
LOCAL_PREFIX = "forja-progress "
AnnotationPatcher = Callable[[str], None]
"""Takes the progress JSON and writes it to the pod annotation."""


def kubernetes_patcher(pod: str, namespace: str) -> AnnotationPatcher:
    """A patcher using the kubernetes client (in-cluster config, else kubeconfig)."""
    from kubernetes import client, config  # noqa: PLC0415 - only pods need it

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # The client reads $KUBECONFIG once, at import; read it now.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG")
        )
    api = client.CoreV1Api()

    def patch(text: str) -> None:
        body = {"metadata": {"annotations": {PROGRESS_ANNOTATION: text}}}
        api.patch_namespaced_pod(pod, namespace, body)

    return patch


class ProgressReporter:
    def __init__(
        self,
        patcher: AnnotationPatcher | None = None,
        *,
        min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        stream: Any = None,
    ) -> None:
        self._patcher = patcher
        self._min_interval = min_interval
        self._clock = clock
        self._stream = stream if stream is not None else sys.stdout
        self._last_sent: float | None = None
        self._pending: str | None = None

    @classmethod
    def from_env(cls) -> ProgressReporter:
        pod = os.environ.get(POD_NAME_ENV)
        patcher = None
        if pod:
            namespace = os.environ.get(NAMESPACE_ENV, "default")
            try:
                patcher = kubernetes_patcher(pod, namespace)
            except Exception as exc:  # no config: report locally only
                log.warning("progress annotation disabled: %s", exc)
        return cls(patcher)

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
        self._pending = text
        now = self._clock()
        if force or self._last_sent is None or now - self._last_sent >= self._min_interval:
            self.flush()
        return progress

    def flush(self) -> None:
        if self._pending is None or self._patcher is None:
            self._pending = None
            return
        text, self._pending = self._pending, None
        self._last_sent = self._clock()
        try:
            self._patcher(text)
        except Exception as exc:  # the API server being slow must not kill training
            log.warning("could not patch progress annotation: %s", exc)


def parse_local_line(line: str) -> dict[str, Any] | None:
    """Parse one local progress line (used by tests and log readers)."""
    if not line.startswith(LOCAL_PREFIX):
        return None
    data: dict[str, Any] = json.loads(line[len(LOCAL_PREFIX):])
    return data
