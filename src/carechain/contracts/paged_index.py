"""Append-only id lists kept in fixed-size pages, so an append costs O(PAGE), not O(n).

State, for a list named ``key``::

    <key>                {"n": count}
    <key>/<page:06d>     [id, ..]   ids ``page * PAGE`` … ``page * PAGE + PAGE - 1``, in order

A list read whole (``items``) costs ``ceil(n / PAGE)`` reads; its newest ``k`` ids (``last``)
cost ``ceil(k / PAGE) + 1``. Appending rewrites one page of at most ``PAGE`` ids and the count,
whatever the list's length (before: the whole list was rewritten on every append, so a busy
prescriber's index grew quadratically in bytes written and was capped at 10,000 entries).

Invariants: entries are only appended; page ``p`` is full (``PAGE`` ids) for every
``p < n // PAGE``; the count equals the number of ids stored.
"""

from __future__ import annotations

from carechain.contracts.records import StateView
from carechain.ledger.state import Overlay

PAGE = 64
"""Ids per page."""


def page_key(key: str, page: int) -> str:
    """State key of page ``page`` of list ``key``."""
    return f"{key}/{page:06d}"


def size(state: StateView, key: str) -> int:
    """Number of ids in list ``key`` (0 when absent)."""
    head = state.get(key)
    n = head.get("n") if isinstance(head, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 0


def _page(state: StateView, key: str, page: int) -> list[str]:
    value = state.get(page_key(key, page))
    return [str(v) for v in value] if isinstance(value, list) else []


def append(state: Overlay, key: str, item: str) -> int:
    """Append ``item`` to list ``key``; the new length."""
    n = size(state, key)
    page = n // PAGE
    state.put(page_key(key, page), [*(_page(state, key, page) if n % PAGE else []), item])
    state.put(key, {"n": n + 1})
    return n + 1


def items(state: StateView, key: str) -> list[str]:
    """Every id of list ``key``, oldest first."""
    n = size(state, key)
    out: list[str] = []
    for page in range((n + PAGE - 1) // PAGE):
        out.extend(_page(state, key, page))
    return out[:n]


def last(state: StateView, key: str, k: int) -> list[str]:
    """The newest ``k`` ids of list ``key``, oldest first."""
    n = size(state, key)
    if n == 0 or k <= 0:
        return []
    first = max(0, n - k)
    out: list[str] = []
    for page in range(first // PAGE, (n + PAGE - 1) // PAGE):
        out.extend(_page(state, key, page))
    skip = first - (first // PAGE) * PAGE
    return out[skip : skip + (n - first)]


__all__ = ["PAGE", "append", "items", "last", "page_key", "size"]
