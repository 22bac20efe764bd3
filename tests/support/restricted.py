"""A pod as the restricted Pod Security profile admits it and the runtime enforces it:
the operator's own security contexts, a read-only root and /tmp an emptyDir (the only
writable path, as in the pods the operator builds)."""

from __future__ import annotations

import copy
from typing import Any

from forja_operator.builders.common import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
)

__all__ = ["ENFORCE_RESTRICTED", "restricted"]

ENFORCE_RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def restricted(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with the restricted profile's security contexts and a /tmp emptyDir."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec["securityContext"] = copy.deepcopy(RESTRICTED_POD_SECURITY)
    spec.setdefault("volumes", []).append({"name": "tmp", "emptyDir": {}})
    for container in spec["containers"]:
        container["securityContext"] = {**RESTRICTED_CONTAINER_SECURITY,
                                        "readOnlyRootFilesystem": True}
        container.setdefault("volumeMounts", []).append({"name": "tmp", "mountPath": "/tmp"})
    return pod
