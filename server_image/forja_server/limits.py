"""What one request may cost the server, and the middleware that enforces its time.

Each limit bounds work a client can ask for with a small body: pixels once images
are decoded (summed over the request, not per image), values a GeoTIFF holds
before it is read, tiles a GeoTIFF is cut into, and wall time. Defaults below;
``FORJA_MAX_REQUEST_PIXELS``, ``FORJA_MAX_GEOTIFF_VALUES``, ``FORJA_MAX_TILES`` and
``FORJA_REQUEST_TIMEOUT_SECONDS`` override them.

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RequestLimits:
        d = cls()
        return cls(
            max_request_pixels=int(env.get("FORJA_MAX_REQUEST_PIXELS", d.max_request_pixels)),
            max_geotiff_values=int(env.get("FORJA_MAX_GEOTIFF_VALUES", d.max_geotiff_values)),
            max_tiles=int(env.get("FORJA_MAX_TILES", d.max_tiles)),
            timeout_seconds=float(env.get("FORJA_REQUEST_TIMEOUT_SECONDS", d.timeout_seconds)),
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
