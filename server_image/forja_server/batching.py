"""Dynamic batching, a layer apart from the models.

Requests submit one sample each and await their own slice of a batched forward
pass. One worker task per model collects what is queued (up to
``max_batch_size``), waits at most ``max_latency_ms`` for more *only while more
requests are known to be on their way* (so a lone request never pays the wait),
and runs the batch in a worker thread so the event loop keeps accepting
requests. Samples of different shapes are run as separate batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_server.errors import ServerError

__all__ = ["BatchResult", "DynamicBatcher"]

Array = npt.NDArray[Any]
Predict = Callable[[Array], dict[str, Array]]


@dataclass
class BatchResult:
    outputs: dict[str, Array]
    """This sample's outputs (batch axis removed)."""
    batch_size: int
    queue_ms: float
    infer_ms: float


@dataclass
class _Item:
    sample: Array
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int = 8,
        max_latency_ms: float = 5.0,
        pending_hint: Callable[[], int] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self._pending_hint = pending_hint or (lambda: 0)
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self.submitted = 0
        self.completed = 0

    def start(self) -> None:
        """Start the worker task on the running loop (again after stop(), e.g. a new loop)."""
        if self._task is None or self._task.done():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="forja-infer")
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, sample: Array) -> BatchResult:
        self.start()
        fut: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self.submitted += 1
        self._queue.put_nowait(_Item(sample, fut))
        try:
            return await fut
        finally:
            self.completed += 1

    def _more_coming(self, collected: int) -> bool:
        # Requests admitted by the server but not yet queued here will join soon.
        return self._pending_hint() - (self.submitted - self.completed) > 0 or (
            not self._queue.empty() and collected < self.max_batch_size
        )

    async def _collect(self) -> list[_Item]:
        items = [await self._queue.get()]
        deadline = items[0].enqueued + self.max_latency
        while len(items) < self.max_batch_size:
            try:
                items.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not self._more_coming(len(items)):
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = self._executor
        while True:
            items = await self._collect()
            groups: dict[tuple[Any, ...], list[_Item]] = {}
            for it in items:
                groups.setdefault((it.sample.shape, it.sample.dtype.str), []).append(it)
            for group in groups.values():
                live = [it for it in group if not it.future.done()]
                if not live:
                    continue
                started = time.perf_counter()
                try:
                    batch = np.stack([it.sample for it in live])
                    outputs = await loop.run_in_executor(executor, self._predict, batch)
                except ServerError as exc:
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    continue
                except Exception as exc:  # the runtime failed; each caller gets the error
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    continue
                infer_ms = (time.perf_counter() - started) * 1000
                if self._on_batch is not None:
                    self._on_batch(len(live), infer_ms)
                for i, it in enumerate(live):
                    if it.future.done():
                        continue
                    it.future.set_result(
                        BatchResult(
                            outputs={k: v[i] for k, v in outputs.items()},
                            batch_size=len(live),
                            queue_ms=(started - it.enqueued) * 1000,
                            infer_ms=infer_ms,
                        )
                    )
