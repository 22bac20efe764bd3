"""The seam between the controllers and the API server.

:class:`ObjectApi` is what a reconcile needs; ``forja_operator.kube.Kube`` fills
it in the operator and an in-memory fake fills it in unit tests, so reconcilers
are tested without a cluster and without monkey-patching.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ObjectApi"]


class ObjectApi(Protocol):
    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST; ConflictError when the name is taken."""

    async def ensure(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create unless it exists; returns (object, created)."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """GET; NotFoundError when absent."""

    async def list(
        self, kind: str, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """LIST in one namespace (None: all) with an optional label selector."""

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        uid: str | None = None,
        api_version: str | None = None,
    ) -> None:
        """DELETE if present (with a uid precondition when given)."""

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager."""

    async def has_api(self, group_version: str) -> bool:
        """Whether the API server serves a group/version."""

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]:
        """JSON merge patch of the object (or of its status subresource)."""
