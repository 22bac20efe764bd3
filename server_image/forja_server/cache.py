"""The prediction cache: answers kept by the digest of the input, per model and version.

The key is the sha256 of the input tensor's bytes (with its dtype and shape) plus
the model name and its *served version*, so a new version never gets an old
version's answer. Values are the raw output tensors (a small header, then the
bytes), so a hit skips the batcher and the forward pass and the protocols write
it like any answer.

Two stores: :class:`MemoryCache` (one replica; least recently used entries go
when ``max_bytes`` would be exceeded) and :class:`RedisCache` (shared by all
replicas; short socket timeouts, and any Redis failure is a miss, never a failed
prediction; after one it is left alone for a moment so an outage costs each
request nothing).
"""

from __future__ import annotations

import abc
import hashlib
import logging
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from forja_api.serving import PredictionCacheConfig
from forja_server.metrics import ServerMetrics

__all__ = [
    "CachedAnswer",
    "MemoryCache",
    "PredictionCache",
    "RedisCache",
    "cache_key",
    "decode_answer",
    "encode_answer",
    "prediction_cache",
]

log = logging.getLogger(__name__)
Array = npt.NDArray[Any]
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class CachedAnswer:
    outputs: dict[str, Array]
    batch_size: int


def cache_key(model: str, version: str | None, batch: Array) -> str:
    """``forja:pred:<model>:<version>:<sha256 of dtype, shape and bytes>``."""
    batch = np.ascontiguousarray(batch)
    digest = hashlib.sha256()
    digest.update(f"{batch.dtype.str}{batch.shape}".encode())
    digest.update(batch.data)
    return f"forja:pred:{model}:{version or '-'}:{digest.hexdigest()}"


def encode_answer(outputs: dict[str, Array], batch_size: int) -> bytes:
    tensors = {k: np.ascontiguousarray(v) for k, v in outputs.items()}
    header = orjson.dumps({"b": batch_size,
                           "t": [[k, v.dtype.str, list(v.shape)] for k, v in tensors.items()]})
    return b"".join([_LEN.pack(len(header)), header,
                     *(v.tobytes() for v in tensors.values())])


def decode_answer(data: bytes) -> CachedAnswer:
    (n,) = _LEN.unpack_from(data)
    header = orjson.loads(data[_LEN.size : _LEN.size + n])
    offset = _LEN.size + n
    outputs: dict[str, Array] = {}
    for name, dtype_str, shape in header["t"]:
        dtype = np.dtype(dtype_str)
        count = int(np.prod(shape, dtype=np.int64))
        outputs[name] = np.frombuffer(data, dtype=dtype, count=count,
                                      offset=offset).reshape(shape)
        offset += count * dtype.itemsize
    return CachedAnswer(outputs, int(header["b"]))


class PredictionCache(abc.ABC):
    """A store plus hit/miss accounting for ``/stats`` and ``/metrics``."""

    backend = ""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.hits = 0
        self.misses = 0
        self.errors = 0

    async def get(self, model: str, key: str) -> CachedAnswer | None:
        data = await self._get(key)
        hit = data is not None
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self.metrics.cache_lookups.labels(model=model, result="hit" if hit else "miss").inc()
        self.metrics.cache_hit_ratio.set(self.hit_ratio)
        return decode_answer(data) if data is not None else None

    async def put(self, key: str, outputs: dict[str, Array], batch_size: int) -> None:
        await self._put(key, encode_answer(outputs, batch_size))

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def stats(self) -> dict[str, Any]:
        return {"backend": self.backend, "hits": self.hits, "misses": self.misses,
                "errors": self.errors, "hit_ratio": round(self.hit_ratio, 4)}

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        self.metrics.cache_errors.inc()
        log.warning("prediction cache %s failed (answered as a miss): %s: %s",
                    what, type(exc).__name__, exc)

    @abc.abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def _put(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None:
        return None


class MemoryCache(PredictionCache):
    """In-process, least recently used first out, bounded by the bytes of its values."""

    backend = "memory"

    def __init__(self, metrics: ServerMetrics, max_bytes: int) -> None:
        super().__init__(metrics)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    async def _get(self, key: str) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    async def _put(self, key: str, value: bytes) -> None:
        cost = len(value) + len(key)
        if cost > self.max_bytes:
            return  # one answer larger than the whole cache is not kept
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old) + len(key)
        while self._entries and self.bytes + cost > self.max_bytes:
            k, v = self._entries.popitem(last=False)
            self.bytes -= len(v) + len(k)
        self._entries[key] = value
        self.bytes += cost

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "entries": len(self._entries), "bytes": self.bytes,
                "max_bytes": self.max_bytes}


class RedisCache(PredictionCache):
    """Redis shared by every replica; a failure is a miss and pauses Redis use briefly."""

    backend = "redis"
    PAUSE_SECONDS = 1.0

    def __init__(self, metrics: ServerMetrics, url: str, *, ttl_seconds: int = 3600,
                 timeout_ms: float = 50.0) -> None:
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        super().__init__(metrics)
        self.ttl_seconds = ttl_seconds
        timeout = timeout_ms / 1000
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0,
        )
        self._paused_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _pause(self, what: str, exc: Exception) -> None:
        self._failed(what, exc)
        self._paused_until = time.monotonic() + self.PAUSE_SECONDS

    async def _get(self, key: str) -> bytes | None:
        if not self._available():
            return None
        try:
            value = await self._client.get(key)
        except Exception as exc:  # any Redis or socket failure is a miss
            self._pause("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def _put(self, key: str, value: bytes) -> None:
        if not self._available():
            return
        try:
            await self._client.set(key, value, ex=self.ttl_seconds)
        except Exception as exc:
            self._pause("set", exc)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # closing a dead connection is nothing to report
            log.debug("closing redis: %s", exc)


def prediction_cache(config: PredictionCacheConfig, metrics: ServerMetrics) -> PredictionCache:
    if config.redis_url:
        return RedisCache(metrics, config.redis_url, ttl_seconds=config.ttl_seconds,
                          timeout_ms=config.timeout_ms)
    return MemoryCache(metrics, config.max_bytes)
