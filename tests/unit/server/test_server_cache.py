"""The prediction cache: in-process bounds and version keying, the HTTP path, and a real
Redis (Debian's redis-server) that goes away mid-test without failing a prediction."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from forja_api.serving import PredictionCacheConfig, StageArtifact
from forja_server.cache import MemoryCache, RedisCache, cache_key, decode_answer, encode_answer
from forja_server.metrics import ServerMetrics

from ._server_helpers import serve


def _answer(n: int = 4) -> dict[str, np.ndarray]:
    return {"logits": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
            "mask": np.ones((n, 2, 2), dtype=np.uint8)}


def test_encoding_round_trips() -> None:
    outputs = _answer()
    back = decode_answer(encode_answer(outputs, 5))
    assert back.batch_size == 5
    for k, v in outputs.items():
        np.testing.assert_array_equal(back.outputs[k], v)
        assert back.outputs[k].dtype == v.dtype


def test_key_covers_model_version_and_input() -> None:
    x = np.zeros((1, 3), np.float32)
    base = cache_key("clf", "1.0.0", x)
    assert base == cache_key("clf", "1.0.0", x.copy())
    assert base != cache_key("clf", "1.0.1", x)
    assert base != cache_key("other", "1.0.0", x)
    assert base != cache_key("clf", "1.0.0", x + 1)
    assert base != cache_key("clf", "1.0.0", x.reshape(3, 1))
    assert base != cache_key("clf", "1.0.0", x.astype(np.float64))


def test_memory_cache_is_bounded_least_recent_first() -> None:
    async def run() -> None:
        one = len(encode_answer(_answer(), 1)) + len(cache_key("m", "1", np.zeros(1)))
        cache = MemoryCache(ServerMetrics(), max_bytes=2 * one + 10)
        keys = [cache_key("m", "1", np.full(1, i)) for i in range(3)]
        await cache.put(keys[0], _answer(), 1)
        await cache.put(keys[1], _answer(), 1)
        assert await cache.get("m", keys[0]) is not None  # keys[0] is now most recent
        await cache.put(keys[2], _answer(), 1)
        assert len(cache) == 2 and cache.bytes <= cache.max_bytes
        assert await cache.get("m", keys[1]) is None  # evicted
        assert await cache.get("m", keys[0]) is not None
        assert await cache.get("m", keys[2]) is not None
        big = {"x": np.zeros(10 * one, np.uint8)}
        await cache.put("big", big, 1)  # larger than the whole cache: not kept
        assert await cache.get("m", "big") is None and len(cache) == 2
        assert cache.stats()["hit_ratio"] == pytest.approx(3 / 5)

    asyncio.run(run())


def _post(client, x: np.ndarray, path: str = "/v2/models/clf/infer"):  # type: ignore[no-untyped-def]
    return client.post(path, json={"inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "data": x.reshape(-1).tolist()}]})


def test_http_hits_are_counted_and_never_cross_versions(clf_stage: StageArtifact,
                                                       tmp_path: Path) -> None:
    repo, client = serve([clf_stage], tmp_path, prediction_cache=PredictionCacheConfig())
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with client:
        first = _post(client, x)
        assert first.status_code == 200
        batches = repo.stats["clf"].batches
        second = _post(client, x)
        assert second.json()["outputs"] == first.json()["outputs"]
        assert repo.stats["clf"].batches == batches  # answered without a forward pass
        stats = client.get("/stats").json()["cache"]
        assert (stats["backend"], stats["hits"], stats["misses"]) == ("memory", 1, 1)
        assert stats["hit_ratio"] == 0.5
        metrics = client.get("/metrics").text
        assert 'forja_prediction_cache_lookups_total{model="clf",result="hit"} 1.0' in metrics
        assert "forja_prediction_cache_hit_ratio 0.5" in metrics
        # The same input to a new version of the model is a miss, not the old answer.
        repo.models["clf"].version = "2.0.0"
        try:
            _post(client, x)
            assert repo.stats["clf"].batches > batches
            assert client.get("/stats").json()["cache"]["misses"] == 2
        finally:
            repo.models["clf"].version = "1.0.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_redis_shared_by_replicas_and_down_means_misses(
        clf_stage: StageArtifact, tmp_path: Path,
        redis_server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = redis_server
    cfg = PredictionCacheConfig(redis_url=f"redis://127.0.0.1:{port}/0", timeout_ms=200)
    _, a = serve([clf_stage], tmp_path / "a", prediction_cache=cfg)
    repo_b, b = serve([clf_stage], tmp_path / "b", prediction_cache=cfg)
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    with a, b:
        answer = _post(a, x).json()["outputs"]
        batches_b = repo_b.stats["clf"].batches
        assert _post(b, x).json()["outputs"] == answer  # replica b hits a's entry
        assert repo_b.stats["clf"].batches == batches_b
        shared = b.get("/stats").json()["cache"]
        assert (shared["backend"], shared["hits"], shared["misses"]) == ("redis", 1, 0)

        proc.terminate()
        proc.wait(10)
        started = time.monotonic()
        for _ in range(3):
            r = _post(b, x)
            assert r.status_code == 200 and r.json()["outputs"] == answer
        assert time.monotonic() - started < 5
        stats = b.get("/stats").json()["cache"]
        assert stats["errors"] >= 1 and stats["misses"] >= 3
        assert isinstance(repo_b.cache, RedisCache)
        assert "forja_prediction_cache_errors_total" in b.get("/metrics").text
