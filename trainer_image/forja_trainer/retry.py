"""Bounded retries of declared recoverable errors, with exponential backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from forja_trainer.errors import RetryableError

__all__ = ["with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    errors: tuple[type[BaseException], ...],
    attempts: int = 3,
    backoff: float = 0.5,
    retry_if: Callable[[BaseException], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on one of ``errors`` (for which ``retry_if`` holds) retry, up to
    ``attempts`` calls in all, then raise :class:`RetryableError` (exit 75: the
    operator retries the attempt)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except errors as exc:
            if retry_if is not None and not retry_if(exc):
                raise
            if attempt == attempts:
                raise RetryableError(f"{what} failed {attempts} times: {exc}") from exc
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
