"""RFC 3339 times as status and Events carry them."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_rfc3339", "timestamp", "to_rfc3339"]


def timestamp(t: datetime) -> str:
    """Second precision in UTC, as conditions and Events carry time."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_rfc3339(t: datetime | None, seconds: bool = False) -> str | None:
    """``t`` as written (microseconds kept unless ``seconds``); None stays None."""
    if t is None:
        return None
    if seconds:
        t = t.replace(microsecond=0)
    return t.isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str | None) -> datetime | None:
    """None for an empty or unreadable time (status written by hand, an old version)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
