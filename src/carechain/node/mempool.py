"""The mempool: verified transactions waiting for a block.

Invariants: a tx id is in the pool at most once; the pool never holds more than ``max_txs``
transactions or ``max_bytes`` envelope bytes (back-pressure: ``UnavailableError`` → 503 with
Retry-After); transactions leave in arrival order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

from carechain.errors import DuplicateTransactionError, UnavailableError
from carechain.ledger.tx import SignedTx


@dataclass(slots=True)
class PendingTx:
    """A verified transaction and the future its submitter waits on."""

    tx: SignedTx
    """The transaction."""
    future: Future[tuple[int, int]] = field(default_factory=Future)
    """Resolves to ``(height, log_index)`` once committed."""


class Mempool:
    """Bounded, deduplicating FIFO of verified transactions."""

    def __init__(self, *, max_txs: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, PendingTx] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.nonempty = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    def contains(self, tx_id: bytes) -> bool:
        """True iff ``tx_id`` waits in the pool."""
        return tx_id in self._items

    def add_many(self, txs: list[SignedTx]) -> list[PendingTx]:
        """Add all of ``txs`` or none (duplicates and overflow raise)."""
        with self._lock:
            size = sum(len(t.raw) for t in txs)
            if len(self._items) + len(txs) > self.max_txs or self._bytes + size > self.max_bytes:
                raise UnavailableError(
                    f"the mempool is full ({len(self._items)} transactions waiting); retry shortly",
                    retry_after=1,
                    code="mempool_full",
                )
            seen: set[bytes] = set()
            for t in txs:
                if t.tx_id in self._items or t.tx_id in seen:
                    raise DuplicateTransactionError(
                        f"transaction {t.tx_id.hex()} is already pending"
                    )
                seen.add(t.tx_id)
            out = []
            for t in txs:
                p = PendingTx(t)
                self._items[t.tx_id] = p
                out.append(p)
            self._bytes += size
            self.nonempty.set()
            return out

    def take(self, max_txs: int, max_bytes: int) -> list[PendingTx]:
        """Remove and return up to ``max_txs`` transactions / ``max_bytes`` bytes, oldest first."""
        with self._lock:
            out: list[PendingTx] = []
            size = 0
            while self._items and len(out) < max_txs:
                _, p = next(iter(self._items.items()))
                if out and size + len(p.tx.raw) > max_bytes:
                    break
                self._items.popitem(last=False)
                out.append(p)
                size += len(p.tx.raw)
            self._bytes -= size
            if not self._items:
                self.nonempty.clear()
            return out
