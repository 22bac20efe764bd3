"""In-memory copies of watched objects, fed by kopf's watch events (an informer's store).

Writes the operator makes are put in too (write-through), and an older
resourceVersion never replaces a newer one, so a reconcile that runs before the
watch catches up still sees what the operator itself just did.

Objects are stored compacted (:func:`compact`): without ``metadata.managedFields``,
which nothing here reads and which is a third of a pod, and with their repeated
strings shared. Every watch event is parsed on its own, so each pod otherwise holds
its own copy of every key and of values such as its image: 39 KB a pod and 17 KB a
TrainingJob in memory, 16 KB and 5 KB compacted. With 5,000 single-worker jobs
(bench/operator) the operator's peak RSS went from 386 MB to 188 MB.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["Store", "compact", "newer_or_equal"]

Key = tuple[str, str]

# Strings shared between stored objects: keys and short values seen early (field
# names, label keys, images, phases). Bounded, because names, uids and timestamps are
# unique and would otherwise be kept for ever; the repeated ones all come in the first
# few objects, before the bound is reached.
_SHARED_MAX = 8192
_SHARED_LEN = 64
_shared: dict[str, str] = {}


def _share(text: str) -> str:
    found = _shared.get(text)
    if found is not None:
        return found
    if len(_shared) < _SHARED_MAX and len(text) <= _SHARED_LEN:
        _shared[text] = text
    return text


def _compacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {_share(k): _compacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compacted(v) for v in value]
    if isinstance(value, str):
        return _share(value)
    return value


def compact(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``obj`` without managedFields, its strings shared with other objects."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    out: dict[str, Any] = _compacted({**obj, "metadata": meta})
    return out


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
        obj = compact(obj)
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
