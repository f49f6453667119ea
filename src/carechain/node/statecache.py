"""A read-through cache of committed state, including what is absent.

Invariants: the cache only ever holds values that were committed (it is filled from the store
and updated by :meth:`StateCache.apply` right after a block commits, by the single producer);
a reader may see the state just before the newest block, never a state that was not
committed. It is bounded: two generations of at most ``max_entries`` together (see
:class:`StateCache`).

Readers on other threads (the API, submission) fill it too, from their own store reads; such
a read can return the value from before a block the producer commits and applies meanwhile.
So :meth:`StateCache.apply` bumps an epoch under a lock, and a value read from the store is
kept only if no apply ran since the read began: a stale value never enters the cache (where
the producer would execute the next block against it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from carechain.storage import LedgerStore

_MISSING = b""


class StateCache:
    """Committed state with a bounded cache in front of the store.

    Two generations, each up to half of ``max_entries``: lookups and writes go to the new one;
    when it is full it becomes the old one (the previous old one is dropped), and a key found
    in the old one moves back to the new. Hot keys (accounts, keys, indexes a workload keeps
    touching) therefore survive a long ingest instead of being dropped all at once when a
    single dict starts over. A write always lands in the new generation, which is consulted
    first, so an older value left in the old one is never returned.
    """

    def __init__(self, store: LedgerStore, *, max_entries: int = 200_000) -> None:
        self._store = store
        self._max = max(1, max_entries // 2)  # per generation
        self._new: dict[str, bytes | None] = {}
        self._old: dict[str, bytes | None] = {}
        self._lock = threading.Lock()
        self._epoch = 0
        """Applies so far: a store read begun in an older epoch is not cached."""

    def _put(self, key: str, value: bytes | None) -> None:
        if len(self._new) >= self._max:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def find_state(self, key: str) -> bytes | None:
        epoch = self._epoch  # before any look: an apply after it voids what we find
        try:
            return self._new[key]
        except KeyError:
            pass
        try:
            value = self._old[key]
        except KeyError:
            value = self._store.find_state(key)
        with self._lock:
            if self._epoch == epoch:  # no block applied since the read began
                self._put(key, value)
        return value

    def prefetch(self, keys: Iterable[str]) -> None:
        """Load every uncached key of ``keys`` in one store read."""
        epoch = self._epoch
        missing = [k for k in set(keys) if k not in self._new and k not in self._old]
        if missing:
            values = self._store.find_states(missing)
            with self._lock:
                if self._epoch == epoch:
                    for key, value in zip(missing, values, strict=True):
                        self._put(key, value)

    def apply(self, writes: Iterable[tuple[str, bytes | None]]) -> None:
        """Record a committed block's writes (call after the commit succeeded)."""
        with self._lock:
            self._epoch += 1
            for key, value in writes:
                self._put(key, value)

