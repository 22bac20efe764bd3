"""A keyed work queue, as controller-runtime's: level-based reconciliation for kopf events.

Watch events (of a job and of its pods) only *enqueue* the job's key. Workers
take keys one at a time, never the same key twice at once, and a key added while
it is processed is processed again afterwards, so bursts of events collapse into
one reconcile that reads the newest cached state. A reconcile returns when to
look again (backoff, deadlines, TTL); a failing one is retried with per-key
exponential backoff. Nothing sleeps in a handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

__all__ = ["WorkQueue"]

Reconcile = Callable[[Hashable], Awaitable[float | None]]
log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        workers: int = 8,
        base_retry: float = 0.5,
        max_retry: float = 60.0,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._failures: dict[Hashable, int] = {}
        self._base, self._max = base_retry, max_retry
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        """Workers wait for this: the caches must be primed before the first reconcile."""

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        if delay > 0:
            loop = asyncio.get_running_loop()
            old = self._timers.get(key)
            when = loop.time() + delay
            if old is not None and old.when() <= when:
                return  # an earlier look is already planned
            if old is not None:
                old.cancel()
            self._timers[key] = loop.call_at(when, self._fire, key)
            return
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        self._failures.pop(key, None)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self.name}-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()

    async def _work(self) -> None:
        await self.ready.wait()
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            again: float | None = None
            try:
                again = await self._reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                again = min(self._max, self._base * 2 ** (n - 1))
                log.exception(
                    "%s: reconcile of %s failed (%d); retrying in %.1fs", self.name, key, n, again
                )
            finally:
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            if again is not None:
                self.add(key, max(again, 0.01))
