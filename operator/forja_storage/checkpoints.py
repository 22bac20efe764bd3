"""Which checkpoint an attempt may load, and proof that it is the one that was written.

A checkpoint is a pickle-capable file that the next attempt loads, so it is read
only when (1) its URI lies under the job's own checkpoint prefix (the contract's
:func:`~forja_api.contract.is_under_prefix`, which the operator asks too) and (2) its
sha256 is the one recorded when it was written. The operator records the digest from the
trainer's reports and hands it to the next attempt (``FORJA_RESUME_SHA256``); since
those reports are rate-limited, the trainer also keeps a pointer object beside the
checkpoints (``latest.json``: uri, epoch, sha256), written after each upload. A
checkpoint whose digest matches neither is refused (InvalidConfig, not retried):
it was changed by someone other than the job's trainer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import forja_storage as storage
from forja_api.contract import CheckpointRef, InvalidConfig, refuse_foreign_resume

__all__ = [
    "POINTER",
    "read_pointer",
    "verify_resume",
    "write_pointer",
]

log = logging.getLogger(__name__)
POINTER = "latest.json"


def write_pointer(checkpoint_prefix: str, ref: CheckpointRef) -> None:
    """Record ``ref`` as the newest checkpoint (after its upload finished)."""
    storage.upload_bytes(ref.to_json().encode(), storage.join(checkpoint_prefix, POINTER))


def read_pointer(checkpoint_prefix: str) -> CheckpointRef | None:
    """The pointer beside the checkpoints, or None when absent or unreadable."""
    try:
        raw = storage.read_bytes(storage.join(checkpoint_prefix, POINTER))
        return CheckpointRef.model_validate_json(raw)
    except (storage.StorageError, ValueError) as exc:
        log.info("no usable checkpoint pointer under %s: %s", checkpoint_prefix, exc)
        return None


def verify_resume(local: Path, uri: str, expected: str | None, checkpoint_prefix: str) -> str:
    """The sha256 of the downloaded checkpoint ``local``, if it is one this job wrote.

    Accepted when it matches ``expected`` (the operator's record) or, the record
    being stale, the pointer naming the same ``uri``. With no record at all (a job
    from before digests were passed on) the pointer alone decides.
    """
    refuse_foreign_resume(uri, checkpoint_prefix)
    actual = storage.sha256_file(local)
    if expected is not None and actual == expected:
        return actual
    pointer = read_pointer(checkpoint_prefix)
    if pointer is not None and pointer.uri == uri and pointer.sha256 == actual:
        return actual
    if expected is None and pointer is None:
        raise InvalidConfig(
            f"checkpoint {uri} has no recorded sha256 (neither from the operator nor in "
            f"{POINTER}); it is not loaded",
            field="resumeFrom",
        )
    raise InvalidConfig(
        f"checkpoint {uri} has sha256 {actual}, but this job recorded "
        f"{expected or '-'} (operator) and "
        f"{pointer.sha256 if pointer and pointer.uri == uri else '-'} ({POINTER}); "
        "it was changed after it was written and is not loaded",
        field="resumeFrom",
    )
