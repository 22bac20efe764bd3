"""A canary's error share, from its server pods' Prometheus counters.

The operator scrapes each canary pod's ``/metrics`` on its pod IP (no Prometheus
needed), sums ``forja_requests_total`` by HTTP status, and compares with
the sums at the start of the step. Counters reset when a pod restarts; a pod
whose counter went down counts from zero again. Too few requests in a step give
no rate (None), so one failed request out of three cannot roll a version back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp  # kopf's own HTTP client
from prometheus_client.parser import text_string_to_metric_families

from forja_api import serving
from forja_operator.inferenceservice import server_contract as sc

__all__ = ["MIN_REQUESTS", "Counts", "error_rate", "parse_counts", "scrape_counts"]

MIN_REQUESTS = 20
"""Requests a step must see before its error share is judged."""


@dataclass(frozen=True)
class Counts:
    total: float = 0.0
    errors: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.total + other.total, self.errors + other.errors)


def parse_counts(text: str) -> Counts:
    """Total and server-error requests in one exposition text."""
    total = errors = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != sc.REQUESTS_METRIC:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            total += sample.value
            if str(sample.labels.get(sc.STATUS_LABEL, "")).startswith(sc.ERROR_STATUS_PREFIX):
                errors += sample.value
    return Counts(total, errors)


def error_rate(
    now: Mapping[str, Counts], baseline: Mapping[str, Counts], min_requests: int = MIN_REQUESTS
) -> float | None:
    """Error share since the baseline over every pod, or None with too little traffic."""
    delta = Counts()
    for pod, counts in now.items():
        base = baseline.get(pod, Counts())
        if counts.total < base.total:  # the pod restarted: its counter began again
            base = Counts()
        delta = delta + Counts(counts.total - base.total, counts.errors - base.errors)
    if delta.total < min_requests:
        return None
    return delta.errors / delta.total


async def _scrape_one(
    session: aiohttp.ClientSession, pod: str, ip: str, port: int, timeout: float
) -> tuple[str, Counts | None]:
    url = f"http://{ip}:{port}{serving.METRICS_PATH}"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                return pod, None
            return pod, parse_counts(await resp.text())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return pod, None


async def scrape_counts(
    pods: Iterable[tuple[str, str]], port: int = serving.DEFAULT_PORT, timeout: float = 2.0
) -> dict[str, Counts]:
    """Counts per pod name for (name, ip) pairs; pods that do not answer are left out."""
    pairs = [(name, ip) for name, ip in pods if ip]
    if not pairs:
        return {}
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(_scrape_one(session, n, ip, port, timeout) for n, ip in pairs)
        )
    return {pod: counts for pod, counts in results if counts is not None}
