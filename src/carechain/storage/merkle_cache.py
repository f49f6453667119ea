"""The upper levels of the committed Merkle tree, in memory, 32 bytes a node.

An inclusion proof at a log of n leaves needs one node per level (about log2 n of them).
Reading each from SQLite costs a B-tree descent and a row; holding the *upper* levels in
memory makes all but the lowest few free. Each cached level is one ``bytearray`` of
consecutive node hashes (node ``i`` at ``[32 i, 32 i + 32)``): no per-node Python object,
so a million nodes take 32 MB, not the ~200 MB a dict of tuples would.

Invariants:

* Only committed nodes are held, and a committed node never changes (it is written once,
  by the commit of the block that completes it): a held hash is always right.
* A level's array is a prefix ``0 .. k-1`` of that level; it grows on demand (the rows past
  its end are read when a proof asks for one) and never holds a gap.
* The cached levels are the highest ones that fit the byte budget; as the log grows past
  it, the lowest cached level is dropped. Levels below the cached ones are read per proof.
* Readers slice the arrays without the lock while :meth:`extend` appends under it: safe
  because the prefix a reader can see never changes and CPython's interpreter lock makes a
  slice and an append atomic with respect to each other. carechain runs on GIL builds of
  CPython (3.11 and up, not the free-threaded ``t`` builds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

HASH = 32

Prefix = Callable[[int], bytes]
"""``prefix(level)``: the hashes of nodes ``0 .. k-1`` of ``level``, concatenated: the longest
gapless run from 0 that the store holds (empty if none)."""

Tail = Callable[[int, int, int], Iterable[tuple[int, bytes]]]
"""``tail(level, start, end)``: the stored ``(idx, hash)`` of ``level`` with
``start <= idx <= end``, ordered by idx."""


class NodeArrays:
    """Upper Merkle levels as contiguous byte arrays, within ``budget`` bytes."""

    def __init__(self, budget: int, *, min_level: int = 1) -> None:
        self.budget = budget
        """Most bytes held (a level that would pass it is not cached)."""
        self.min_level = min_level
        """Never cache below this level (level 0 is the leaves: read per proof)."""
        self.lowest: int | None = None
        """Lowest cached level; None until :meth:`load` ran."""
        self._levels: dict[int, bytearray] = {}
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.lowest is not None

    @property
    def nbytes(self) -> int:
        return sum(len(a) for a in list(self._levels.values()))

    def load(self, counts: dict[int, int], prefix: Prefix) -> None:
        """Cache the highest levels whose nodes (``counts``: stored nodes per level) fit."""
        with self._lock:
            if self.lowest is not None:
                return
            top = max(counts, default=self.min_level)
            lowest, total = top + 1, 0
            while lowest - 1 >= self.min_level and (
                total + counts.get(lowest - 1, 0) * HASH <= self.budget
            ):
                lowest -= 1
                total += counts.get(lowest, 0) * HASH
            levels: dict[int, bytearray] = {}
            for level in range(lowest, top + 1):
                data = prefix(level)
                levels[level] = bytearray(data[: len(data) - len(data) % HASH])
            self._levels = levels
            self.lowest = lowest

    def get(self, level: int, idx: int) -> bytes | None:
        """The held hash of node ``(level, idx)``, or None (not cached, or past the prefix)."""
        return self.get_many(((level, idx),))[0]

    def get_many(self, coords: Iterable[tuple[int, int]]) -> list[bytes | None]:
        """The held hash of each ``(level, idx)`` or None, in order (the proof path's hot loop)."""
        get = self._levels.get
        out: list[bytes | None] = []
        for level, idx in coords:
            arr = get(level)
            start = idx * HASH
            if arr is None or idx < 0 or start + HASH > len(arr):
                out.append(None)
            else:
                out.append(bytes(arr[start : start + HASH]))
        return out

    def cached_level(self, level: int) -> bool:
        """Whether ``level`` is one of the held levels (or would be, once it has nodes)."""
        return self.lowest is not None and level >= self.lowest

    def extend(self, level: int, tail: Tail, need: int = 0) -> None:
        """Append the rows of ``level`` stored past the held prefix (committed since), unless
        node ``need`` is held already (another reader extended it meanwhile); drops the
        lowest held level when the budget would be passed."""
        with self._lock:
            if self.lowest is None or level < self.lowest:
                return
            arr = self._levels.setdefault(level, bytearray())
            if (need + 1) * HASH <= len(arr):
                return
            for idx, value in tail(level, len(arr) // HASH, need):
                if idx * HASH != len(arr) or len(value) != HASH:
                    break
                arr += value
            while self._levels and self.nbytes > self.budget:
                self._levels.pop(self.lowest, None)
                self.lowest += 1


__all__ = ["HASH", "NodeArrays"]
