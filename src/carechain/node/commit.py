"""Submit one transaction and wait for its block: the receipt the services act on."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import orjson

from carechain.errors import InfrastructureError
from carechain.ledger.tx import SignedTx

if TYPE_CHECKING:
    from carechain.node.node import Node


def commit_one(node: Node, tx: SignedTx, timeout: float) -> dict[str, Any]:
    """Submit ``tx``, wait (up to ``timeout`` s) for the block that commits it, and return its
    decoded receipt plus ``height``, ``log_index`` and ``tx`` (hex id). A rejected transaction
    is a receipt with ``status: rejected``, not an exception; a timeout or a missing receipt is
    an :class:`InfrastructureError`."""
    try:
        ((height, index),) = node.submit_and_wait([tx.raw], timeout=timeout)
    except FutureTimeout:
        raise InfrastructureError(
            f"transaction {tx.tx_id.hex()} was not committed within {timeout} s",
            code="commit_timeout",
        ) from None
    raw = node.store.find_receipt(index)
    if raw is None:  # pragma: no cover - committed with its block
        raise InfrastructureError(f"no receipt for committed transaction {tx.tx_id.hex()}")
    receipt: dict[str, Any] = orjson.loads(raw)
    receipt.update({"height": height, "log_index": index, "tx": tx.tx_id.hex()})
    return receipt


__all__ = ["commit_one"]
