"""``python -m forja_storage.verify``: verdicts, and memory that stays flat however large
the artifact (the verify pod runs under a 512 Mi limit)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest
from forja_storage.verify import EXIT_MISMATCH, EXIT_NOT_FOUND, EXIT_OK, EXIT_OTHER, verify

ROOT = Path(__file__).resolve().parents[3]

# Runs verify() in a fresh interpreter and prints its verdict and peak RSS. VmHWM, not
# ru_maxrss: the latter keeps the forked parent's peak across exec.
_PEAK_RSS = """
import json, re, sys
from pathlib import Path
from forja_storage.verify import verify
v = verify(sys.argv[1], sys.argv[2])
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"code": v.code, "message": v.message, "peak_rss_mib": int(hwm[1]) / 1024}))
"""


def verify_peak_rss(uri: str, sha256: str, env: dict[str, str] | None = None
                    ) -> dict[str, object]:
    """verify() in a subprocess: its exit verdict and the process's peak RSS in MiB."""
    path = os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, uri, sha256], capture_output=True, text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": path}, timeout=600, check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def sparse_zeros(path: Path, size: int) -> str:
    """A sparse file of ``size`` zero bytes (no disk used) and its sha256."""
    with path.open("wb") as fh:
        fh.truncate(size)
    digest = hashlib.sha256()
    chunk = bytes(1 << 20)
    for _ in range(size // len(chunk)):
        digest.update(chunk)
    digest.update(bytes(size % len(chunk)))
    return digest.hexdigest()


def test_a_large_artifact_verifies_in_flat_memory(tmp_path: Path) -> None:
    size = 1 << 30  # 1 GiB: reading it whole (the old way) would show in the peak RSS
    sha = sparse_zeros(tmp_path / "big.bin", size)
    result = verify_peak_rss(f"file://{tmp_path}/big.bin", sha)
    assert result["code"] == EXIT_OK, result
    assert f"({size} bytes)" in str(result["message"])
    assert float(str(result["peak_rss_mib"])) < 200, result


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_manifest_and_its_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    manifest = ModelManifest(format="onnx", task="classification", files={
        "weights": ArtifactFile(path="w.bin", sha256=_sha(b"weights"), size=7)})
    text = manifest.to_json().encode()
    (tmp_path / MANIFEST_NAME).write_bytes(text)
    uri = f"file://{tmp_path}/{MANIFEST_NAME}"
    assert verify(uri, _sha(text)).code == EXIT_OK
    (tmp_path / "w.bin").write_bytes(b"tampered")
    bad = verify(uri, _sha(text))
    assert (bad.code, bad.reason) == (EXIT_MISMATCH, "ChecksumMismatch")
    assert "w.bin (weights)" in bad.message
    (tmp_path / "w.bin").unlink()
    assert verify(uri, _sha(text)).code == EXIT_NOT_FOUND


def test_an_oversized_manifest_is_refused_not_parsed(tmp_path: Path) -> None:
    sha = sparse_zeros(tmp_path / MANIFEST_NAME, 5 * 1024 * 1024)
    verdict = verify(f"file://{tmp_path}/{MANIFEST_NAME}", sha)
    assert verdict.code == EXIT_OTHER
    assert "over the 4194304-byte limit" in verdict.message


@pytest.mark.parametrize("uri", ["s3://b/m/../escape.bin", "s3://b/../../x"])
def test_dot_segments_fail_before_any_request(uri: str) -> None:
    verdict = verify(uri, _sha(b"x"))
    assert verdict.code == EXIT_OTHER
    assert "'..' segments" in verdict.message
