"""The InferenceService controller's writes (:class:`ChildApi`) over :class:`ObjectApi`.

Only adapts the shape the pure reconcile pass wants (deletes by apiVersion and kind,
a status patch of the service) to the one module that talks to the API server.
"""

from __future__ import annotations

from typing import Any

from forja_operator.controller.api import ObjectApi

__all__ = ["KubeChildApi"]


class KubeChildApi:
    def __init__(self, kube: ObjectApi) -> None:
        self._kube = kube

    async def apply(self, obj: dict[str, Any]) -> None:
        await self._kube.apply(obj)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        await self._kube.delete(kind, namespace, name, api_version=api_version)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._kube.merge_patch(
            "InferenceService", namespace, name, {"status": patch}, status=True
        )

    async def has_api(self, group_version: str) -> bool:
        return await self._kube.has_api(group_version)
