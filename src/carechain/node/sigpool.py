"""Signature verification in a process pool sized to the cores: the CPU floor of the node.

Small batches are verified in-process (a pool round trip costs more than a few signatures).
Workers come from a ``forkserver``: forking the node itself would copy locks held by its
other threads (SQLite readers, the producer) into the child and can deadlock it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from carechain.ledger.keys import SigCheck, run_sig_checks

INLINE_BELOW = 64


def _verify_chunk(batches: list[list[SigCheck]]) -> list[bool]:
    return [run_sig_checks(b) for b in batches]


class SignatureVerifier:
    """Verifies batches of transactions' signature checks, in parallel when worth it."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    def warm_up(self) -> None:
        """Start the workers now rather than on the first large batch."""
        if self.workers > 1:
            list(self._get_pool().map(_verify_chunk, [[]] * self.workers))

    def verify(self, batches: Sequence[list[SigCheck]]) -> list[bool]:
        """One bool per transaction: do all its signatures verify?"""
        n = len(batches)
        if self.workers <= 1 or n < INLINE_BELOW:
            return _verify_chunk(list(batches))
        chunks = max(self.workers * 4, 1)
        size = (n + chunks - 1) // chunks
        parts = [list(batches[i : i + size]) for i in range(0, n, size)]
        out: list[bool] = []
        for res in self._get_pool().map(_verify_chunk, parts):
            out.extend(res)
        return out

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
