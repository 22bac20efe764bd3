"""Reading a pod's status the same way for attempt, verify and server pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["container_state", "pod_conditions", "pod_is_ready"]


def container_state(pod: Mapping[str, Any], container: str | None = None) -> dict[str, Any]:
    """The state of ``container`` (else the pod's first container): {running|terminated|...}."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for st in statuses:
        if container is not None and st.get("name") == container:
            return dict(st.get("state") or {})
    return dict(statuses[0].get("state") or {}) if statuses else {}


def pod_conditions(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod's conditions by type."""
    return {str(x.get("type")): dict(x) for x in (pod.get("status") or {}).get("conditions") or []}


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    return pod_conditions(pod).get("Ready", {}).get("status") == "True"
