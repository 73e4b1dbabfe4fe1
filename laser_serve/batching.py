"""Dynamic batching: the work of concurrent requests for one model, run as one call.

One `Batcher` per model (each RM, the context encoder) gathers the items that callers
submit. When the model worker is free it takes what has queued, up to `max_batch` items
and `max_batch_cost` of summed cost (tokens, for an RM), waiting at most `max_wait_s` after
the first for others to join, and runs them as one batched call on the single torch thread
(TEI's queue and vLLM's scheduler do the same; vLLM caps a step's tokens the same way).
The cost cap is there because batching stops paying once a forward is big: on the 2-core
CPU eight 1,000-token requests batched cost 0.76-0.90x the per-request time of running them
one by one, while short ones gain 1.4-1.8x (docs/scoring.md). An item costlier than the cap
runs alone.

What a caller keeps, whatever shares its batch:
- its own result, or its own exception: a batch that raises is re-run item by item, so one
  bad request fails alone;
- withdrawal: an item cancelled (client gone, deadline) while queued leaves the queue and
  never runs; an item still queued after `max_queue_s` is withdrawn and the caller gets
  Overloaded (RESOURCE_EXHAUSTED); an item that started runs to completion;
- its share of the seconds: a batch's wall time is split over its items in proportion to
  their `cost` (tokens, say), so per-request RM seconds still add up to the work done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from laser_serve.errors import Overloaded

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)  # identity: two items with equal payloads are different requests
class _Item(Generic[T]):
    payload: T
    cost: float
    future: asyncio.Future[tuple[Any, float]]
    started: bool = False  # set on the worker thread when its batch begins
    on_start: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher(Generic[T, R]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        executor: Executor,
        max_batch: int = 16,
        max_wait_s: float = 0.002,
        max_queue_s: float = 0.0,
        max_batch_cost: float = float("inf"),
    ) -> None:
        self.name = name
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_batch_cost = max_batch_cost
        self.max_wait_s = max_wait_s
        self.max_queue_s = max_queue_s
        self._queue: list[_Item[T]] = []
        self._ready: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # batches run, for tests and metrics
        self.items = 0

    async def submit(self, payload: T, cost: float = 1.0) -> tuple[R, float]:
        """Run `payload` in some batch; returns (its result, its share of the seconds)."""
        loop = asyncio.get_running_loop()
        item: _Item[T] = _Item(payload, cost, loop.create_future())
        self._queue.append(item)
        self._wake()
        try:
            if self.max_queue_s > 0:
                started = asyncio.ensure_future(item.on_start.wait())
                waiting: list[asyncio.Future[Any]] = [started, item.future]
                try:
                    await asyncio.wait(
                        waiting,
                        timeout=self.max_queue_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    started.cancel()
                if not item.started and not item.future.done():
                    self._withdraw(item)
                    raise Overloaded(
                        f"queued {self.max_queue_s:g}s for the model worker ({self.name}) "
                        "without starting (server.max_queue_s); retry with backoff"
                    )
            return await asyncio.shield(item.future)
        except asyncio.CancelledError:
            self._withdraw(item)  # still queued: it never runs; started: it finishes unseen
            raise

    def _withdraw(self, item: _Item[T]) -> None:
        if item in self._queue:
            self._queue.remove(item)
        if not item.future.done():
            item.future.cancel()

    def _wake(self) -> None:
        if self._ready is None:
            self._ready = asyncio.Event()
        self._ready.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._take()
                if self.max_wait_s > 0 and len(batch) == len(self._queue):
                    await asyncio.sleep(self.max_wait_s)  # room left: let concurrent callers join
                    batch = self._take()
                del self._queue[: len(batch)]
                batch = [i for i in batch if not i.future.done()]
                if batch:
                    await self._run_one(loop, batch)

    def _take(self) -> list[_Item[T]]:
        """The next batch: the head of the queue that fits (see `next_batch_size`)."""
        costs = [i.cost for i in self._queue[: self.max_batch]]
        return self._queue[: next_batch_size(costs, self.max_batch, self.max_batch_cost)]

    async def _run_one(self, loop: asyncio.AbstractEventLoop, batch: list[_Item[T]]) -> None:
        timed: list[float] = []
        outcomes = await loop.run_in_executor(
            self.executor, self._start_and_run, loop, batch, timed
        )
        live = [(i, o) for i, o in zip(batch, outcomes, strict=True) if o is not None]
        if not live:
            return
        self.batches += 1
        self.items += len(live)
        total = sum(i.cost for i, _ in live) or len(live)
        for item, (ok, value) in live:
            if item.future.done():  # the caller left while it ran
                continue
            share = timed[0] * (item.cost or 1.0) / total
            if ok:
                item.future.set_result((value, share))
            else:
                item.future.set_exception(value)

    def _start_and_run(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Item[T]], timed: list[float]
    ) -> list[tuple[bool, Any] | None]:
        """On the worker thread: drop items withdrawn while the batch waited for the thread,
        mark the rest started, run them. None marks a dropped item."""
        live = [i for i in batch if not i.future.done()]
        for item in live:
            item.started = True
            loop.call_soon_threadsafe(item.on_start.set)
        t = time.perf_counter()
        results = iter(self._isolated([i.payload for i in live]) if live else [])
        timed.append(time.perf_counter() - t)
        return [next(results) if i in live else None for i in batch]

    def _isolated(self, payloads: list[T]) -> list[tuple[bool, Any]]:
        """The batch's results; if the batched call raises, each item alone, so that an
        error belongs to the request that caused it."""
        try:
            results = list(self.run_batch(payloads))
            if len(results) != len(payloads):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(payloads)}")
            return [(True, r) for r in results]
        except Exception:
            if len(payloads) == 1:
                return [(False, _current_exception())]
        out: list[tuple[bool, Any]] = []
        for p in payloads:
            try:
                out.append((True, self.run_batch([p])[0]))
            except Exception as exc:
                out.append((False, exc))
        return out


def next_batch_size(costs: Sequence[float], max_batch: int, max_cost: float) -> int:
    """How many items at the head of a queue with these costs go in the next batch: in
    order, at most `max_batch` of them and `max_cost` in all, and the first one always,
    whatever its cost."""
    total, n = 0.0, 0
    for cost in costs[:max_batch]:
        if n and total + cost > max_cost:
            break
        total, n = total + cost, n + 1
    return n


def batch_sizes(costs: Sequence[float], max_batch: int, max_cost: float) -> list[int]:
    """The batches a queue of items with these costs runs in, if nothing else arrives."""
    sizes, start = [], 0
    while start < len(costs):
        sizes.append(next_batch_size(costs[start:], max_batch, max_cost))
        start += sizes[-1]
    return sizes


def _current_exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc
