"""An in-memory ObjectApi for reconciler unit tests: the seam the operator fills with Kube.

It keeps objects by (kind, namespace, name), numbers resourceVersions, answers 409
on a taken name or a stale resourceVersion precondition and 404 on a missing
object, and records every write so a test can assert what a reconcile did.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from forja_operator.errors import ConflictError, NotFoundError

Key = tuple[str, str, str]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class MemoryApi:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        """(verb, kind, name) of every write, in order."""
        self._rv = itertools.count(1)
        self._names = itertools.count(1)

    # --- helpers for tests -------------------------------------------------------
    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        if obj["kind"] == "Service" and obj.get("spec", {}).get("type") == "ClusterIP":
            # as the API server does on create: a ClusterIP, fixed for the Service's life
            obj["spec"].setdefault("clusterIP", f"10.96.0.{next(self._names)}")
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k[2]: v for k, v in self.objects.items() if k[0] == kind}

    def count(self, verb: str, kind: str) -> int:
        return sum(1 for v, k, _ in self.writes if (v, k) == (verb, kind))

    # --- ObjectApi ----------------------------------------------------------------
    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if "name" not in meta:
            meta["name"] = f"{meta['generateName']}{next(self._names)}"
        if (obj["kind"], meta["namespace"], meta["name"]) in self.objects:
            raise ConflictError(409, f"{obj['kind']} {meta['name']} already exists")
        self.writes.append(("create", obj["kind"], meta["name"]))
        return self.put(obj)

    async def ensure(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        try:
            return await self.create(obj), True
        except ConflictError:
            meta = obj["metadata"]
            return await self.get(obj["kind"], meta["namespace"], meta["name"]), False

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(kind, namespace, name)])
        except KeyError:
            raise NotFoundError(404, f"{kind} {name} not found") from None

    async def list(
        self, kind: str, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        wanted = dict(s.split("=", 1) for s in selector.split(",")) if selector else {}
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and namespace in (None, ns)
            and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in wanted.items())
        ]

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        uid: str | None = None,
        api_version: str | None = None,
    ) -> None:
        self.writes.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"]))
        return self.put(copy.deepcopy(obj))

    async def has_api(self, group_version: str) -> bool:
        return False

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise NotFoundError(404, f"{kind} {name} not found")
        want_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if want_rv is not None and want_rv != obj["metadata"]["resourceVersion"]:
            raise ConflictError(409, f"{kind} {name} changed")
        self.writes.append(("patch-status" if status else "patch", kind, name))
        patch = {k: v for k, v in patch.items() if k != "metadata" or not status}
        if status:
            patch = {"status": patch.get("status") or {}}
        _merge(obj, {k: v for k, v in patch.items() if k != "metadata"})
        if not status and "metadata" in patch:
            meta_patch = {k: v for k, v in patch["metadata"].items() if k != "resourceVersion"}
            _merge(obj["metadata"], meta_patch)
        return self.put(obj)
