"""Progress while training: the pod annotation the operator watches, or a local bar.

The annotation sink (:class:`forja_progress.PodAnnotationSink`, shared with the TF
trainer) patches from a background thread, rate-limited, keeping only the newest
report, so a slow API server never delays a training step; failing to report is
logged and forgotten: it must never kill a training run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Protocol, TextIO

from forja_api.contract import POD_NAME_ENV, Progress
from forja_progress import PodAnnotationSink, kubernetes_pod_patcher, pod_patcher_from_env

__all__ = [
    "ConsoleSink",
    "PodAnnotationSink",
    "ProgressReporter",
    "ProgressSink",
    "kubernetes_pod_patcher",
]

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def send(self, progress: Progress) -> None: ...

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None: ...

    def close(self) -> None: ...


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
        patch = pod_patcher_from_env()
        if patch is not None:
            sinks.append(PodAnnotationSink(patch))
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
