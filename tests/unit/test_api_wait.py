"""The batch endpoint's wait (api/routes/transactions.py ``_all_done``): one event-loop
wake-up once every commit future of a request is done; cancelling the wait never cancels
the node's futures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from carechain.api.routes.transactions import _all_done


def _futures(n: int) -> list[concurrent.futures.Future[tuple[int, int]]]:
    return [concurrent.futures.Future() for _ in range(n)]


def test_resolves_only_when_every_future_is_done_from_another_thread() -> None:
    async def run() -> None:
        futures = _futures(5)
        waiter = _all_done(futures)
        for i, f in enumerate(futures[:4]):
            threading.Thread(target=f.set_result, args=((1, i),)).start()
        await asyncio.sleep(0.05)
        assert not waiter.done()  # negative control: one future is still open
        threading.Thread(
            target=futures[4].set_exception, args=(RuntimeError("node stopped"),)
        ).start()  # an exception counts as done (the caller reports it)
        await asyncio.wait_for(waiter, 5)

    asyncio.run(run())


def test_already_done_and_empty() -> None:
    async def run() -> None:
        futures = _futures(3)
        for f in futures:
            f.set_result((0, 0))
        await asyncio.wait_for(_all_done(futures), 1)
        await asyncio.wait_for(_all_done([]), 1)

    asyncio.run(run())


def test_a_timed_out_wait_leaves_the_node_futures_alone() -> None:
    async def run() -> None:
        futures = _futures(2)
        try:
            await asyncio.wait_for(asyncio.shield(_all_done(futures)), 0.01)
        except TimeoutError:
            pass
        else:  # pragma: no cover - the futures are never resolved
            raise AssertionError("the wait should have timed out")
        assert not any(f.cancelled() for f in futures)
        for f in futures:  # the producer's later set_result still works
            f.set_result((2, 7))

    asyncio.run(run())
