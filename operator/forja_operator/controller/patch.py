"""The one JSON merge patch (RFC 7386) every status write goes through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["merge_patch"]


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The patch turning ``old`` into ``new`` (nulls remove keys); {} when equal.

    Nested objects are diffed too, so a key dropped inside one (progress.etaSeconds)
    is removed on the server rather than merged back; lists are replaced whole.
    """
    old = old or {}
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value:
            patch[key] = value
    return patch
