"""Prometheus metrics, one registry per server (tests build many servers).

Names follow KServe's: a latency histogram per stage (preprocess, predict,
postprocess, pipeline stages) labelled by model, plus request counts by model
and status, batch sizes and requests in flight.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "forja_requests",
            "Requests answered, by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forja_stage_latency_seconds",
            "Time spent per stage (preprocess, queue, predict, postprocess, request).",
            ["model", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "forja_batch_size",
            "Samples per forward pass.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "forja_requests_in_flight", "Requests being handled now.", registry=self.registry
        )
        self.rate_limited = Counter(
            "forja_rate_limited_requests",
            "Requests refused by the per-client rate limit (HTTP 429, gRPC RESOURCE_EXHAUSTED).",
            ["protocol"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "forja_prediction_cache_lookups",
            "Prediction cache lookups by model and result (hit, miss).",
            ["model", "result"],
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "forja_prediction_cache_errors",
            "Cache store failures (e.g. Redis down), each answered as a miss.",
            registry=self.registry,
        )
        self.cache_hit_ratio = Gauge(
            "forja_prediction_cache_hit_ratio",
            "Hits over lookups since start, all models.",
            registry=self.registry,
        )
