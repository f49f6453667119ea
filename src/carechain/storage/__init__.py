"""Durable storage of the ledger: one atomic storage transaction per block."""

from carechain.storage.abc import BlockCommit, LedgerStore, StoredBlock, TxLocation

__all__ = ["BlockCommit", "LedgerStore", "StoredBlock", "TxLocation"]
