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


def test_a_cancelled_wait_then_late_commits_raise_nothing() -> None:
    """A request that stops waiting (timeout, client gone) cancels its mirror; the producer
    resolves the futures later from its own thread: nothing may raise in the loop (an
    ``InvalidStateError`` from setting a cancelled future would land in its handler)."""
    errors: list[dict[str, object]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        futures = _futures(3)
        waiter = _all_done(futures)
        waiter.cancel()
        setters = [
            threading.Thread(target=f.set_result, args=((2, i),)) for i, f in enumerate(futures)
        ]
        for t in setters:
            t.start()
        for t in setters:
            t.join()
        await asyncio.sleep(0.05)  # the loop runs the late settle callback
        assert waiter.cancelled() and not any(f.cancelled() for f in futures)

    asyncio.run(run())
    assert errors == []
