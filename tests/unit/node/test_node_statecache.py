"""The committed-state cache: read-through, negative entries, prefetch in one read, apply."""

from __future__ import annotations

from carechain.node.statecache import StateCache
from carechain.storage.memory import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.single = 0
        self.bulk = 0
        self.data: dict[str, bytes] = {"a": b"1"}

    def find_state(self, key: str) -> bytes | None:
        self.single += 1
        return self.data.get(key)

    def find_states(self, keys):  # type: ignore[no-untyped-def]
        self.bulk += 1
        return [self.data.get(k) for k in keys]


def test_read_through_caches_values_and_absence() -> None:
    store = CountingStore()
    cache = StateCache(store)
    assert cache.find_state("a") == b"1" and cache.find_state("a") == b"1"
    assert cache.find_state("zz") is None and cache.find_state("zz") is None
    assert store.single == 2


def test_prefetch_reads_once_and_apply_overrides() -> None:
    store = CountingStore()
    cache = StateCache(store)
    cache.prefetch(["a", "b", "a"])
    assert store.bulk == 1
    assert cache.find_state("a") == b"1" and cache.find_state("b") is None
    assert store.single == 0
    cache.apply([("b", b"2"), ("a", None)])
    assert cache.find_state("b") == b"2" and cache.find_state("a") is None


def test_bounded() -> None:
    store = CountingStore()
    cache = StateCache(store, max_entries=2)
    for key in ("x", "y", "z"):
        cache.find_state(key)
    cache.find_state("x")  # evicted when the cache started over
    assert store.single == 4
