"""The server's exceptions, each mapped to one HTTP status.

::

    ServerError                 (catchable base; 500)
    ├── InvalidInput            400  a malformed or unusable request; names the field
    ├── PayloadTooLarge         413  body over the configured limit
    ├── UnsupportedMediaType    415  e.g. a GeoTIFF endpoint sent a PNG
    ├── ModelNotFound           404  no model or stage by that name
    ├── ModelNotReady           503  still loading, or shutting down
    ├── RateLimited             429  the client's rate limit is spent (forja_server.ratelimit)
    ├── StoreUnavailable        503  the object store did not answer for a named scene
    ├── ArtifactError           500  fetch, digest check or load failed (at start-up)
    └── InferenceError          500  the runtime failed on a valid request

Bad input must never come out as a 5xx: anything a client can get wrong raises
one of the 4xx classes with a message naming what was wrong.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "InferenceError",
    "InvalidInput",
    "ModelNotFound",
    "ModelNotReady",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "StoreUnavailable",
    "UnsupportedMediaType",
]


class ServerError(Exception):
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_body(self) -> dict[str, str]:
        # v2 protocol error shape: {"error": "..."}; the field helps clients fix input.
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(ServerError):
    status_code = 400


class PayloadTooLarge(ServerError):
    status_code = 413


class UnsupportedMediaType(ServerError):
    status_code = 415


class ModelNotFound(ServerError):
    status_code = 404


class ModelNotReady(ServerError):
    status_code = 503


class RateLimited(ServerError):
    status_code = 429


class StoreUnavailable(ServerError):
    status_code = 503


class ArtifactError(ServerError):
    status_code = 500


class InferenceError(ServerError):
    status_code = 500
