"""The final word of an attempt: a :class:`Result` in the termination message file.

The kubelet copies ``/dev/termination-log`` into the pod status, where the operator
reads it. Local runs point ``FORJA_TERMINATION_MESSAGE_PATH`` elsewhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from forja_api.contract import TERMINATION_MESSAGE_PATH, Result

__all__ = ["TERMINATION_PATH_ENV", "termination_path", "write_result"]

TERMINATION_PATH_ENV = "FORJA_TERMINATION_MESSAGE_PATH"

log = logging.getLogger(__name__)


def termination_path() -> Path:
    return Path(os.environ.get(TERMINATION_PATH_ENV) or TERMINATION_MESSAGE_PATH)


def write_result(result: Result, path: Path | None = None) -> Path | None:
    """Write the result; returns where, or None when the file cannot be written (logged)."""
    target = path or termination_path()
    text = result.to_termination_message()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        log.warning("cannot write the result to %s: %s; result: %s", target, exc, text)
        return None
    return target
