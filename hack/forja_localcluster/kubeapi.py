"""A small JSON client for the Kubernetes API, standard library only.

The provisioner and the cluster scripts must work before any third-party package is
installed and must not pay the kubernetes client's model (de)serialisation on every
status patch; they need only JSON in, JSON out, a watch stream and client-certificate
TLS. One HTTPS connection per thread is kept open and reopened on failure.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forja_localcluster.config import API_PORT
from forja_localcluster.errors import ApiError, NotFoundError

__all__ = ["JSON", "MERGE_PATCH", "KubeClient"]

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class KubeClient:
    """Talks to one API server with a client certificate."""

    def __init__(
        self, host: str, port: int, *, ca: Path, cert: Path, key: Path, timeout: float = 30.0
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca))
        self._ssl.load_cert_chain(str(cert), str(key))
        self._local = threading.local()

    @classmethod
    def for_pki(
        cls, pki: Path, user: str, host: str = "127.0.0.1", port: int = API_PORT
    ) -> KubeClient:
        return cls(host, port, ca=pki / "ca.crt", cert=pki / f"{user}.crt", key=pki / f"{user}.key")

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self._ssl, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One request; returns the decoded JSON body or raises :class:`ApiError`."""
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._connect(self.timeout)
                self._local.conn = conn
            try:
                conn.request(method, url, body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise
        text = data.decode(errors="replace")
        if response.status == 404:
            raise NotFoundError(response.status, method, path, text)
        if response.status >= 300:
            raise ApiError(response.status, method, path, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **params: str) -> JSON:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(self, path: str, timeout_seconds: int = 240, **params: str) -> Iterator[JSON]:
        """Yield watch events until the server ends the stream (after ``timeout_seconds``).

        Raises :class:`ApiError` on a non-200 answer (e.g. 410 Gone for a stale
        resourceVersion); callers re-list and watch again.
        """
        query = {"watch": "1", "timeoutSeconds": str(timeout_seconds), **params}
        conn = self._connect(timeout_seconds + 30)
        try:
            conn.request("GET", path + "?" + urllib.parse.urlencode(query))
            response = conn.getresponse()
            if response.status != 200:
                raise ApiError(response.status, "WATCH", path, response.read().decode())
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
