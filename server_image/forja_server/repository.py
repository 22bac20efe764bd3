"""The models a server holds, their batchers, readiness and running statistics.

Loading is fetch -> verify -> load -> warm-up for every stage; ``ready`` turns
true only after all of it, and false again as soon as shutdown begins so that
endpoints drop the pod before in-flight requests drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forja_api.serving import ServingConfig
from forja_server.artifacts import fetch_artifact
from forja_server.batching import DynamicBatcher
from forja_server.cache import PredictionCache, prediction_cache
from forja_server.errors import InvalidInput, ModelNotFound, ModelNotReady
from forja_server.limits import DEFAULT_LIMITS, RequestLimits
from forja_server.metrics import ServerMetrics
from forja_server.model import Model
from forja_server.models import model_for
from forja_server.ratelimit import TokenBucketLimiter

__all__ = ["ModelRepository", "ModelStats"]

log = logging.getLogger(__name__)


@dataclass
class ModelStats:
    """What ``/stats`` reports per model (a bounded window of latencies)."""

    requests: int = 0
    errors: int = 0
    samples: int = 0
    batches: int = 0
    batched_samples: int = 0
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))

    def to_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "samples": self.samples,
            "batches": self.batches,
            "mean_batch_size": self.batched_samples / self.batches if self.batches else 0.0,
            "latency_ms": {
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
                "p99": float(np.percentile(lat, 99)),
                "mean": float(lat.mean()),
            },
            "load_seconds": self.load_seconds,
            "warmup_seconds": self.warmup_seconds,
        }


class ModelRepository:
    def __init__(
        self,
        config: ServingConfig,
        cache_dir: Path,
        metrics: ServerMetrics | None = None,
        limits: RequestLimits = DEFAULT_LIMITS,
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.metrics = metrics or ServerMetrics()
        self.limits = limits
        self.models: dict[str, Model] = {}
        self.batchers: dict[str, DynamicBatcher] = {}
        self.stats: dict[str, ModelStats] = {s.name: ModelStats() for s in config.stages}
        if config.is_pipeline:
            self.stats[config.name] = ModelStats()
        self.in_flight = 0
        self.draining = False
        self.load_error: str | None = None
        self.started_at = time.time()
        self._lock = threading.Lock()
        # Shared by the HTTP and gRPC sides (one event loop).
        self.cache: PredictionCache | None = (
            prediction_cache(config.prediction_cache, self.metrics)
            if config.prediction_cache else None)
        self.limiter: TokenBucketLimiter | None = (
            TokenBucketLimiter.from_config(config.rate_limit) if config.rate_limit else None)

    # --- loading -----------------------------------------------------------------------
    def load_all(self) -> None:
        """Fetch, verify, load and warm up every stage (blocking; run off the loop)."""
        for stage in self.config.stages:
            started = time.perf_counter()
            artifact = fetch_artifact(stage, self.cache_dir)
            model = model_for(stage, artifact)
            model.load()
            model.probe_side_multiple()
            stats = self.stats[stage.name]
            stats.load_seconds = time.perf_counter() - started
            if self.config.warmup:
                sizes = sorted({1, self.config.batching.max_batch_size})
                stats.warmup_seconds = model.warm_up(tuple(sizes))
            self.add(model)
            log.info(
                "stage %s ready: format=%s task=%s runtime=%s (%.2f s)",
                stage.name, stage.format, model.task, model.runtime, stats.load_seconds,
            )

    def add(self, model: Model) -> None:
        """Register a loaded model and give it a batcher; it is ready from here on."""
        b = self.config.batching
        self.batchers[model.name] = DynamicBatcher(
            model.predict,
            max_batch_size=b.max_batch_size,
            max_latency_ms=b.max_latency_ms,
            pending_hint=lambda: self.in_flight,
            on_batch=self._batch_observer(model.name),
        )
        self.stats.setdefault(model.name, ModelStats())
        model.ready = True
        self.models[model.name] = model

    def _batch_observer(self, name: str) -> Callable[[int, float], None]:
        hist = self.metrics.batch_size.labels(model=name)
        stats = self.stats

        def observe(size: int, _infer_ms: float) -> None:
            hist.observe(size)
            s = stats[name]
            s.batches += 1
            s.batched_samples += size

        return observe

    # --- lookups -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        expected = {s.name for s in self.config.stages}
        return (
            not self.draining
            and expected <= self.models.keys()
            and all(m.ready for m in self.models.values())
        )

    def names(self) -> list[str]:
        names = [s.name for s in self.config.stages]
        return [self.config.name, *names] if self.config.is_pipeline else names

    def get(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            if self.config.is_pipeline and name == self.config.name:
                raise InvalidInput(
                    f"{name!r} is the pipeline (served at /predict); this endpoint takes one "
                    f"model: ?model= one of {[s.name for s in self.config.stages]}",
                    field="model",
                )
            if name in self.names():
                raise ModelNotReady(f"model {name!r} is still loading", field="model")
            raise ModelNotFound(
                f"no model named {name!r} (serving {self.names()})", field="model"
            )
        if self.draining:
            raise ModelNotReady("the server is shutting down", field="model")
        return model

    def default_name(self) -> str:
        return self.config.name if self.config.is_pipeline else self.config.stages[0].name

    def batcher(self, name: str) -> DynamicBatcher:
        return self.batchers[name]

    async def close(self) -> None:
        for b in self.batchers.values():
            await b.stop()
        if self.cache is not None:
            await self.cache.close()
