"""The ``Orderer`` interface: move opaque batches into a total order.

An orderer never parses what it moves. Contract:

* ``submit(payload)`` returns the position the batch received; positions strictly increase;
* ``read(after, limit, timeout)`` returns batches with position > ``after`` in order, waiting
  up to ``timeout`` seconds for the first one; every reader sees the same sequence;
* the ordered batch carries the orderer's timestamp (ms), which nodes turn into the block time
  by a deterministic rule (never below the previous block's).

The embedded ``solo`` orderer keeps its queue in memory: a node acknowledges a transaction
only after its block is durably committed, so nothing acknowledged depends on the queue.
A consortium orderer (etcd) implements the same interface without touching ledger or contracts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderedBatch:
    """One batch in the total order."""

    position: int
    """Its position (strictly increasing, starting at 1)."""
    timestamp: int
    """Orderer time when the batch was ordered, Unix ms."""
    payload: bytes
    """The opaque bytes that were submitted."""


class Orderer(ABC):
    """Totally orders opaque batches."""

    kind: str = "abstract"

    @abstractmethod
    def submit(self, payload: bytes) -> int:
        """Append ``payload`` to the order; return its position."""

    @abstractmethod
    def read(self, after: int, *, limit: int = 64, timeout: float = 0.0) -> list[OrderedBatch]:
        """Batches after position ``after``, waiting up to ``timeout`` s for the first."""

    @abstractmethod
    def forget(self, upto: int) -> None:
        """Allow the orderer to drop batches at positions <= ``upto`` (applied everywhere)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
