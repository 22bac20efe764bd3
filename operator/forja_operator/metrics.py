"""Operator metrics (Prometheus): reconciles, errors, latency, jobs by phase, attempts, versions."""

from __future__ import annotations

import functools
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "ATTEMPTS",
    "ERRORS",
    "LATENCY",
    "RECONCILES",
    "VERSIONS",
    "instrumented",
    "register_phase_collector",
    "serve",
]

RECONCILES = Counter("forja_reconciles_total", "Reconciles run", ["kind"])
ERRORS = Counter("forja_reconcile_errors_total", "Reconciles that raised", ["kind"])
LATENCY = Histogram(
    "forja_reconcile_seconds",
    "Time of one reconcile",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ATTEMPTS = Counter(
    "forja_attempts_ended_total", "Training attempts that ended, by reason", ["reason"]
)
CREATED_ATTEMPTS = Counter("forja_attempts_created_total", "Training attempt pods created")
VERSIONS = Counter("forja_modelversions_created_total", "ModelVersions created from TrainingJobs")


P = ParamSpec("P")
T = TypeVar("T")


def instrumented(
    kind: str,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Count, time and count the failures of each call of a reconcile of ``kind``."""

    def wrap(reconcile: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(reconcile)
        async def measured(*args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            RECONCILES.labels(kind).inc()
            try:
                return await reconcile(*args, **kwargs)
            except Exception:
                ERRORS.labels(kind).inc()
                raise
            finally:
                LATENCY.labels(kind).observe(time.perf_counter() - started)

        return measured

    return wrap


class _PhaseCollector(Collector):
    """Jobs by phase, counted from the cache when scraped (no bookkeeping on each reconcile)."""

    def __init__(self, jobs: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("forja_trainingjobs", "TrainingJobs by phase", labels=["phase"])
        tally = Tally((j.get("status") or {}).get("phase", "Pending") for j in self._jobs())
        for phase in ("Pending", "Running", "Restarting", "Succeeded", "Failed", "Suspended"):
            family.add_metric([phase], tally.get(phase, 0))
        yield family


_collector: _PhaseCollector | None = None


def register_phase_collector(jobs: Callable[[], Iterable[dict[str, Any]]]) -> None:
    global _collector  # noqa: PLW0603 - one collector per process, replaced in tests
    if _collector is not None:
        REGISTRY.unregister(_collector)
    _collector = _PhaseCollector(jobs)
    REGISTRY.register(_collector)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - see __main__
    if port:
        start_http_server(port, addr=addr)
