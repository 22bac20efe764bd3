"""What one request may cost the server, and the middleware that enforces its time.

Each limit bounds work a client can ask for with a small body: pixels once images
are decoded (summed over the request, not per image), values a GeoTIFF holds
before it is read, tiles a GeoTIFF is cut into, and wall time. A GeoTIFF body over
``geotiff_memory_bytes`` (or of unknown length) is streamed to a temporary file and
read window by window, as is a scene named in the artifact store: those have limits
of their own (``max_scene_*``), bounded by disk and time rather than memory, and a
named scene must start with one of ``scene_prefixes``. Defaults below; the
``FORJA_*`` variables in :meth:`RequestLimits.from_env` override them.

:class:`RequestDeadline` cancels a request's handler when its time is up (503) or
when the client goes away, so queued samples of an abandoned request never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_OVERLAP",
    "RequestDeadline",
    "RequestLimits",
]

log = logging.getLogger(__name__)

MAX_OVERLAP = 0.75
"""GeoTIFF tile overlap: at 0.75 a pixel is covered by at most 16 tiles."""


@dataclass(frozen=True)
class RequestLimits:
    max_request_pixels: int = 64_000_000
    """Decoded pixels per request, every image (and pipeline frame) together."""
    max_geotiff_values: int = 256_000_000
    """width x height x bands of a GeoTIFF, checked from its header before reading."""
    max_tiles: int = 16_384
    """Tiles a GeoTIFF may be cut into (size and overlap together)."""
    timeout_seconds: float = 60.0
    """Wall time of one request; its handler is cancelled after it."""
    geotiff_memory_bytes: int = 16 * 1024 * 1024
    """A GeoTIFF body up to this size is read in memory; a larger one streams to disk."""
    max_scene_bytes: int = 4 * 1024**3
    """Bytes of a scene written to disk: a streamed body or one fetched from the store."""
    max_scene_values: int = 4_000_000_000
    """width x height x bands of a scene read from disk (window by window)."""
    max_scene_tiles: int = 262_144
    """Tiles a scene read from disk may be cut into."""
    scene_prefixes: tuple[str, ...] = ("s3://",)
    """URI prefixes a request may name a scene under (the artifact store's buckets by
    default; ``file://`` or ``pvc://`` paths only when listed)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RequestLimits:
        d = cls()
        return cls(
            max_request_pixels=int(env.get("FORJA_MAX_REQUEST_PIXELS", d.max_request_pixels)),
            max_geotiff_values=int(env.get("FORJA_MAX_GEOTIFF_VALUES", d.max_geotiff_values)),
            max_tiles=int(env.get("FORJA_MAX_TILES", d.max_tiles)),
            timeout_seconds=float(env.get("FORJA_REQUEST_TIMEOUT_SECONDS", d.timeout_seconds)),
            geotiff_memory_bytes=int(env.get("FORJA_GEOTIFF_MEMORY_BYTES",
                                             d.geotiff_memory_bytes)),
            max_scene_bytes=int(env.get("FORJA_MAX_SCENE_BYTES", d.max_scene_bytes)),
            max_scene_values=int(env.get("FORJA_MAX_SCENE_VALUES", d.max_scene_values)),
            max_scene_tiles=int(env.get("FORJA_MAX_SCENE_TILES", d.max_scene_tiles)),
            scene_prefixes=tuple(
                p.strip() for p in env["FORJA_SCENE_PREFIXES"].split(",") if p.strip()
            ) if "FORJA_SCENE_PREFIXES" in env else d.scene_prefixes,
        )


DEFAULT_LIMITS = RequestLimits.from_env(os.environ)


class RequestDeadline:
    """Pure ASGI middleware: a time limit per request, and cancellation on disconnect.

    Once the body is read, only this middleware listens to the connection (the
    handler's later ``receive`` waits on it), so a ``http.disconnect`` cancels the
    handler at once; the batcher then drops that request's queued samples.
    """

    def __init__(self, app: ASGIApp, timeout_seconds: float) -> None:
        self.app = app
        self.timeout = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        gone = asyncio.Event()
        started = False

        async def guarded_receive() -> Message:
            if body_read.is_set():
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch_disconnect() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, guarded_receive, tracking_send))
        watcher = asyncio.ensure_future(watch_disconnect())
        gone_wait = asyncio.ensure_future(gone.wait())
        try:
            done, _ = await asyncio.wait({handler, gone_wait}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, gone_wait):
                task.cancel()
        if handler in done:
            handler.result()  # the handler's own exception, if any, goes on up
            return
        handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
        if gone.is_set():
            log.info("%s %s: client went away; request cancelled", scope["method"],
                     scope["path"])
            return
        log.warning("%s %s: over the %.0f s request limit; cancelled", scope["method"],
                    scope["path"], self.timeout)
        if not started:
            body = orjson.dumps({"error": f"the request did not finish within the server's "
                                          f"{self.timeout:g} s limit", "field": "request"})
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
