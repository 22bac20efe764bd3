"""Exceptions of the local cluster.

    ClusterError                 catchable base
    ├── ToolsMissingError             the Kubernetes binaries are not built
    ├── ComponentFailedError          a component exited or never became ready
    ├── ImageError                    an image is not built, or was not pushed or pulled
    └── ApiError                 the API server answered with an error status
        └── NotFoundError             ... 404
"""

from __future__ import annotations

__all__ = ["ApiError", "ClusterError", "ComponentFailedError", "ImageError", "NotFoundError",
           "ToolsMissingError"]


class ClusterError(Exception):
    """Base of every error raised by forja_localcluster."""


class ToolsMissingError(ClusterError):
    """The binaries from hack/build-tools.sh are not there."""


class ComponentFailedError(ClusterError):
    """A component died or did not become ready in time; names the component and its log."""

    def __init__(self, component: str, detail: str, log: str = "") -> None:
        super().__init__(f"{component}: {detail}" + (f" (log: {log})" if log else ""))
        self.component = component
        self.log = log


class ImageError(ClusterError):
    """An image is not built, or the registry or a node's containerd refused it."""


class ApiError(ClusterError):
    """The API server answered a request with a non-2xx status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


class NotFoundError(ApiError):
    """404 from the API server."""
