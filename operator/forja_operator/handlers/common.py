"""The Runtime every handler module shares, created on first use at startup."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from forja_operator import metrics
from forja_operator.cache import Store
from forja_operator.config import OperatorConfig, load_config
from forja_operator.kube import Kube
from forja_operator.runtime import Runtime

__all__ = ["child_pod_event", "ensure_runtime", "list_watched", "runtime", "tune_settings"]


def ensure_runtime(memo: kopf.Memo) -> Runtime:
    rt: Runtime | None = getattr(memo, "forja", None)
    if rt is None:
        config: OperatorConfig = getattr(memo, "config", None) or load_config()
        rt = Runtime(config=config, kube=Kube())
        memo.forja = rt
        metrics.register_phase_collector(lambda: list(rt.jobs.objects.values()))
    return rt


def runtime(memo: kopf.Memo) -> Runtime:
    rt: Runtime = memo.forja
    return rt


async def list_watched(rt: Runtime, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
    """LIST ``kind`` in the watched namespaces (all when none are configured)."""
    if not rt.config.watch_namespaces:
        return await rt.kube.list(kind, None, selector)
    items: list[dict[str, Any]] = []
    for ns in rt.config.watch_namespaces:
        items += await rt.kube.list(kind, ns, selector)
    return items


def child_pod_event(
    rt: Runtime, event: kopf.RawEvent, pods: Store, owner_label: str, queue: str
) -> None:
    """Keep ``pods`` current (grouped by the owner the label names) and wake the owner."""
    obj = event["object"]
    meta = obj["metadata"]
    owner = meta["labels"][owner_label]
    if event["type"] == "DELETED":
        pods.remove(meta["namespace"], meta["name"])
    else:
        pods.put(dict(obj), group=owner)
    rt.queues[queue].add((meta["namespace"], owner))


def tune_settings(settings: kopf.OperatorSettings) -> None:
    # Our handlers are watch-event handlers: no finalizers, no progress annotations,
    # so kopf makes no writes of its own to the objects.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
