"""Where a GeoTIFF request's scene comes from: memory, a temporary file, or the store.

A small body (up to ``RequestLimits.geotiff_memory_bytes``, by its Content-Length)
is read into memory. A larger body, or one of unknown length, is written chunk by
chunk to a temporary file as it arrives, never held whole. A JSON body
``{"scene": "s3://bucket/key.tif"}`` names a scene in the artifact store instead:
it is fetched with the same storage client the server fetches models with (a
``file://`` or ``pvc://`` scene is read in place), and only URIs under one of
``RequestLimits.scene_prefixes`` are accepted. Either way the scene on disk is
read window by window (:mod:`forja_server.geotiff`) and its map is written next to
it, in a folder removed once the answer is sent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

import forja_storage as storage
from forja_server.errors import InvalidInput, PayloadTooLarge, StoreUnavailable
from forja_server.limits import RequestLimits
from forja_server.protocol.openapi_body import parse_json

__all__ = ["SceneInput", "SceneMapResponse", "SceneRequest", "receive_scene"]

SCENE_FILE = "scene.tif"
MAP_FILE = "map.tif"


class SceneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene: str = Field(
        min_length=1, max_length=2048,
        description="A GeoTIFF in the artifact store, e.g. s3://scenes/tile-17.tif; read "
                    "window by window instead of being sent in the body.")


@dataclass
class SceneInput:
    """The scene as bytes (small bodies) or a file; ``workdir`` holds any temporary files
    (the streamed body or fetched scene, and the map) until :meth:`cleanup`."""

    scene: bytes | Path
    workdir: Path | None = None

    @property
    def map_path(self) -> Path | None:
        return self.workdir / MAP_FILE if self.workdir is not None else None

    def cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class SceneMapResponse(FileResponse):
    """A map sent from disk, whose folder goes once it is sent, or the send broke off.

    Not a background task: the request's deadline cancels the handler as soon as the
    client has its answer and goes (``RequestDeadline``), which would skip one.
    """

    def __init__(self, scene: SceneInput, headers: dict[str, str]) -> None:
        assert scene.map_path is not None
        super().__init__(scene.map_path, media_type="image/tiff", headers=headers)
        self._scene = scene

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._scene.cleanup()


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def _stream_body(request: Request, dest: Path, max_bytes: int) -> None:
    written = 0
    with dest.open("wb") as fh:
        async for chunk in request.stream():
            written += len(chunk)
            if written > max_bytes:
                raise PayloadTooLarge(f"body: a scene over {max_bytes} bytes", field="body")
            fh.write(chunk)


def _fetch_scene(uri: str, workdir: Path, max_bytes: int) -> Path:
    """The scene's local path: in place for file:// and pvc://, else downloaded."""
    try:
        local = storage.local_path(uri)
        if local is not None:
            if not local.is_file():
                raise InvalidInput(f"scene: no file at {uri}", field="scene")
            return Path(local)
        dest = workdir / SCENE_FILE
        written = 0
        with dest.open("wb") as fh:  # chunk by chunk: never the whole object in memory
            for chunk in storage.read_chunks(uri):
                written += len(chunk)
                if written > max_bytes:
                    raise InvalidInput(f"scene: {uri} is over {max_bytes} bytes", field="scene")
                fh.write(chunk)
        return dest
    except storage.InvalidUri as exc:
        raise InvalidInput(f"scene: {exc}", field="scene") from None
    except storage.ObjectNotFound:
        raise InvalidInput(f"scene: no object at {uri}", field="scene") from None
    except storage.StorageError as exc:
        raise StoreUnavailable(f"scene: the store did not answer for {uri}: {exc}",
                               field="scene") from None


async def receive_scene(request: Request, limits: RequestLimits) -> SceneInput:
    """The request's scene: a small body in memory, a large one on disk, or a named one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        uri = parse_json(SceneRequest, await request.body()).scene
        # The prefix is the whole check: nothing may climb out of it or hide behind escapes.
        if "%" in uri or "\\" in uri or {".", ".."} & set(uri.split("://", 1)[-1].split("/")):
            raise InvalidInput(f"scene: {uri!r} may not hold '.', '..', '\\' or %-escapes",
                               field="scene")
        if not uri.startswith(limits.scene_prefixes):
            raise InvalidInput(f"scene: {uri!r} is not under the scenes this server reads "
                               f"({', '.join(limits.scene_prefixes) or 'none'})",
                               field="scene")
        workdir = Path(tempfile.mkdtemp(prefix="forja-scene-"))
        try:
            path = await asyncio.to_thread(_fetch_scene, uri, workdir, limits.max_scene_bytes)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return SceneInput(path, workdir)
    length = _declared_length(request)
    if length is not None and length <= limits.geotiff_memory_bytes:
        return SceneInput(await request.body())
    workdir = Path(tempfile.mkdtemp(prefix="forja-scene-"))
    try:
        await _stream_body(request, workdir / SCENE_FILE, limits.max_scene_bytes)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return SceneInput(workdir / SCENE_FILE, workdir)
