"""Ledger state: a key-value map of canonical JSON values, read through overlays.

Invariants:

* Keys are ``/``-separated ASCII paths (``acct/<id>``, ``key/<kid>``, ``org/<id>`` …); values
  are canonical JSON bytes of the restricted model.
* A block executes on a :class:`BlockOverlay` over the committed state; each transaction runs
  in a child :class:`Overlay` that is merged into the block overlay only when the transaction
  succeeds, so a rejected transaction changes nothing.
* The state commitment after a block chains the previous commitment with a digest of the
  block's sorted write set (see ADR 0002): deterministic, replayable from genesis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import orjson

from carechain.crypto.hashing import Hash32, tagged_hash
from carechain.encoding import JsonValue, b64u_encode, canonical_bytes

STATE_TAG = "carechain/state@1"
STATE_WRITES_TAG = "carechain/state-writes@1"

_DELETED = object()


class StateReader(Protocol):
    """Read access to committed state (the storage layer implements it)."""

    def find_state(self, key: str) -> bytes | None:
        """Committed value of ``key`` as canonical JSON bytes, or None."""
        ...


class EmptyState:
    """A state with no keys (before genesis)."""

    def find_state(self, key: str) -> bytes | None:
        return None


class Overlay:
    """Pending writes over a parent; reads fall through to the parent."""

    __slots__ = ("_cache", "_parent", "_writes")

    def __init__(self, parent: StateReader) -> None:
        self._parent = parent
        self._writes: dict[str, bytes | None] = {}
        self._cache: dict[str, JsonValue | None] = {}

    def find_state(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._parent.find_state(key)

    def get(self, key: str) -> JsonValue | None:
        """The decoded value of ``key``, or None."""
        if key in self._cache:
            return self._cache[key]
        raw = self.find_state(key)
        value: JsonValue | None = None if raw is None else orjson.loads(raw)
        self._cache[key] = value
        return value

    def put(self, key: str, value: JsonValue) -> None:
        """Set ``key`` to ``value`` (validated and canonicalised)."""
        # An exact-size copy: orjson hands back its whole output buffer (4 KiB and up) as
        # the bytes object, and committed values live on in the node's state cache.
        self._writes[key] = bytes(memoryview(canonical_bytes(value)))
        self._cache.pop(key, None)

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._writes[key] = None
        self._cache.pop(key, None)

    def child(self) -> Overlay:
        """A nested overlay for one transaction."""
        return Overlay(self)

    def merge(self, child: Overlay) -> None:
        """Apply ``child``'s writes to this overlay."""
        for key, value in child._writes.items():
            self._writes[key] = value
            self._cache.pop(key, None)

    def writes(self) -> tuple[tuple[str, bytes | None], ...]:
        """The pending writes, sorted by key."""
        return tuple(sorted(self._writes.items()))

    def iter_written(self, prefix: str) -> Iterator[tuple[str, bytes | None]]:
        """Pending writes whose key starts with ``prefix``."""
        for key, value in self._writes.items():
            if key.startswith(prefix):
                yield key, value


def writes_digest(writes: tuple[tuple[str, bytes | None], ...]) -> Hash32:
    """Digest of a sorted write set; a deletion is encoded as a one-element entry."""
    entries = [[k, b64u_encode(v)] if v is not None else [k] for k, v in writes]
    return tagged_hash(STATE_WRITES_TAG, canonical_bytes(entries))


def next_state_root(
    prev_root: bytes, height: int, writes: tuple[tuple[str, bytes | None], ...]
) -> Hash32:
    """The state commitment after block ``height`` given its write set."""
    doc = {
        "height": height,
        "prev": b64u_encode(prev_root),
        "writes": b64u_encode(writes_digest(writes)),
    }
    return tagged_hash(STATE_TAG, canonical_bytes(doc))
