"""The InferenceService controller's writes to the API server (:class:`ChildApi`).

Server-side apply of children with the operator's field manager, deletes, and
status merge patches, over the kubernetes client's ApiClient in a thread pool
(the client is synchronous; kopf's loop must not block). This is a stop-gap
beside ``forja_operator.kube``: once that module offers server-side apply for
arbitrary kinds, this class becomes a thin wrapper around it.
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

from forja_api.v1alpha1.common import API_VERSION
from forja_operator.errors import KubeError

__all__ = ["FIELD_MANAGER", "KubeChildApi", "object_path"]

FIELD_MANAGER = "forja-operator"
_PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "HTTPRoute": "httproutes",
    "InferenceService": "inferenceservices",
}


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{_PLURALS[kind]}/{name}"


class KubeChildApi:
    def __init__(self, api_client: client.ApiClient | None = None, threads: int = 4) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                # The client reads $KUBECONFIG once, at import; read it now.
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.environ.get("KUBECONFIG")
                )
            api_client = client.ApiClient()
        # The client's call_api is not typed for the keywords used here.
        self._api: Any = api_client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="isvc-kube")

    def _call(
        self, method: str, path: str, body: Any, content_type: str, query: list[tuple[str, str]]
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
            raw = resp.read()
        except ApiException as exc:
            raise KubeError(exc.status or 0, f"{method} {path}: {exc.reason}") from exc
        if not 200 <= resp.status < 300:
            message = resp.reason or ""
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(raw or b"{}").get("message", message)
            raise KubeError(resp.status, f"{method} {path}: {message}")
        return dict(json.loads(raw)) if raw else {}

    async def _run(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: self._call(method, path, body, content_type, query or [])
        )

    async def apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        # force: the operator is the one owner of its children's fields.
        await self._run(
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            await self._run(
                "DELETE",
                object_path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = object_path(API_VERSION, "InferenceService", namespace, name) + "/status"
        await self._run(
            "PATCH",
            path,
            body={"status": patch},
            content_type="application/merge-patch+json",
            query=[("fieldManager", FIELD_MANAGER)],
        )

    async def has_api(self, group_version: str) -> bool:
        """Whether the API server serves a group/version (e.g. the Gateway API's)."""
        try:
            await self._run("GET", f"/apis/{group_version}")
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()
