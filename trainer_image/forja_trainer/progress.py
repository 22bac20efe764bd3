"""Progress while training: the pod annotation the operator watches, or a local bar.

The annotation (:data:`forja_api.contract.PROGRESS_ANNOTATION`) is patched from a
background thread at most once every ``PROGRESS_MIN_INTERVAL_SECONDS``; only the
newest report is kept, so a slow API server never delays a training step and never
receives a burst. Failing to report is logged and forgotten: it must never kill a
training run.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from forja_api.contract import (
    NAMESPACE_ENV,
    POD_NAME_ENV,
    PROGRESS_ANNOTATION,
    PROGRESS_MIN_INTERVAL_SECONDS,
    Progress,
)

__all__ = [
    "ConsoleSink",
    "PodAnnotationSink",
    "ProgressReporter",
    "ProgressSink",
    "kubernetes_pod_patcher",
]

log = logging.getLogger(__name__)

PatchFn = Callable[[dict[str, str]], None]
"""Sets annotations on the trainer's own pod (a seam so tests need no API server)."""


class ProgressSink(Protocol):
    def send(self, progress: Progress) -> None: ...

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None: ...

    def close(self) -> None: ...


def kubernetes_pod_patcher(pod: str, namespace: str) -> PatchFn:
    """A patch function for the pod's own annotations (in-cluster config, else kubeconfig)."""
    from kubernetes import client, config  # noqa: PLC0415 - only inside pods

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # The client reads $KUBECONFIG once, at import; read it now.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG")
        )
    api = client.CoreV1Api()

    def patch(annotations: dict[str, str]) -> None:
        api.patch_namespaced_pod(
            pod, namespace, {"metadata": {"annotations": annotations}}, _request_timeout=10
        )

    return patch


class PodAnnotationSink:
    """Sends the newest Progress to the pod annotation, rate-limited, off the training thread."""

    def __init__(
        self,
        patch: PatchFn,
        min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._patch = patch
        self._min_interval = min_interval
        self._clock = clock
        self._pending: Progress | None = None
        self._last_sent = -float("inf")
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="forja-progress", daemon=True)
        self._thread.start()

    def send(self, progress: Progress) -> None:
        with self._cond:
            self._pending = progress
            self._cond.notify()

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None:
        return None  # per-step detail is for people watching a terminal, not the API server

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None and self._closed:
                    return
                wait = self._last_sent + self._min_interval - self._clock()
                if wait > 0 and not self._closed:
                    self._cond.wait(timeout=wait)
                    continue
                progress, self._pending = self._pending, None
            if progress is not None:
                self._deliver(progress)

    def _deliver(self, progress: Progress) -> None:
        self._last_sent = self._clock()
        try:
            self._patch({PROGRESS_ANNOTATION: progress.to_json()})
            self.sent += 1
        except Exception as exc:
            self.failures += 1
            if self.failures <= 3 or self.failures % 50 == 0:
                log.warning("progress report failed (%d so far): %s", self.failures, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver the last pending report (once, even inside the interval) and stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)


class ConsoleSink:
    """A progress line for local runs: a bar within the epoch, one line per epoch."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self._stream = stream or sys.stderr
        self._width = width
        self._tty = self._stream.isatty()
        self._last_step = 0.0

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None:
        if not self._tty:
            return
        now = time.monotonic()
        if now - self._last_step < 0.1 and done < total:
            return
        self._last_step = now
        filled = int(self._width * done / max(total, 1))
        bar = "#" * filled + "-" * (self._width - filled)
        self._stream.write(
            f"\repoch {epoch + 1}/{total_epochs} [{bar}] {done}/{total} loss {loss:.4f}"
        )
        self._stream.flush()

    def send(self, progress: Progress) -> None:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(progress.metrics.items()))
        eta = f" eta {progress.eta_seconds:.0f}s" if progress.eta_seconds is not None else ""
        filled = int(self._width * progress.percent / 100)
        bar = "#" * filled + "-" * (self._width - filled)
        prefix = "\r" if self._tty else ""
        self._stream.write(
            f"{prefix}epoch {progress.epoch}/{progress.total_epochs} [{bar}] "
            f"{progress.percent:3d}% {metrics}{eta}\n"
        )
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class ProgressReporter:
    """Fans a report out to the sinks; the runtime picks the sinks from the environment."""

    def __init__(self, sinks: list[ProgressSink] | None = None) -> None:
        self.sinks: list[ProgressSink] = list(sinks or [])
        self.last: Progress | None = None

    @classmethod
    def from_env(cls, *, console: bool | None = None) -> ProgressReporter:
        """The pod annotation when FORJA_POD_NAME is set, else (or also) a console line."""
        sinks: list[ProgressSink] = []
        pod = os.environ.get(POD_NAME_ENV)
        namespace = os.environ.get(NAMESPACE_ENV)
        if pod and namespace:
            try:
                sinks.append(PodAnnotationSink(kubernetes_pod_patcher(pod, namespace)))
            except Exception as exc:
                log.warning("cannot report progress to pod %s/%s: %s", namespace, pod, exc)
        if console if console is not None else not pod:
            sinks.append(ConsoleSink())
        return cls(sinks)

    def report(self, progress: Progress) -> None:
        self.last = progress
        for sink in self.sinks:
            sink.send(progress)

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None:
        for sink in self.sinks:
            sink.step(epoch, total_epochs, done, total, loss)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing progress sink failed: %s", exc)
