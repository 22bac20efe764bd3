"""The batching layer: concurrent requests share forward passes; a lone one never waits."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from forja_server.batching import DynamicBatcher


class _Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.sizes.append(batch.shape[0])
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return {"y": batch * 2}


def test_concurrent_requests_are_batched_and_answered_in_order() -> None:
    rec = _Recorder(delay=0.02)

    async def go() -> list:
        b = DynamicBatcher(rec, max_batch_size=8, max_latency_ms=50)
        res = await asyncio.gather(*(b.submit(np.full((2,), i, np.float32)) for i in range(20)))
        await b.stop()
        return res

    results = asyncio.run(go())
    assert [float(r.outputs["y"][0]) for r in results] == [2.0 * i for i in range(20)]
    assert max(rec.sizes) == 8 and sum(rec.sizes) == 20 and len(rec.sizes) <= 4
    assert all(t.startswith("forja-infer") for t in rec.threads)  # off the event loop


def test_a_lone_request_does_not_wait_for_company() -> None:
    rec = _Recorder()

    async def go() -> float:
        b = DynamicBatcher(rec, max_batch_size=8, max_latency_ms=500)
        t0 = time.perf_counter()
        await b.submit(np.zeros(3, np.float32))
        took = time.perf_counter() - t0
        await b.stop()
        return took

    assert asyncio.run(go()) < 0.25  # far below the 500 ms max wait
    assert rec.sizes == [1]


def test_waits_for_requests_known_to_be_coming() -> None:
    rec = _Recorder()
    pending = {"n": 3}

    async def go() -> None:
        b = DynamicBatcher(rec, max_batch_size=8, max_latency_ms=300,
                           pending_hint=lambda: pending["n"])

        async def late(i: int) -> None:
            await asyncio.sleep(0.02 * i)
            await b.submit(np.zeros(3, np.float32))

        await asyncio.gather(*(late(i) for i in range(3)))
        await b.stop()

    asyncio.run(go())
    assert rec.sizes == [3]


def test_different_shapes_run_as_separate_batches() -> None:
    rec = _Recorder(delay=0.01)

    async def go() -> None:
        b = DynamicBatcher(rec, max_batch_size=8, max_latency_ms=20)
        await asyncio.gather(b.submit(np.zeros(3, np.float32)), b.submit(np.zeros(4, np.float32)),
                             b.submit(np.zeros(3, np.float32)))
        await b.stop()

    asyncio.run(go())
    assert sorted(rec.sizes) == [1, 2]


def test_runtime_errors_reach_every_caller() -> None:
    def boom(batch: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("kaput")

    async def go() -> None:
        b = DynamicBatcher(boom, max_batch_size=4, max_latency_ms=5)
        results = await asyncio.gather(*(b.submit(np.zeros(2)) for _ in range(3)),
                                       return_exceptions=True)
        await b.stop()
        assert all(isinstance(r, RuntimeError) for r in results)

    asyncio.run(go())


@pytest.mark.slow
def test_concurrent_http_clients_share_batches(clf_stage, tmp_path) -> None:
    """Many clients at once against the real ASGI app: all answered right, batches > 1."""
    import httpx

    from ._server_helpers import serve

    repo, _ = serve([clf_stage], tmp_path)
    from forja_server.app import create_app

    app = create_app(repo)
    x = np.random.default_rng(3).random((1, 3, 32, 32), dtype=np.float32)
    expected = repo.models["clf"].predict(x)["output"][0]
    body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(
                *(c.post("/v2/models/clf/infer", json=body) for _ in range(32)))

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    for r in responses:
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], expected, rtol=1e-5)
    assert repo.stats["clf"].batches < 32  # some requests shared a forward pass
    assert repo.stats["clf"].samples == 32
