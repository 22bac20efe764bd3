"""kopf glue for InferenceServices: indexes, wake-ups and one daemon per service.

Watches, not polling: kopf indexes keep ModelVersions (by namespace and model),
the services' child Deployments and pods in memory; each change wakes the
daemon of the services it concerns (ModelVersion -> services through the
``isvc_by_model`` index). The daemon is the one writer of its service's children
and status, so passes never race; between wake-ups it sleeps until the rollout's
next time-driven decision (a pause ending, a deadline passing) or a long resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from forja_api import contract
from forja_api.v1alpha1.common import GROUP, VERSION
from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec
from forja_operator.config import OperatorConfig
from forja_operator.controller.events import Event
from forja_operator.errors import KubeError
from forja_operator.handlers.common import ensure_runtime
from forja_operator.inferenceservice import builders as b
from forja_operator.inferenceservice.errorrate import Counts, scrape_counts
from forja_operator.inferenceservice.kubeapi import KubeChildApi
from forja_operator.inferenceservice.reconcile import (
    DeploymentView,
    PodView,
    ServiceMemory,
    deployment_view,
    pod_view,
    reconcile_service,
)
from forja_operator.inferenceservice.resolve import VersionRecord, record_from_body, selector_models

__all__ = ["WakeUps"]

Key = tuple[str | None, str]
"""(namespace, model name) or (namespace, service name): the indexes' keys."""

GATEWAY_GROUP_VERSION = "gateway.networking.k8s.io/v1"
_log = logging.getLogger(__name__)


class WakeUps:
    """One asyncio.Event per service: set by watch handlers, awaited by its daemon."""

    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}

    def event(self, namespace: str | None, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str) -> None:
        self.event(namespace, name).set()

    def forget(self, namespace: str | None, name: str) -> None:
        self._events.pop((namespace, name), None)


WAKEUPS = WakeUps()


def _settings(cfg: OperatorConfig) -> b.ServerSettings:
    return b.ServerSettings(
        image=cfg.server_image,
        command=tuple(cfg.server_command or b.ServerSettings("").command),
        s3_endpoint=cfg.artifact_store.endpoint,
        s3_secret=cfg.artifact_store.credentials_secret,
    )


# --- indexes ---------------------------------------------------------------------


@kopf.index(GROUP, VERSION, "modelversions")
def isvc_modelversions(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, VersionRecord] | None:
    record = record_from_body(body)
    return {(namespace, record.model): record} if record else None


@kopf.index(GROUP, VERSION, "inferenceservices")
def isvc_by_model(*, namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Key, str]:
    try:
        models = selector_models(InferenceServiceSpec.model_validate(dict(spec)))
    except ValueError:
        return {}
    return {(namespace, m): name for m in models}


@kopf.index("apps", "v1", "deployments", labels={contract.ISVC_LABEL: kopf.PRESENT})
def isvc_deployments(
    *, namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, DeploymentView] | None:
    view = deployment_view(body)
    return {(namespace, labels[contract.ISVC_LABEL]): view} if view else None


@kopf.index("", "v1", "pods", labels={contract.ISVC_LABEL: kopf.PRESENT})
def isvc_pods(
    *, namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, PodView] | None:
    view = pod_view(body)
    return {(namespace, labels[contract.ISVC_LABEL]): view} if view else None


# --- wake-ups ----------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "modelversions")
def wake_on_modelversion(
    *,
    namespace: str | None,
    spec: kopf.Spec,
    **kwargs: Any,
) -> None:
    isvc_by_model: kopf.Index[Key, str] = kwargs["isvc_by_model"]
    for name in isvc_by_model.get((namespace, str(spec.get("model", ""))), []):
        WAKEUPS.wake(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={contract.ISVC_LABEL: kopf.PRESENT})
def wake_on_deployment(*, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    WAKEUPS.wake(namespace, labels[contract.ISVC_LABEL])


@kopf.on.event(GROUP, VERSION, "inferenceservices")
def wake_on_inferenceservice(*, namespace: str | None, name: str, **_: Any) -> None:
    WAKEUPS.wake(namespace, name)


# --- the daemon ---------------------------------------------------------------------


def _emitter(body: kopf.Body) -> Any:
    def emit(event: Event) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)

    return emit


async def _scrape(pods: Iterable[tuple[str, str]]) -> Mapping[str, Counts]:
    return await scrape_counts(pods)


@kopf.daemon(GROUP, VERSION, "inferenceservices", cancellation_timeout=10.0, backoff=5.0)
async def run_inferenceservice(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Reconcile one service whenever something it depends on changes, until deleted."""
    # kopf passes its indexes by name (not part of its typed handler protocol).
    isvc_modelversions: kopf.Index[Key, VersionRecord] = kwargs["isvc_modelversions"]
    isvc_deployments: kopf.Index[Key, DeploymentView] = kwargs["isvc_deployments"]
    isvc_pods: kopf.Index[Key, PodView] = kwargs["isvc_pods"]
    rt = ensure_runtime(kwargs["memo"])
    api = KubeChildApi(rt.kube)
    settings = _settings(rt.config)
    resync = rt.config.inference_service_resync_seconds
    memory = ServiceMemory()
    wake = WAKEUPS.event(namespace, name)
    gateway_api: bool | None = None
    try:
        while not stopped:
            wake.clear()
            delay: float | None = resync
            try:
                spec = InferenceServiceSpec.model_validate(dict(body.spec))
                models = selector_models(spec)
                if spec.gateway is not None and gateway_api is None:
                    gateway_api = await api.has_api(GATEWAY_GROUP_VERSION)
            except ValueError:
                models = []
            try:
                records = [r for m in models for r in isvc_modelversions.get((namespace, m), [])]
                delay = await reconcile_service(
                    body=body,
                    records=records,
                    deployments=list(isvc_deployments.get((namespace, name), [])),
                    pods=list(isvc_pods.get((namespace, name), [])),
                    api=api,
                    memory=memory,
                    settings=settings,
                    gateway_api=bool(gateway_api),
                    now=datetime.now(UTC),
                    scrape=_scrape,
                    emit=_emitter(body),
                )
            except KubeError as exc:
                # Not ready yet (a conflict, the API server busy): try again soon.
                logger.warning(f"reconcile failed, retrying: {exc}")
                memory.applied.clear()
                delay = 2.0
            timeout = min(delay if delay is not None else resync, resync)
            await _wait(wake, stopped, timeout)
    finally:
        WAKEUPS.forget(namespace, name)


async def _wait(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Until woken, stopped, or timeout seconds pass."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(timeout, 0.05), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
