"""The pod-annotation progress sink both trainer images share.

A trainer reports :class:`forja_api.contract.Progress` to its own pod's
:data:`forja_api.contract.PROGRESS_ANNOTATION`, which the operator sees through
its pod watch. Patches go out at most once every ``PROGRESS_MIN_INTERVAL_SECONDS``
and only the newest report waits, so the API server never receives a burst. A
failed patch is logged (the first three, then every 50th) and forgotten: reporting
must never stop a training run.

:class:`AnnotationThrottle` is the synchronous core, for a trainer whose reports
come between long steps (the TF pipeline); :class:`PodAnnotationSink` drives it
from a background thread, so a training step never waits on the API server (the
torch loop).

A package of its own: the two trainer packages must not import each other
(``.importlinter``), and ``forja_api`` must not import the kubernetes client.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from forja_api.contract import (
    NAMESPACE_ENV,
    POD_NAME_ENV,
    PROGRESS_ANNOTATION,
    PROGRESS_MIN_INTERVAL_SECONDS,
    Progress,
)

__all__ = [
    "AnnotationThrottle",
    "PatchFn",
    "PodAnnotationSink",
    "SendFn",
    "kubernetes_pod_patcher",
    "pod_patcher_from_env",
]

log = logging.getLogger(__name__)

PatchFn = Callable[[dict[str, str]], None]
"""Sets annotations on the trainer's own pod (a seam so tests need no API server)."""
SendFn = Callable[[str], None]
"""Writes one Progress JSON to the progress annotation."""


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


def pod_patcher_from_env() -> PatchFn | None:
    """This pod's patcher when the operator set FORJA_POD_NAME and FORJA_NAMESPACE;
    None outside a pod, or (logged) when no client configuration loads."""
    pod = os.environ.get(POD_NAME_ENV)
    namespace = os.environ.get(NAMESPACE_ENV)
    if not pod:
        return None
    if not namespace:
        log.warning("progress annotation disabled: %s is set but %s is not",
                    POD_NAME_ENV, NAMESPACE_ENV)
        return None
    try:
        return kubernetes_pod_patcher(pod, namespace)
    except Exception as exc:  # no configuration: report locally only
        log.warning("cannot report progress to pod %s/%s: %s", namespace, pod, exc)
        return None


class AnnotationThrottle:
    """Holds the newest progress JSON and sends it when the interval allows.

    Not thread-safe by itself: :class:`PodAnnotationSink` guards it with its lock.
    """

    def __init__(
        self,
        send: SendFn,
        min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._min_interval = min_interval
        self._clock = clock
        self._last_sent = -float("inf")
        self.pending: str | None = None
        self.sent = 0
        self.failures = 0

    def offer(self, text: str) -> None:
        """Keep ``text`` as the report to send next (it replaces an unsent one)."""
        self.pending = text

    def wait_seconds(self) -> float:
        """How long until a send is allowed (zero or less: now)."""
        return self._last_sent + self._min_interval - self._clock()

    def take(self) -> str | None:
        text, self.pending = self.pending, None
        return text

    def deliver(self, text: str) -> None:
        """Send ``text`` now; a failure is counted and logged, never raised."""
        self._last_sent = self._clock()
        try:
            self._send(text)
            self.sent += 1
        except Exception as exc:  # the API server being down must not stop training
            self.failures += 1
            if self.failures <= 3 or self.failures % 50 == 0:
                log.warning("progress report failed (%d so far): %s", self.failures, exc)

    def flush(self) -> None:
        """Send the pending report now, inside the interval or not."""
        text = self.take()
        if text is not None:
            self.deliver(text)


class PodAnnotationSink:
    """Sends the newest Progress to the pod annotation, rate-limited, off the training thread."""

    def __init__(
        self,
        patch: PatchFn,
        min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._throttle = AnnotationThrottle(
            lambda text: patch({PROGRESS_ANNOTATION: text}), min_interval, clock
        )
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="forja-progress", daemon=True)
        self._thread.start()

    @property
    def sent(self) -> int:
        return self._throttle.sent

    @property
    def failures(self) -> int:
        return self._throttle.failures

    def send(self, progress: Progress) -> None:
        with self._cond:
            self._throttle.offer(progress.to_json())
            self._cond.notify()

    def step(self, epoch: int, total_epochs: int, done: int, total: int, loss: float) -> None:
        return None  # per-step detail is for people watching a terminal, not the API server

    def _run(self) -> None:
        throttle = self._throttle
        while True:
            with self._cond:
                while throttle.pending is None and not self._closed:
                    self._cond.wait()
                if throttle.pending is None and self._closed:
                    return
                wait = throttle.wait_seconds()
                if wait > 0 and not self._closed:
                    self._cond.wait(timeout=wait)
                    continue
                text = throttle.take()
            if text is not None:  # sent outside the lock: send() never waits on the API
                throttle.deliver(text)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver the last pending report (once, even inside the interval) and stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
