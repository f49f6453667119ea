"""settle_heap freezes the start-up heap; later garbage is still collected."""

from __future__ import annotations

import gc
import weakref

from carechain.node.heap import settle_heap, unsettle_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_startup_objects_are_skipped_and_later_cycles_still_collected() -> None:
    before = _Cycle()
    before_ref = weakref.ref(before)
    try:
        assert settle_heap() > 0 and gc.get_freeze_count() > 0
        del before
        gc.collect()
        assert before_ref() is not None  # frozen: the full pass does not walk it
        after = _Cycle()
        after_ref = weakref.ref(after)
        del after
        gc.collect()
        assert after_ref() is None  # created after the freeze: collected as usual
    finally:
        unsettle_heap()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before_ref() is None  # given back to the collector: now it goes
