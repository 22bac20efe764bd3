"""Per-client rate limiting of the prediction endpoints: a token bucket per client.

Each client's bucket holds up to ``burst`` tokens and refills at
``requests_per_second``; a request takes one token or is refused with how long
until the next one (HTTP 429 with ``Retry-After``; gRPC ``RESOURCE_EXHAUSTED``).
The client is the configured header's value, else the first hop of
``X-Forwarded-For`` (the address the ingress saw), else the peer address.
Buckets live in this process: with N replicas a client gets up to N times the
rate, which is what a per-pod limit behind a Service means.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from forja_api.serving import RateLimitConfig
from forja_server.metrics import ServerMetrics

__all__ = ["RateLimit", "TokenBucketLimiter", "client_id"]

FORWARDED_FOR = "x-forwarded-for"


class TokenBucketLimiter:
    """Token buckets keyed by client, at most ``max_clients`` (least recently seen go)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        # client -> (tokens, when they were counted). Used from the event loop only.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @classmethod
    def from_config(cls, config: RateLimitConfig) -> TokenBucketLimiter:
        return cls(config.requests_per_second, config.burst, max_clients=config.max_clients)

    def acquire(self, client: str) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_id(headers: Mapping[str, str], peer: str | None, header: str | None) -> str:
    """Who is asking: the configured header, else X-Forwarded-For's first hop, else the peer."""
    if header:
        value = headers.get(header.lower())
        if value:
            return f"h:{value.strip()}"
    forwarded = headers.get(FORWARDED_FOR)
    if forwarded:
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return f"ip:{first}"
    return f"ip:{peer or 'unknown'}"


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


class RateLimit:
    """Pure ASGI middleware: POST requests (every prediction endpoint) take a token."""

    def __init__(self, app: ASGIApp, limiter: TokenBucketLimiter, metrics: ServerMetrics,
                 client_header: str | None = None) -> None:
        self.app = app
        self.limiter = limiter
        self.metrics = metrics
        self.client_header = client_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        peer = scope.get("client")
        client = client_id(headers, peer[0] if peer else None, self.client_header)
        wait = self.limiter.acquire(client)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        self.metrics.rate_limited.labels(protocol="http").inc()
        seconds = retry_after(wait)
        body = orjson.dumps({"error": f"rate limit of {self.limiter.rate:g} requests/s per "
                                      f"client exceeded; retry after {seconds} s",
                             "field": "client"})
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
