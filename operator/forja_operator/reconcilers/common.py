"""What the TrainingJob and ModelVersion reconcilers share: writing status, refusing a spec."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from forja_operator.controller.api import ObjectApi
from forja_operator.controller.patch import merge_patch
from forja_operator.controller.validation import validation_message
from forja_operator.errors import NotFoundError

__all__ = ["invalid_spec_status", "patch_status"]


async def patch_status(
    api: ObjectApi, kind: str, obj: dict[str, Any], new: dict[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch ``obj``'s status into ``new``: the updated object, None if equal or gone."""
    patch = merge_patch(obj.get("status"), new)
    if not patch:
        return None
    meta = obj["metadata"]
    try:
        return await api.merge_patch(
            kind, meta["namespace"], meta["name"], {"status": patch}, status=True
        )
    except NotFoundError:
        return None


def invalid_spec_status(obj: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
    """The status of an object whose spec the CRD schema should have refused.

    Failed with the fields named, and not retried: such a spec cannot work.
    """
    return {**(obj.get("status") or {}), "phase": "Failed", "message": validation_message(exc)}
