"""The message of a pydantic ValidationError, naming each field as a user writes it."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["validation_message"]


def validation_message(exc: ValidationError, prefix: str | None = "spec") -> str:
    """``spec.a.b: message; ...`` (or ``a.b: message`` with no prefix)."""
    head = f"{prefix}." if prefix else ""
    return "; ".join(
        f"{head}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )
