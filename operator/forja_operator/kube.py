"""The one module that talks to the API server.

A thin async layer over the kubernetes client's ApiClient: calls run in a
bounded thread pool and return plain dicts (no model deserialisation, which
costs more CPU than the request). Children are created with deterministic names
and create-if-absent semantics, so a retried reconcile never duplicates one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from forja_api.v1alpha1.common import GROUP, VERSION
from forja_operator.errors import ConflictError, KubeError, NotFoundError

__all__ = ["Kube", "resource_path"]

FIELD_MANAGER = "forja-operator"
_CORE = {
    "Event": "events",
    "Pod": "pods",
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "Service": "services",
}
_GROUPED = {
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Deployment": ("apps/v1", "deployments"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "TrainingJob": (f"{GROUP}/{VERSION}", "trainingjobs"),
    "ModelVersion": (f"{GROUP}/{VERSION}", "modelversions"),
    "InferenceService": (f"{GROUP}/{VERSION}", "inferenceservices"),
}


def resource_path(
    kind: str,
    namespace: str,
    name: str | None = None,
    sub: str | None = None,
    api_version: str | None = None,
) -> str:
    """The namespaced path of ``kind``; ``api_version`` (an object's own) overrides the table's."""
    if kind in _CORE:
        default, plural = "v1", _CORE[kind]
    elif kind in _GROUPED:
        default, plural = _GROUPED[kind]
    else:
        raise ValueError(f"unknown kind {kind}")
    version = api_version or default
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class Kube:
    """Async calls returning dicts; errors are forja_operator.errors.KubeError."""

    def __init__(self, api_client: client.ApiClient | None = None, threads: int = 16) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                # The client reads $KUBECONFIG once, at import; read it now.
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.environ.get("KUBECONFIG")
                )
            cfg = client.Configuration.get_default_copy()
            cfg.connection_pool_maxsize = threads * 2
            api_client = client.ApiClient(cfg)
        self._api = api_client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        api = self._api
        try:
            _, url, headers, data, _ = api.param_serialize(
                method,
                path,
                query_params=query or None,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = api.call_api(method, url, header_params=headers, body=data, _request_timeout=60)
            raw = resp.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise KubeError(exc.status or 0, str(exc.reason)) from exc
        if not 200 <= resp.status < 300:
            message = resp.reason or ""
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(raw or b"{}").get("message", message)
            if resp.status == 409:
                raise ConflictError(409, message)
            if resp.status == 404:
                raise NotFoundError(404, message)
            raise KubeError(resp.status, message)
        return dict(json.loads(raw)) if raw else {}

    async def _run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call(*args, **kwargs))

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self._run(
            "POST",
            resource_path(obj["kind"], meta["namespace"]),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER)],
        )

    async def ensure(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``obj`` unless it exists; returns (object, created)."""
        try:
            return await self.create(obj), True
        except ConflictError:
            meta = obj["metadata"]
            return await self.get(obj["kind"], meta["namespace"], meta["name"]), False

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._run("GET", resource_path(kind, namespace, name))

    async def list(
        self, kind: str, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        if namespace is None:
            api_version, plural = _GROUPED.get(kind, ("v1", _CORE.get(kind, "")))
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            path = f"{base}/{plural}"
        else:
            path = resource_path(kind, namespace)
        query = [("labelSelector", selector)] if selector else []
        items = (await self._run("GET", path, query=query)).get("items", [])
        return list(items)

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        uid: str | None = None,
        api_version: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        path = resource_path(kind, namespace, name, api_version=api_version)
        with contextlib.suppress(NotFoundError):
            await self._run("DELETE", path, body=body)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager (create or update)."""
        meta = obj["metadata"]
        # force: the operator is the one owner of its children's fields.
        return await self._run(
            "PATCH",
            resource_path(
                obj["kind"], meta["namespace"], meta["name"], api_version=obj["apiVersion"]
            ),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    async def has_api(self, group_version: str) -> bool:
        """Whether the API server serves a group/version (e.g. the Gateway API's)."""
        try:
            await self._run("GET", f"/apis/{group_version}")
        except NotFoundError:
            return False
        return True

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]:
        return await self._run(
            "PATCH",
            resource_path(kind, namespace, name, "status" if status else None),
            body=patch,
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]
