"""Model version paths of the Open Inference Protocol: ``/v2/models/{m}/versions/{v}/...``.

A server serves one version per model (the ModelVersion the operator resolved),
so a versioned path is the unversioned one once the version is checked: it must
be the served version, or the answer is 404 naming the version that is served.
The HTTP side rewrites the path (pure ASGI, before routing) so every v2 route
gets its versioned form without a second set of handlers; gRPC calls
:func:`model_at_version` with the request's ``model_version``.
"""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from forja_server.errors import ModelNotFound
from forja_server.model import Model
from forja_server.repository import ModelRepository

__all__ = ["VersionPaths", "model_at_version"]

_VERSIONED = re.compile(r"^/v2/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/.*)?$")


def model_at_version(repo: ModelRepository, name: str, version: str | None) -> Model:
    """The served model ``name``; 404 unless ``version`` is empty or the served version."""
    model = repo.get(name)
    if version and version != model.version:
        raise ModelNotFound(
            f"model {name!r} serves version {model.version or '(unversioned)'}, "
            f"not {version!r}",
            field="model_version",
        )
    return model


class VersionPaths:
    """Pure ASGI middleware: check the version of a versioned v2 path and route it unversioned."""

    def __init__(self, app: ASGIApp, repo: ModelRepository) -> None:
        self.app = app
        self.repo = repo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _VERSIONED.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is not None:
            name, version = match["model"], match["version"]
            model = self.repo.models.get(name)
            if model is not None and version != model.version:
                body = orjson.dumps({
                    "error": f"model {name!r} serves version "
                             f"{model.version or '(unversioned)'}, not {version!r}",
                    "field": "model_version"})
                await send({"type": "http.response.start", "status": 404, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            path = f"/v2/models/{name}{match['rest'] or ''}"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
