"""NodeArrays: the upper Merkle levels held as gapless prefixes within a byte budget."""

from __future__ import annotations

import hashlib

from carechain.storage.merkle_cache import HASH, NodeArrays


def _h(level: int, idx: int) -> bytes:
    return hashlib.sha256(b"%d/%d" % (level, idx)).digest()


def _table(size: int) -> dict[int, list[int]]:
    """Stored node indexes per level for a log of ``size`` leaves."""
    return {level: list(range(size >> level)) for level in range(size.bit_length())}


def _rows(table: dict[int, list[int]]):  # type: ignore[no-untyped-def]
    """The store's ``prefix(level)`` over ``table``."""
    return lambda level: b"".join(_h(level, i) for i in table.get(level, []))


def _tail(table: dict[int, list[int]]):  # type: ignore[no-untyped-def]
    return lambda level, start, end: [
        (i, _h(level, i)) for i in table.get(level, []) if start <= i <= end
    ]


def test_load_holds_the_highest_levels_that_fit_and_nothing_below() -> None:
    table = _table(64)  # level 1: 32 nodes, 2: 16, 3: 8, 4: 4, 5: 2, 6: 1
    arrays = NodeArrays(budget=16 * HASH)
    arrays.load({lvl: len(ix) for lvl, ix in table.items() if lvl >= 1}, _rows(table))
    assert arrays.lowest == 3 and arrays.nbytes == (8 + 4 + 2 + 1) * HASH
    assert arrays.get(3, 7) == _h(3, 7) and arrays.get(6, 0) == _h(6, 0)
    assert arrays.get(2, 0) is None  # below the held levels: the store is asked
    assert arrays.get(3, 8) is None and arrays.get(3, -1) is None  # past the prefix, negative
    assert arrays.get_many([(3, 7), (2, 0), (6, 0), (3, 99)]) == [_h(3, 7), None, _h(6, 0), None]


def test_a_prefix_of_a_partial_hash_is_cut_to_whole_nodes() -> None:
    arrays = NodeArrays(budget=1 << 20)
    arrays.load({1: 2}, lambda level: _h(1, 0) + _h(1, 1)[:5])
    assert arrays.get(1, 0) == _h(1, 0) and arrays.get(1, 1) is None


def test_extend_appends_committed_rows_and_drops_the_lowest_level_past_the_budget() -> None:
    table = _table(16)  # levels 1-4: 8 + 4 + 2 + 1 nodes
    arrays = NodeArrays(budget=16 * HASH)
    arrays.load({lvl: len(ix) for lvl, ix in table.items() if lvl >= 1}, _rows(table))
    assert arrays.lowest == 1 and arrays.nbytes == 15 * HASH
    grown = _table(32)  # a block committed since
    arrays.extend(4, _tail(grown), 1)  # 16 nodes: within the budget, all levels kept
    assert arrays.get(4, 1) == _h(4, 1) and arrays.lowest == 1 and arrays.get(1, 7) == _h(1, 7)
    assert arrays.get(1, 8) is None  # not extended yet
    arrays.extend(1, lambda level, start, end: [(start, b"\x00" * 32)], 7)  # 7 held: no read
    assert arrays.get(1, 8) is None
    arrays.extend(1, _tail(grown), 15)  # level 1 doubles: 24 nodes > 16, level 1 is dropped
    assert arrays.lowest == 2 and arrays.get(1, 0) is None
    assert arrays.nbytes == 8 * HASH and arrays.get(4, 1) == _h(4, 1)
    arrays.extend(1, _tail(grown))  # below the held levels now: nothing happens
    assert arrays.get(1, 0) is None


def test_nothing_is_held_before_load() -> None:
    arrays = NodeArrays(budget=1 << 20)
    assert not arrays.loaded and arrays.get(1, 0) is None and not arrays.cached_level(5)
    arrays.extend(1, lambda level, start, end: [(0, _h(1, 0))])
    assert arrays.get(1, 0) is None


def test_readers_see_only_held_prefixes_while_another_thread_extends() -> None:
    """Concurrent get_many while extend appends and drops levels: every value a reader gets
    is the right node's hash (or None), never a torn or shifted one."""
    import threading

    final = _table(1 << 12)
    arrays = NodeArrays(budget=1 << 20)
    small = _table(64)
    arrays.load({lvl: len(ix) for lvl, ix in small.items() if lvl >= 1}, _rows(small))
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        coords = [(lvl, i) for lvl in range(1, 12) for i in range(0, 1 << (12 - lvl), 7)]
        while not stop.is_set():
            for (lvl, i), value in zip(coords, arrays.get_many(coords), strict=True):
                if value is not None and value != _h(lvl, i):
                    errors.append(f"{lvl}/{i}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for size in range(64, 1 << 12, 37):  # the log grows, one block at a time
        grown = _table(size)
        for lvl in range(1, size.bit_length()):
            arrays.extend(lvl, _tail(grown), len(grown[lvl]) - 1)
    arrays.extend(1, _tail(final), len(final[1]) - 1)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert arrays.get(1, len(final[1]) - 1) == _h(1, len(final[1]) - 1)
