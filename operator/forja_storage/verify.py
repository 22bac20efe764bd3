"""Check an artifact in the store against its sha256.

``python -m forja_storage.verify URI SHA256``: the ModelVersion controller runs this
in a short Pod (the server image) that holds the store credentials, so the operator
never reads Secrets nor touches the store. When the URI names a model manifest
(``forja-model.json``) every file it lists is checked as well, so one digest covers
the whole model.

Exit codes (and a JSON line in the termination message):
0 verified, 65 checksum mismatch, 66 artifact not found, 70 any other error
(any other code, e.g. 1 from a crash, is an error too: the check is retried).

Every object is hashed as a stream of chunks, so the pod's memory stays flat
(a 10 GB model verifies under its 512 Mi limit); only a manifest is kept in
memory, and only up to :data:`MAX_MANIFEST_BYTES`, from the same bytes that
were hashed (never a second read that could differ).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import forja_storage as storage
from forja_api import conditions as c
from forja_api.artifact import MANIFEST_NAME, ModelManifest
from forja_api.contract import TERMINATION_MESSAGE_PATH, ExitCode, PodError

__all__ = [
    "EXIT_MISMATCH",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_OTHER",
    "MAX_MANIFEST_BYTES",
    "ArtifactNotFound",
    "ChecksumMismatch",
    "Verdict",
    "VerifyError",
    "main",
    "verify",
]

# sysexits-style codes, distinct from Python's 1 for an uncaught exception.
EXIT_OK = ExitCode.SUCCESS
EXIT_MISMATCH = ExitCode.CHECKSUM_MISMATCH
EXIT_NOT_FOUND = ExitCode.ARTIFACT_NOT_FOUND
EXIT_OTHER = ExitCode.VERIFY_ERROR


class ChecksumMismatch(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = EXIT_MISMATCH
    reason = c.REASON_CHECKSUM_MISMATCH


class ArtifactNotFound(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = EXIT_NOT_FOUND
    reason = c.REASON_ARTIFACT_NOT_FOUND


class VerifyError(PodError):
    """The check itself failed (store unreachable, not a manifest): no verdict, retried."""

    exit_code = EXIT_OTHER
    reason = c.REASON_VERIFY_ERROR


class Verdict:
    def __init__(self, code: int, message: str, reason: str = c.REASON_CHECKSUM_MATCH) -> None:
        self.code = code
        self.reason = reason
        self.message = message

    @classmethod
    def of(cls, error: PodError) -> Verdict:
        return cls(error.exit_code, str(error), error.reason)

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.code == EXIT_OK, "reason": self.reason, "message": self.message}
        )


MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def _sibling(uri: str, rel: str) -> str:
    return uri.rsplit("/", 1)[0] + "/" + rel.lstrip("/")


def _stream_digest(uri: str, what: str = "", keep: int = 0) -> tuple[str, int, bytes | None]:
    """sha256 and size of the object, read in chunks; its bytes too when ``keep`` holds
    them. Raises ArtifactNotFound or VerifyError."""
    digest = hashlib.sha256()
    size = 0
    kept: bytearray | None = bytearray() if keep else None
    try:
        for chunk in storage.read_chunks(uri):
            digest.update(chunk)
            size += len(chunk)
            if kept is not None:
                kept += chunk
                if len(kept) > keep:
                    kept = None  # too large to be a manifest: keep hashing, stop keeping
    except storage.ObjectNotFound:
        raise ArtifactNotFound(f"{uri}{what}: not found") from None
    except storage.StorageError as exc:
        raise VerifyError(f"{uri}{what}: {exc}") from None
    return digest.hexdigest(), size, bytes(kept) if kept is not None else None


def _check(uri: str, sha256: str) -> str:
    """What was verified; raises ChecksumMismatch, ArtifactNotFound or VerifyError."""
    is_manifest = uri.endswith(MANIFEST_NAME)
    actual, size, data = _stream_digest(uri, keep=MAX_MANIFEST_BYTES if is_manifest else 0)
    if actual != sha256.lower():
        raise ChecksumMismatch(f"{uri}: sha256 is {actual}, expected {sha256}")
    if not is_manifest:
        return f"{uri}: sha256 {actual} ({size} bytes)"
    if data is None:
        raise VerifyError(
            f"{uri}: a model manifest of {size} bytes is over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    try:
        manifest = ModelManifest.model_validate_json(data)
    except ValueError as exc:
        raise VerifyError(f"{uri}: not a model manifest: {exc}") from None
    for role, entry in manifest.files.items():
        file_uri = _sibling(uri, entry.path)
        got, _, _ = _stream_digest(file_uri, f" ({role})")
        if got != entry.sha256:
            raise ChecksumMismatch(f"{file_uri} ({role}): sha256 is {got}, expected {entry.sha256}")
    return f"{uri}: manifest and {len(manifest.files)} files verified"


def verify(uri: str, sha256: str) -> Verdict:
    try:
        return Verdict(EXIT_OK, _check(uri, sha256))
    except PodError as exc:
        return Verdict.of(exc)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m forja_storage.verify URI SHA256", file=sys.stderr)
        return EXIT_OTHER
    verdict = verify(args[0], args[1])
    print(verdict.to_json())
    # Outside a pod there is no termination log.
    with contextlib.suppress(OSError):
        Path(TERMINATION_MESSAGE_PATH).write_text(verdict.to_json())
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
