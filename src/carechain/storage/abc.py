"""The ``LedgerStore`` interface: what a node needs from durable storage.

Invariants every implementation keeps (the conformance suite in
``carechain.testing.store_conformance`` checks them):

* ``commit_block`` is atomic: the block, its envelopes and receipts, the Merkle nodes, the
  state writes and the indexes become visible together or not at all.
* Heights are dense from 0 and ``commit_block`` accepts only ``height == head_height() + 1``
  (or 0 on an empty store); anything else raises ``ConflictError`` and changes nothing.
* A transaction id is stored once, ever: committing a block whose tx id is already stored
  raises ``ConflictError`` and changes nothing.
* Bytes are stored and returned verbatim; the store never parses what it keeps.
* Any failure to make a commit durable raises ``InfrastructureError``; the node treats it as
  fatal (exit, restart, verify) and never acknowledges the block.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from carechain.errors import NotFoundError


@dataclass(frozen=True, slots=True, kw_only=True)
class TxLocation:
    """Where a committed transaction sits."""

    height: int
    """Height of the block that holds it."""
    position: int
    """Its index within that block."""
    log_index: int
    """Its leaf index in the ledger-wide RFC 9162 log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredBlock:
    """A block exactly as stored: verbatim bytes, never re-serialised."""

    height: int
    """Block height (0 is genesis)."""
    header: bytes
    """Canonical header bytes (the header hash is computed over these)."""
    signature: bytes
    """Canonical JSON of the proposer's signature over the header hash."""
    envelopes: tuple[bytes, ...]
    """The transaction envelopes, verbatim as received, in block order."""
    receipts: tuple[bytes, ...]
    """Canonical receipt bytes, one per envelope, in block order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockCommit:
    """Everything one block changes, written in one storage transaction."""

    block: StoredBlock
    """The block itself."""
    header_hash: bytes
    """Hash of ``block.header`` (indexed for lookups by hash)."""
    tx_ids: tuple[bytes, ...]
    """Transaction ids, parallel to ``block.envelopes``."""
    first_log_index: int
    """Log index of the block's first transaction (= log size before the block)."""
    merkle_nodes: tuple[tuple[int, int, bytes], ...]
    """New complete-subtree hashes ``(level, index, hash)`` of the ledger log."""
    state_writes: tuple[tuple[str, bytes | None], ...]
    """State changes in key order; ``None`` deletes the key."""
    account_index: tuple[tuple[str, int], ...] = ()
    """``(account id, log index)`` pairs: which transactions touch which account."""
    checkpoint: bytes = b""
    """The signed checkpoint (C2SP signed note) for the log after this block."""


class LedgerStore(ABC):
    """Durable ledger storage. Reads may run concurrently with one writer."""

    # -- chain -------------------------------------------------------------------------
    @abstractmethod
    def head_height(self) -> int | None:
        """Height of the newest committed block, or None when the store is empty."""

    @abstractmethod
    def find_block(self, height: int) -> StoredBlock | None:
        """The block at ``height``, or None."""

    @abstractmethod
    def iter_blocks(self, start: int = 0, end: int | None = None) -> Iterator[StoredBlock]:
        """Blocks with ``start <= height < end`` (``end`` None = to the head), in order."""

    @abstractmethod
    def find_height_by_hash(self, header_hash: bytes) -> int | None:
        """Height of the block whose header hash is ``header_hash``, or None."""

    # -- transactions ------------------------------------------------------------------
    @abstractmethod
    def find_tx(self, tx_id: bytes) -> TxLocation | None:
        """Location of a committed transaction, or None."""

    @abstractmethod
    def has_tx_ids(self, tx_ids: Sequence[bytes]) -> list[bool]:
        """For each id, whether it is already committed (replay check)."""

    @abstractmethod
    def find_envelope(self, log_index: int) -> bytes | None:
        """The envelope at ``log_index`` in the ledger log, or None."""

    def find_tx_envelope(self, tx_id: bytes) -> tuple[TxLocation, bytes] | None:
        """Location and envelope of a committed transaction (one read where the store can)."""
        loc = self.find_tx(tx_id)
        if loc is None:
            return None
        raw = self.find_envelope(loc.log_index)
        return None if raw is None else (loc, raw)

    def find_tx_leaf(self, tx_id: bytes) -> tuple[TxLocation, bytes, bytes | None] | None:
        """:meth:`find_tx_envelope` plus the hash of the leaf beside it (Merkle node
        ``(0, log_index ^ 1)``, the first element of its inclusion proof in any tree that
        holds both), None when that leaf is not in the log yet: what an inclusion proof
        reads, in one read where the store can."""
        found = self.find_tx_envelope(tx_id)
        if found is None:
            return None
        loc, raw = found
        try:
            sibling: bytes | None = self.get_merkle_node(0, loc.log_index ^ 1)
        except NotFoundError:
            sibling = None
        return loc, raw, sibling

    @abstractmethod
    def find_receipt(self, log_index: int) -> bytes | None:
        """The receipt of the transaction at ``log_index``, or None."""

    def find_receipts(self, log_indexes: Sequence[int]) -> list[bytes | None]:
        """:meth:`find_receipt` of each index, in order (one read where the store can)."""
        return [self.find_receipt(i) for i in log_indexes]

    @abstractmethod
    def account_log_indexes(
        self, account: str, *, limit: int = 100, before: int | None = None
    ) -> list[int]:
        """Log indexes of transactions touching ``account``, newest first."""

    @abstractmethod
    def log_size(self) -> int:
        """Number of transactions in the ledger log."""

    # -- merkle ------------------------------------------------------------------------
    @abstractmethod
    def get_merkle_node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree ``(level, index)``; ``NotFoundError`` if absent."""

    # -- state -------------------------------------------------------------------------
    @abstractmethod
    def find_state(self, key: str) -> bytes | None:
        """Committed value of ``key``, or None."""

    def find_states(self, keys: Sequence[str]) -> list[bytes | None]:
        """Committed values of ``keys`` (None where absent), in order; one read if possible."""
        return [self.find_state(k) for k in keys]

    @abstractmethod
    def iter_state(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Committed ``(key, value)`` pairs whose key starts with ``prefix``, in key order."""

    # -- checkpoints and metadata ---------------------------------------------------------
    @abstractmethod
    def find_checkpoint(self, height: int | None = None) -> bytes | None:
        """The signed checkpoint stored with block ``height`` (None = newest), or None."""

    @abstractmethod
    def find_meta(self, key: str) -> bytes | None:
        """A metadata value (e.g. ``genesis``), or None."""

    @abstractmethod
    def put_meta(self, key: str, value: bytes) -> None:
        """Set a metadata value durably (outside block commits; e.g. at init)."""

    # -- writing -----------------------------------------------------------------------
    @abstractmethod
    def commit_block(self, commit: BlockCommit) -> None:
        """Write ``commit`` atomically and durably (see the module invariants)."""

    @abstractmethod
    def close(self) -> None:
        """Release resources. Idempotent."""
