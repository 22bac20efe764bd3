"""Fetching a ModelVersion artifact and proving it is the one that was registered.

The ModelVersion's ``artifact.sha256`` covers what ``artifact.uri`` names. For a
``forja-model.json`` manifest that is the manifest itself, and the manifest lists
every file's sha256: so we check the manifest's digest, then each file against
the manifest, and only then does anything get loaded. A single-file artifact (a
hand-registered ``best.pt`` or ``.tflite``) gets a synthesized manifest so the
model classes see one shape.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import forja_storage as storage
from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest
from forja_api.serving import StageArtifact
from forja_server.errors import ArtifactError

__all__ = ["LoadedArtifact", "fetch_artifact"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedArtifact:
    """A verified artifact on local disk: the manifest and each file by role."""

    manifest: ModelManifest
    files: dict[str, Path]
    root: Path

    def file(self, role: str) -> Path:
        try:
            return self.files[role]
        except KeyError:
            raise ArtifactError(
                f"the artifact has no {role!r} file (has {sorted(self.files)})", field=role
            ) from None

    def has(self, role: str) -> bool:
        return role in self.files


def _safe_relative(path: str) -> str:
    # A manifest is verified but still data: never let it point outside its prefix.
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ArtifactError(f"manifest file path {path!r} must be relative, without '..'")
    return str(p)


def _looks_like_manifest(uri: str, local: Path) -> bool:
    if uri.rstrip("/").endswith(MANIFEST_NAME):
        return True
    if local.suffix != ".json" or local.stat().st_size > 4 * 1024 * 1024:
        return False
    try:
        data = json.loads(local.read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "files" in data and "format" in data


def fetch_artifact(stage: StageArtifact, cache_dir: Path) -> LoadedArtifact:
    """Fetch and verify a stage's artifact (and every file its manifest lists)."""
    cache = cache_dir / stage.sha256[:16]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        top = storage.fetch_verified(stage.uri, stage.sha256, cache)
    except storage.ChecksumMismatch as exc:
        raise ArtifactError(f"artifact {stage.uri}: sha256 mismatch, refusing to load: {exc}")\
            from exc
    except storage.StorageError as exc:
        raise ArtifactError(f"artifact {stage.uri}: cannot fetch: {exc}") from exc
    top = Path(top)
    if not _looks_like_manifest(stage.uri, top):
        manifest = ModelManifest(
            format=stage.format,
            task=stage.task or "",
            files={
                "weights": ArtifactFile(
                    path=top.name, sha256=stage.sha256, size=top.stat().st_size
                )
            },
        )
        return LoadedArtifact(manifest=manifest, files={"weights": top}, root=top.parent)
    try:
        manifest = ModelManifest.model_validate_json(top.read_bytes())
    except ValueError as exc:
        raise ArtifactError(f"artifact {stage.uri}: invalid manifest: {exc}") from exc
    if manifest.format != stage.format:
        raise ArtifactError(
            f"stage {stage.name}: format {stage.format!r} but the manifest says "
            f"{manifest.format!r}",
            field="format",
        )
    base = stage.uri.rsplit("/", 1)[0]
    files: dict[str, Path] = {}
    for role, entry in manifest.files.items():
        rel = _safe_relative(entry.path)
        try:
            uri = storage.join(base, rel)
            files[role] = Path(storage.fetch_verified(uri, entry.sha256, cache / "files" / role))
        except storage.ChecksumMismatch as exc:
            raise ArtifactError(
                f"artifact {stage.uri}: file {rel} ({role}) does not match the manifest's "
                f"sha256, refusing to load: {exc}",
                field=role,
            ) from exc
        except storage.StorageError as exc:
            raise ArtifactError(f"artifact {stage.uri}: cannot fetch {rel}: {exc}") from exc
    log.info("verified %s: manifest and %d files", stage.uri, len(files))
    return LoadedArtifact(manifest=manifest, files=files, root=cache)

