"""An Event a plan asks to record, and the core/v1 Event object that records it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_EVENT_MESSAGE", "Event", "event_manifest"]

MAX_EVENT_MESSAGE = 1000


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def event_manifest(body: Mapping[str, Any], event: Event, now: str) -> dict[str, Any]:
    """The core/v1 Event about ``body`` (named by the API server from generateName)."""
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion", "v1"),
            "kind": body.get("kind", ""),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MAX_EVENT_MESSAGE],
        "source": {"component": "forja-operator"},
        "reportingComponent": "forja.dev/operator",
        "reportingInstance": "forja-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
