"""Per-client token buckets: the limiter alone, then 429s over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forja_api.serving import RateLimitConfig, StageArtifact
from forja_server.ratelimit import TokenBucketLimiter, client_id

from ._server_helpers import serve


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)  # one token at 2/s
    assert limiter.acquire("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 100  # refill never exceeds the burst
    assert [limiter.acquire("a") for _ in range(3)] == [0.0] * 3
    assert limiter.acquire("a") > 0


def test_a_refused_request_takes_no_token() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(1.0, 1, clock=clock)
    assert limiter.acquire("a") == 0.0
    for _ in range(5):
        assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("a") == 0.0


def test_buckets_are_bounded_least_recent_first() -> None:
    limiter = TokenBucketLimiter(1.0, 1, max_clients=2, clock=Clock())
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("a")  # a is refused but now the most recent
    limiter.acquire("c")
    assert len(limiter) == 2
    assert limiter.acquire("a") > 0  # a was kept, still empty
    assert limiter.acquire("b") == 0.0  # b was forgotten: a full bucket again


def test_client_identity() -> None:
    assert client_id({}, "10.0.0.1", None) == "ip:10.0.0.1"
    assert client_id({"x-forwarded-for": "1.2.3.4, 10.0.0.9"}, "10.0.0.1", None) \
        == "ip:1.2.3.4"
    assert client_id({"x-api-key": "team-a", "x-forwarded-for": "1.2.3.4"}, "p",
                     "X-Api-Key") == "h:team-a"
    assert client_id({"x-forwarded-for": "1.2.3.4"}, "p", "X-Api-Key") == "ip:1.2.3.4"


def test_http_429_with_retry_after_per_client(clf_stage: StageArtifact, tmp_path: Path) -> None:
    _, client = serve([clf_stage], tmp_path,
                      rate_limit=RateLimitConfig(requests_per_second=0.01, burst=2))
    x = np.zeros((1, 3, 32, 32), np.float32)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}
    with client:
        a = {"x-forwarded-for": "1.1.1.1"}
        assert [client.post("/v2/models/clf/infer", json=body, headers=a).status_code
                for _ in range(2)] == [200, 200]
        refused = client.post("/v2/models/clf/infer", json=body, headers=a)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "rate limit" in refused.json()["error"]
        other = client.post("/v2/models/clf/infer", json=body,
                            headers={"x-forwarded-for": "2.2.2.2"})
        assert other.status_code == 200
        assert client.get("/v2/health/ready").status_code == 200  # GETs are never limited
        metrics = client.get("/metrics").text
        assert 'forja_rate_limited_requests_total{protocol="http"} 1.0' in metrics
        assert client.get("/stats").json()["rate_limit"]["burst"] == 2
