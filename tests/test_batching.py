"""The dynamic batcher: batches form under concurrency, and every caller keeps its own result,
its own error, withdrawal on cancellation and max_queue_s."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from laser_serve.batching import Batcher, batch_sizes
from laser_serve.errors import Overloaded


class Model:
    """Doubles numbers; refuses negative ones; can be held to keep the worker busy."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, xs: list[int]) -> list[int]:
        self.gate.wait(10)
        self.calls.append(list(xs))
        if any(x < 0 for x in xs):
            raise ValueError(f"negative input in {xs}")
        return [2 * x for x in xs]


def _batcher(model: Model, **kwargs: float) -> Batcher[int, int]:
    return Batcher("m", model, ThreadPoolExecutor(1), max_batch=8, **kwargs)  # type: ignore[arg-type]


async def _hold(model: Model, batcher: Batcher[int, int]) -> asyncio.Task[tuple[int, float]]:
    """Occupy the worker with one item (it blocks in the model until model.gate is set)."""
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(100))
    await asyncio.sleep(0.01)
    while batcher._queue:  # taken by the worker: the model now holds it at the gate
        await asyncio.sleep(0.01)
    return first


def test_concurrent_items_share_a_batch_and_keep_their_results() -> None:
    async def main() -> None:
        model = Model()
        batcher = _batcher(model)
        first = await _hold(model, batcher)
        rest = [asyncio.ensure_future(batcher.submit(x, cost=x)) for x in (1, 2, 3, 4)]
        await asyncio.sleep(0.05)
        model.gate.set()
        assert (await first)[0] == 200
        results = await asyncio.gather(*rest)
        assert [r for r, _ in results] == [2, 4, 6, 8]
        assert model.calls == [[100], [1, 2, 3, 4]]  # the four waited together
        shares = [s for _, s in results]
        assert shares[3] == pytest.approx(4 * shares[0])  # seconds split by cost

    asyncio.run(main())


def test_a_batch_stops_at_its_cost_cap_and_a_costly_item_runs_alone() -> None:
    """Long requests batched are slower per request than alone on a CPU: max_batch_cost
    (tokens) bounds a batch; what does not fit waits for the next one, in order."""

    async def main() -> None:
        model = Model()
        batcher = _batcher(model, max_batch_cost=10)
        first = await _hold(model, batcher)
        costs = (4, 5, 3, 12, 2, 2)
        rest = [asyncio.ensure_future(batcher.submit(x, cost=x)) for x in costs]
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        results = await asyncio.gather(*rest)
        assert [r for r, _ in results] == [2 * x for x in costs]
        assert model.calls == [[100], [4, 5], [3], [12], [2, 2]]
        assert batch_sizes(costs, 8, 10) == [2, 1, 1, 2]  # what the cost bench replays
        assert batch_sizes(costs, 2, float("inf")) == [2, 2, 2]

    asyncio.run(main())


def test_an_error_stays_with_its_request() -> None:
    async def main() -> None:
        model = Model()
        batcher = _batcher(model)
        first = await _hold(model, batcher)
        good, bad, also_good = (asyncio.ensure_future(batcher.submit(x)) for x in (1, -1, 3))
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        assert (await good)[0] == 2 and (await also_good)[0] == 6
        with pytest.raises(ValueError, match="negative input in \\[-1\\]"):
            await bad

    asyncio.run(main())


def test_cancelled_item_leaves_nothing_behind() -> None:
    async def main() -> None:
        model = Model()
        batcher = _batcher(model)
        first = await _hold(model, batcher)
        keep = asyncio.ensure_future(batcher.submit(5))
        gone = asyncio.ensure_future(batcher.submit(7))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0.01)
        model.gate.set()
        await first
        assert (await keep)[0] == 10
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert all(7 not in call for call in model.calls)  # never ran
        assert not batcher._queue

    asyncio.run(main())


def test_max_queue_s_withdraws_and_refuses() -> None:
    async def main() -> None:
        model = Model()
        batcher = _batcher(model, max_queue_s=0.2)
        first = await _hold(model, batcher)
        with pytest.raises(Overloaded, match="server.max_queue_s"):
            await batcher.submit(9)
        model.gate.set()
        await first
        assert (await batcher.submit(4))[0] == 8  # a started-or-free worker still serves
        assert all(9 not in call for call in model.calls)

    asyncio.run(main())
