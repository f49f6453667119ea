"""The long-running node's heap: after start-up, collect once and freeze what is left.

CPython's cyclic collector walks every tracked object of the oldest generation on a full
collection. What a node builds at start-up (contracts, genesis, FastAPI's routes and pydantic
models, warmed caches) lives as long as the process, and walking it made each full collection
a pause of 50-150 ms in the commit path: ingest at half load (bench ``ingest_half``), p99
commit latency 106 and 145 ms with the default collector, 43 and 52 ms with the start-up heap
frozen, in paired runs on the 2-core machine (docs/PERFORMANCE.md).

:func:`settle_heap` moves those objects to the permanent generation (``gc.freeze``): later
full collections skip them. Nothing else changes: objects created afterwards are collected
as before, and reference counting still frees a frozen object that dies (only a frozen
*cycle* would stay, and start-up objects are not garbage). ``carechain node`` calls it once
the app is built; the benchmark calls it where it opens a node and :func:`unsettle_heap`
where it closes one, so one bench process does not keep every closed node's objects.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect, then freeze every tracked object; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def unsettle_heap() -> None:
    """Return frozen objects to the collector (a process that opens nodes repeatedly).

    Process-wide: it unfreezes every frozen object, so call it when no node the process
    still runs needs its heap frozen (the bench opens one node at a time)."""
    gc.unfreeze()
    gc.collect()


__all__ = ["settle_heap", "unsettle_heap"]
