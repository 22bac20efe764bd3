"""Whether a child object is this controller's own, by its controller ownerReference.

Children have deterministic names (``<job>-a<N>``, ``<version>-verify-<hash>``) so a
retried reconcile finds what it created. Anyone allowed to create pods can take
such a name first; a name alone is never trust. A child is this owner's only if
its controller reference names the owner's uid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["awaiting_collection", "controller_uid", "is_controlled_by"]


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid the object's controller ownerReference names (None: it has none)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "") or None
    return None


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """True when ``obj``'s controller reference is ``owner`` (same uid), blocking deletion.

    The operator always sets ``blockOwnerDeletion``; where the API server enforces
    OwnerReferencesPermissionEnforcement, setting it needs ``update`` on the owner's
    ``finalizers`` subresource, which a tenant who merely creates pods lacks.
    """
    uid = (owner.get("metadata") or {}).get("uid")
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return bool(uid) and ref.get("uid") == uid and ref.get("blockOwnerDeletion") is True
    return False


def awaiting_collection(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """A stranger that is on its way out: deleting, or controlled by a gone namesake.

    A controller reference of the owner's kind and name but another uid names an
    object that cannot exist (names are unique), so the garbage collector deletes
    the child: a previous incarnation's pod, or a forgery. Waiting for it is safe;
    it is never read.
    """
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return True
    own = owner.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == owner.get("kind")
            and ref.get("name") == own.get("name")
            and ref.get("uid") != own.get("uid")
        ):
            return True
    return False
