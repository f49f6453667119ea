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


def test_generations_keep_hot_keys_across_a_long_run() -> None:
    """A key read again and again survives the rotation that drops cold ones (the old single
    dict dropped everything at once)."""
    store = CountingStore()
    store.data.update({f"k{i}": b"v" for i in range(100)})
    cache = StateCache(store, max_entries=20)  # 10 per generation
    for i in range(100):
        cache.find_state("a")  # hot
        cache.find_state(f"k{i}")  # cold, each once
    assert store.single == 101  # "a" read from the store once, never again


def test_a_value_read_before_a_block_is_applied_is_not_cached() -> None:
    """The race the epoch closes: a reader's store read returns the value from before the
    producer's commit, the producer applies the block, then the reader would cache the old
    value — where the producer would execute the next block against it."""
    import threading

    store = CountingStore()
    cache = StateCache(store)
    started, release = threading.Event(), threading.Event()
    real = store.find_state

    def slow(key: str) -> bytes | None:
        value = real(key)  # the committed value when the read began
        started.set()
        release.wait(5)
        return value

    store.find_state = slow  # type: ignore[method-assign]
    seen: list[bytes | None] = []
    reader = threading.Thread(target=lambda: seen.append(cache.find_state("a")))
    reader.start()
    assert started.wait(5)
    store.data["a"] = b"2"  # the producer commits a block writing "a"...
    cache.apply([("a", b"2")])  # ...and applies it
    release.set()
    reader.join(5)
    assert seen == [b"1"]  # the reader saw the state before the block: allowed
    store.find_state = real  # type: ignore[method-assign]
    assert cache.find_state("a") == b"2"  # but the cache never kept it


def test_a_value_in_the_old_generation_never_shadows_a_newer_write() -> None:
    store = CountingStore()
    cache = StateCache(store, max_entries=4)  # 2 per generation
    cache.find_state("a")  # new: {a: 1}
    cache.find_state("x")  # new: {a, x}
    cache.find_state("y")  # rotate: old {a: 1, x}, new {y}
    cache.apply([("a", b"2")])  # new {y, a: 2}
    assert cache.find_state("a") == b"2"
    cache.apply([("z", b"3")])  # rotate: old {y, a: 2}, new {z}
    assert cache.find_state("a") == b"2"
