"""Pieces every builder uses: owner references, labels, storage wiring, security."""

from __future__ import annotations

import hashlib
from typing import Any

from forja_api import contract
from forja_api.v1alpha1.common import Scheduling

__all__ = [
    "JOB_UID_LABEL",
    "PVC_ROOT",
    "RESTRICTED_CONTAINER_SECURITY",
    "RESTRICTED_POD_SECURITY",
    "bounded_name",
    "join_uri",
    "owner_reference",
    "pvc_claims",
    "store_env",
]

PVC_ROOT = "/mnt/forja/pvc"
MAX_LABEL = 63
"""A label value's limit: child names and labels derived from an object's name fit it."""
JOB_UID_LABEL = f"{contract.GROUP}/trainingjob-uid"

# Pod Security "restricted": non-root, no privilege escalation, no capabilities,
# the runtime's default seccomp profile. A fixed numeric uid lets the kubelet check
# runAsNonRoot even when an image names its user by name.
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """The controller reference kopf.adopt() would set, built without kopf."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def join_uri(base: str, *parts: str) -> str:
    """Join URI path parts with single slashes; a trailing '/' on the last part is kept."""
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    if parts and parts[-1].endswith("/"):
        out += "/"
    return out


def pvc_claims(*uris: str | None) -> list[str]:
    """Claims named by pvc:// URIs, in first-seen order."""
    claims: list[str] = []
    for uri in uris:
        if uri and uri.startswith("pvc://"):
            claim = uri[len("pvc://") :].split("/", 1)[0]
            if claim and claim not in claims:
                claims.append(claim)
    return claims


def pvc_volumes(
    claims: list[str], writable: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {
            "name": f"pvc-{i}",
            "persistentVolumeClaim": {"claimName": c, "readOnly": c not in writable},
        }
        for i, c in enumerate(claims)
    ]
    mounts = [
        {"name": f"pvc-{i}", "mountPath": f"{PVC_ROOT}/{c}", "readOnly": c not in writable}
        for i, c in enumerate(claims)
    ]
    return volumes, mounts


def store_env(
    uses_s3: bool, endpoint: str | None, credentials_secret: str | None
) -> list[dict[str, Any]]:
    """S3 endpoint in plain env, credentials only as secretKeyRef (never inline)."""
    env: list[dict[str, Any]] = []
    if not uses_s3:
        return env
    if endpoint:
        env.append({"name": contract.S3_ENDPOINT_ENV, "value": endpoint})
    if credentials_secret:
        for name, key in (
            ("AWS_ACCESS_KEY_ID", "accessKey"),
            ("AWS_SECRET_ACCESS_KEY", "secretKey"),
        ):
            env.append(
                {
                    "name": name,
                    "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key}},
                }
            )
    return env


def scheduling_fields(scheduling: Scheduling) -> dict[str, Any]:
    """The pod spec fields a spec's ``scheduling`` sets (only those it sets)."""
    fields: dict[str, Any] = {}
    if scheduling.node_selector:
        fields["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        fields["tolerations"] = [t.to_wire() for t in scheduling.tolerations]
    if scheduling.priority_class_name:
        fields["priorityClassName"] = scheduling.priority_class_name
    return fields


def bounded_name(base: str, suffix: str = "", limit: int = MAX_LABEL) -> str:
    """``base + suffix``, or, when that is over ``limit``, a cut of ``base``, a digest of
    the whole ``base`` and ``suffix``: two long names that share a prefix never collide,
    and names that fit are left as they are."""
    name = base + suffix
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{base[:keep].rstrip('-.')}-{digest}{suffix}"
