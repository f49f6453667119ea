"""Paged append-only id lists (``contracts.paged_index``) against a plain Python list.

An append rewrites one page and the count, never the whole list: the bytes written per append
stay bounded however long the list grows (negative control: the old whole-list layout's write
grows with the list).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.contracts import paged_index
from carechain.contracts.paged_index import PAGE
from carechain.ledger.state import EmptyState, Overlay

KEY = "rxidx/prescriber/seoul-general.dr-kim"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * PAGE + 5), st.integers(0, 4 * PAGE), st.booleans())
def test_matches_a_list_model(n: int, k: int, commit_between: bool) -> None:
    state = Overlay(EmptyState())
    model: list[str] = []
    for i in range(n):
        if commit_between and i % 7 == 0:  # appends across block overlays read committed pages
            parent, state = state, state.child()
            del parent
        item = f"{i:016x}"
        assert paged_index.append(state, KEY, item) == i + 1
        model.append(item)
    assert paged_index.size(state, KEY) == n
    assert paged_index.items(state, KEY) == model
    assert paged_index.last(state, KEY, k) == (model[max(0, n - k) :] if k else [])


def test_an_append_writes_one_bounded_page_and_the_count() -> None:
    base = Overlay(EmptyState())
    for i in range(10 * PAGE + 3):
        paged_index.append(base, KEY, f"{i:016x}")
    tx = base.child()
    paged_index.append(tx, KEY, "ffffffffffffffff")
    writes = dict(tx.writes())
    assert set(writes) == {KEY, paged_index.page_key(KEY, 10)}
    assert max(len(v or b"") for v in writes.values()) < 20 * PAGE  # one page, not 643 ids
    whole = Overlay(EmptyState())  # negative control: the old layout rewrote the whole list
    whole.put(KEY, [f"{i:016x}" for i in range(10 * PAGE + 4)])
    assert len(dict(whole.writes())[KEY] or b"") > 20 * PAGE


def test_absent_or_malformed_heads_read_as_empty() -> None:
    state = Overlay(EmptyState())
    assert paged_index.items(state, KEY) == [] and paged_index.last(state, KEY, 5) == []
    for bad in ({"n": -1}, {"n": True}, ["legacy"], {"m": 3}):
        state.put(KEY, bad)
        assert paged_index.size(state, KEY) == 0
