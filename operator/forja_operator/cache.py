"""In-memory copies of watched objects, fed by kopf's watch events (an informer's store).

Writes the operator makes are put in too (write-through), and an older
resourceVersion never replaces a newer one, so a reconcile that runs before the
watch catches up still sees what the operator itself just did.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["Store", "newer_or_equal"]

Key = tuple[str, str]


def _rv(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


def newer_or_equal(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return True
    a, b = _rv(new), _rv(old)
    return a is None or b is None or a >= b


class Store:
    """Objects by (namespace, name), and grouped by (namespace, group key) for children."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.groups: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._group_of: dict[Key, Key] = {}

    def put(self, obj: dict[str, Any], group: str | None = None) -> bool:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if not newer_or_equal(obj, self.objects.get(key)):
            return False
        obj = dict(obj)
        self.objects[key] = obj
        if group is not None:
            gkey = (meta["namespace"], group)
            old = self._group_of.get(key)
            if old and old != gkey:
                self.groups[old].pop(meta["name"], None)
            self._group_of[key] = gkey
            self.groups[gkey][meta["name"]] = obj
        return True

    def remove(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.objects.pop(key, None)
        gkey = self._group_of.pop(key, None)
        if gkey:
            self.groups[gkey].pop(name, None)
            if not self.groups[gkey]:
                del self.groups[gkey]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def live(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object unless it is absent or being deleted (nothing left to reconcile)."""
        obj = self.get(namespace, name)
        return None if obj is None or obj["metadata"].get("deletionTimestamp") else obj

    def group(self, namespace: str, group: str) -> list[dict[str, Any]]:
        return list(self.groups.get((namespace, group), {}).values())

    def __len__(self) -> int:
        return len(self.objects)
