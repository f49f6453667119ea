"""A read-through cache of committed state, including what is absent.

Invariants: the cache only ever holds values that were committed (it is filled from the store
and updated by :meth:`StateCache.apply` right after a block commits, by the single producer);
a reader may see the state just before the newest block, never a state that was not
committed. It is bounded: past ``max_entries`` it starts over.
"""

from __future__ import annotations

from collections.abc import Iterable

from carechain.storage import LedgerStore

_MISSING = b""


class StateCache:
    """Committed state with a bounded cache in front of the store."""

    def __init__(self, store: LedgerStore, *, max_entries: int = 200_000) -> None:
        self._store = store
        self._max = max_entries
        self._values: dict[str, bytes | None] = {}

    def find_state(self, key: str) -> bytes | None:
        try:
            return self._values[key]
        except KeyError:
            pass
        value = self._store.find_state(key)
        if len(self._values) >= self._max:
            self._values = {}
        self._values[key] = value
        return value

    def prefetch(self, keys: Iterable[str]) -> None:
        """Load every uncached key of ``keys`` in one store read."""
        missing = [k for k in set(keys) if k not in self._values]
        if missing:
            if len(self._values) + len(missing) >= self._max:
                self._values = {}
            for key, value in zip(missing, self._store.find_states(missing), strict=True):
                self._values[key] = value

    def apply(self, writes: Iterable[tuple[str, bytes | None]]) -> None:
        """Record a committed block's writes (call after the commit succeeded)."""
        if len(self._values) >= self._max:  # bounded here too: a long ingest writes a lot
            self._values = {}
        values = self._values
        for key, value in writes:
            values[key] = value
