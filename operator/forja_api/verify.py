"""Check an artifact in the store against its sha256: ``python -m forja_api.verify URI SHA256``.

The ModelVersion controller runs this in a short Pod that holds the store
credentials, so the operator never reads Secrets. When the URI names a model
manifest (``forja-model.json``) every file it lists is checked as well, so one
digest covers the whole model.

Exit codes (and a JSON line in the termination message):
0 verified, 65 checksum mismatch, 66 artifact not found, 70 any other error
(any other code, e.g. 1 from a crash, is an error too: the check is retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

from forja_api.artifact import MANIFEST_NAME, ModelManifest
from forja_api.contract import TERMINATION_MESSAGE_PATH

__all__ = ["EXIT_MISMATCH", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_OTHER", "Verdict", "main", "verify"]

# sysexits-style codes, distinct from Python's 1 for an uncaught exception.
EXIT_OK, EXIT_MISMATCH, EXIT_NOT_FOUND, EXIT_OTHER = 0, 65, 66, 70
REASONS = {
    EXIT_OK: "ChecksumMatch",
    EXIT_MISMATCH: "ChecksumMismatch",
    EXIT_NOT_FOUND: "ArtifactNotFound",
    EXIT_OTHER: "VerifyError",
}


class Verdict:
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.reason = REASONS[code]
        self.message = message

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.code == EXIT_OK, "reason": self.reason, "message": self.message}
        )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sibling(uri: str, rel: str) -> str:
    return uri.rsplit("/", 1)[0] + "/" + rel.lstrip("/")


def verify(uri: str, sha256: str) -> Verdict:
    # Lazy: boto3 is imported only where a check really runs.
    from forja_api import storage  # noqa: PLC0415

    try:
        data = storage.read_bytes(uri)
    except storage.ObjectNotFound:
        return Verdict(EXIT_NOT_FOUND, f"{uri}: not found")
    except storage.StorageError as exc:
        return Verdict(EXIT_OTHER, f"{uri}: {exc}")
    actual = _digest(data)
    if actual != sha256.lower():
        return Verdict(EXIT_MISMATCH, f"{uri}: sha256 is {actual}, expected {sha256}")
    if not uri.endswith(MANIFEST_NAME):
        return Verdict(EXIT_OK, f"{uri}: sha256 {actual} ({len(data)} bytes)")
    try:
        manifest = ModelManifest.model_validate_json(data)
    except ValueError as exc:
        return Verdict(EXIT_OTHER, f"{uri}: not a model manifest: {exc}")
    for role, entry in manifest.files.items():
        file_uri = _sibling(uri, entry.path)
        try:
            content = storage.read_bytes(file_uri)
        except storage.ObjectNotFound:
            return Verdict(EXIT_NOT_FOUND, f"{file_uri} ({role}): not found")
        except storage.StorageError as exc:
            return Verdict(EXIT_OTHER, f"{file_uri} ({role}): {exc}")
        got = _digest(content)
        if got != entry.sha256:
            return Verdict(
                EXIT_MISMATCH, f"{file_uri} ({role}): sha256 is {got}, expected {entry.sha256}"
            )
    return Verdict(EXIT_OK, f"{uri}: manifest and {len(manifest.files)} files verified")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m forja_api.verify URI SHA256", file=sys.stderr)
        return EXIT_OTHER
    verdict = verify(args[0], args[1])
    print(verdict.to_json())
    # Outside a pod there is no termination log.
    with contextlib.suppress(OSError):
        Path(TERMINATION_MESSAGE_PATH).write_text(verdict.to_json())
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
