"""The ``solo`` orderer: a single in-process sequencer for the embedded node.

Positions continue from ``start`` (the last position recorded in the newest block's seal), so
seals stay increasing across restarts.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from carechain.ordering.abc import OrderedBatch, Orderer


class SoloOrderer(Orderer):
    """Orders batches in submission order, in memory."""

    kind = "solo"

    def __init__(self, start: int = 0, *, clock: object = None) -> None:
        self._cond = threading.Condition()
        self._batches: deque[OrderedBatch] = deque()
        self._next = start + 1
        self._clock = clock if callable(clock) else (lambda: time.time_ns() // 1_000_000)

    def submit(self, payload: bytes) -> int:
        with self._cond:
            pos = self._next
            self._next += 1
            self._batches.append(
                OrderedBatch(position=pos, timestamp=int(self._clock()), payload=payload)
            )
            self._cond.notify_all()
            return pos

    def read(self, after: int, *, limit: int = 64, timeout: float = 0.0) -> list[OrderedBatch]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                out = [b for b in self._batches if b.position > after][:limit]
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._cond.wait(remaining)

    def forget(self, upto: int) -> None:
        with self._cond:
            while self._batches and self._batches[0].position <= upto:
                self._batches.popleft()
