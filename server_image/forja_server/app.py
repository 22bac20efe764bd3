"""The FastAPI application: routers, error mapping, body limits, metrics, lifespan.

Handlers stay thin: protocol adapters in :mod:`forja_server.protocol`, the
inference paths in :mod:`forja_server.service`, models in
:mod:`forja_server.models`. Every :class:`~forja_server.errors.ServerError`
becomes its one HTTP status with ``{"error": ..., "field": ...}``; request
validation errors become 400 (never 422 or 5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forja_server import __version__
from forja_server.errors import PayloadTooLarge, ServerError
from forja_server.limits import RequestDeadline
from forja_server.protocol.grpc_v2 import start_grpc_server
from forja_server.protocol.openapi_body import install_schemas
from forja_server.protocol.simple import simple_router
from forja_server.protocol.v2 import v2_router
from forja_server.protocol.versions import VersionPaths
from forja_server.ratelimit import RateLimit
from forja_server.repository import ModelRepository

__all__ = ["BodyLimit", "create_app"]

log = logging.getLogger(__name__)


def _error(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return Response(orjson.dumps(body), status, media_type="application/json")


class BodyLimit:
    """Pure ASGI middleware: refuse bodies over the limit (413) and count requests in flight."""

    def __init__(self, app: ASGIApp, repo: ModelRepository, max_bytes: int) -> None:
        self.app = app
        self.repo = repo
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _error(413, f"body over {self.max_bytes} bytes", "body")(
                        scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"body over {self.max_bytes} bytes", field="body")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        metrics = self.repo.metrics
        self.repo.in_flight += 1
        metrics.in_flight.inc()
        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not started:
                await _error(413, exc.message, exc.field)(scope, receive, send)
        finally:
            self.repo.in_flight -= 1
            metrics.in_flight.dec()


def create_app(
    repo: ModelRepository,
    *,
    load: Callable[[], Coroutine[Any, Any, None]] | None = None,
    grpc_address: str | None = None,
) -> FastAPI:
    """The server for ``repo``; ``load`` (if given) runs at start-up, off the event loop.

    ``grpc_address`` (host:port) also serves the protocol over gRPC on this loop.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load()) if load is not None else None
        grpc = (await start_grpc_server(repo, grpc_address, __version__)
                if grpc_address else None)
        app.state.grpc_port = grpc.port if grpc else None
        try:
            yield
        finally:
            if grpc is not None:  # after uvicorn's drain; in-flight calls get the same grace
                await grpc.stop(repo.config.graceful_shutdown_seconds)
            # Readiness already turned false on SIGTERM (cli.DrainingServer); here the
            # batchers stop after uvicorn has drained in-flight requests.
            if task is not None and not task.done():
                task.cancel()
            await repo.close()

    app = FastAPI(
        title="forja model server",
        version=__version__,
        description="Open Inference Protocol v2, the simple /predict API, GeoTIFF maps "
        "and pipelines for forja ModelVersions.",
        lifespan=lifespan,
    )
    app.state.repo = repo

    @app.exception_handler(ServerError)
    async def server_error(_: Request, exc: ServerError) -> Response:
        if exc.status_code >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return _error(exc.status_code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _error(400, f"{loc}: {first.get('msg', 'invalid')}", loc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(repo.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(v2_router(repo, __version__))
    app.include_router(simple_router(repo))
    install_schemas(app)
    # Added last runs first: the body limit (and the in-flight count) wrap the deadline.
    app.add_middleware(RequestDeadline, timeout_seconds=repo.limits.timeout_seconds)
    app.add_middleware(VersionPaths, repo=repo)
    app.add_middleware(BodyLimit, repo=repo, max_bytes=repo.config.max_body_bytes)
    if repo.limiter is not None and repo.config.rate_limit is not None:
        # Outermost: a refused request costs nothing else.
        app.add_middleware(RateLimit, limiter=repo.limiter, metrics=repo.metrics,
                           client_header=repo.config.rate_limit.client_header)
    return app
