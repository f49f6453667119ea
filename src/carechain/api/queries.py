"""Read-side queries behind the routes: blocking store reads, run in FastAPI's threadpool.

Invariants: every function here only reads committed data (the store's last committed
snapshot), so answers never show a half-written block; committed blocks are immutable, so
:class:`BlockCache` may keep their parsed headers forever (bounded by LRU eviction).
A missing object raises :class:`~carechain.errors.NotFoundError` (404); a request outside
the committed range raises :class:`~carechain.errors.ValidationError` (400).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import orjson

from carechain.api import schemas
from carechain.errors import InfrastructureError, NotFoundError, ValidationError
from carechain.ledger.block import BlockHeader, header_hash, parse_header
from carechain.ledger.tx import parse_envelope, validate_account_id
from carechain.merkle import (
    consistency_proof_and_roots,
    inclusion_proof,
    inclusion_proof_and_root,
    leaf_hash,
)
from carechain.node.node import Node

MAX_BLOCKS_PAGE = 100
MAX_ACCOUNT_TXS = 200


class BlockCache:
    """LRU of ``height -> (parsed header, header hash)`` for committed (immutable) blocks."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[int, tuple[BlockHeader, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, node: Node, height: int) -> tuple[BlockHeader, bytes]:
        """The header and hash of committed block ``height`` (NotFoundError if absent)."""
        with self._lock:
            hit = self._items.get(height)
            if hit is not None:
                self._items.move_to_end(height)
                return hit
        block = node.store.find_block(height)
        if block is None:
            raise NotFoundError(f"no block at height {height}")
        header = node.genesis.header if height == 0 else parse_header(block.header)
        entry = (header, header_hash(block.header))
        with self._lock:
            self._items[height] = entry
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return entry


def head_height(node: Node) -> int:
    """Height of the newest committed block."""
    height = node.store.head_height()
    if height is None:  # pragma: no cover - the node writes block 0 before serving
        raise InfrastructureError("the store holds no block")
    return height


def get_transaction(node: Node, cache: BlockCache, tx_id: bytes) -> schemas.TxDetail:
    """A committed transaction with its block hash and receipt."""
    loc = node.store.find_tx(tx_id)
    if loc is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not committed on this chain")
    raw = node.store.find_envelope(loc.log_index)
    receipt = node.store.find_receipt(loc.log_index)
    if raw is None or receipt is None:  # pragma: no cover - the store commits them together
        raise InfrastructureError(f"transaction {tx_id.hex()}: envelope or receipt missing")
    _, block_hash = cache.get(node, loc.height)
    return schemas.tx_detail_dto(parse_envelope(raw), loc, block_hash, receipt)


def list_blocks(node: Node, cache: BlockCache, limit: int, before: int | None) -> schemas.BlockList:
    """Up to ``limit`` blocks below height ``before`` (default: from the head), newest first."""
    head = head_height(node)
    top = head if before is None else min(before - 1, head)
    out = []
    for height in range(top, max(top - limit, -1), -1):
        header, hash_ = cache.get(node, height)
        out.append(schemas.block_summary_dto(header, hash_))
    return schemas.BlockList(head=head, blocks=out)


def get_block(node: Node, height: int) -> schemas.BlockDetail:
    """One block with its transactions' outcomes."""
    block = node.store.find_block(height)
    if block is None:
        raise NotFoundError(f"no block at height {height} (head is {head_height(node)})")
    txs = [
        schemas.block_tx_dto(parse_envelope(raw), receipt)
        for raw, receipt in zip(block.envelopes, block.receipts, strict=True)
    ]
    return schemas.block_detail_dto(
        height, header_hash(block.header), block.header, block.signature, txs
    )


def chain_info(node: Node) -> schemas.ChainInfo:
    """Chain id, origin, genesis, head and the node keys that sign checkpoints."""
    keys = [
        schemas.node_key_dto(key.removeprefix("node/"), orjson.loads(value))
        for key, value in node.store.iter_state("node/")
    ]
    return schemas.ChainInfo(
        chain=node.genesis.chain,
        origin=node.genesis.origin,
        genesis_sha256=hashlib.sha256(node.genesis.raw).hexdigest(),
        block0_hash=node.genesis.hash.hex(),
        height=head_height(node),
        log_size=node.store.log_size(),
        node_keys=keys,
        kinds=list(node.contracts.kinds()),
    )


def get_checkpoint(node: Node, height: int | None) -> bytes:
    """The signed checkpoint note stored with block ``height`` (default: the newest)."""
    note = node.store.find_checkpoint(height)
    if note is None:
        raise NotFoundError(
            "no checkpoint" + (f" at height {height}" if height is not None else "")
        )
    return note


def _tree_size(node: Node, size: int | None) -> int:
    return _sized(node, size)[0]


def _sized(node: Node, size: int | None) -> tuple[int, bytes | None]:
    """The tree size asked for (default: the committed head's) and, when it is the head's,
    the head's log root (the one its block header and checkpoint state).

    The producer moves its head right after each commit, so the head's size is committed;
    the store can be one block ahead for that moment, and a size up to the store's is
    served too (with the root folded from the store's nodes).
    """
    head = node.head.header
    if size is None or size == head.log_size:
        return head.log_size, head.log_root
    if size > head.log_size and size > (committed := node.store.log_size()):
        raise ValidationError(
            f"size: got {size}, want <= the committed log size {committed}", code="bad_size"
        )
    return size, None


def prove_inclusion(node: Node, tx_id: bytes, size: int | None) -> schemas.InclusionProofDTO:
    """RFC 9162 inclusion proof of ``tx_id``'s envelope in the log of ``size``."""
    tree_size, head_root = _sized(node, size)
    found = node.store.find_tx_leaf(tx_id)
    if found is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not committed on this chain")
    loc, raw, sibling = found
    known = None if sibling is None else {(0, loc.log_index ^ 1): sibling}
    if size is None and loc.log_index >= tree_size:  # committed a moment ago, head not yet
        tree_size, head_root = node.store.log_size(), None
    if loc.log_index >= tree_size:
        raise ValidationError(
            f"size: transaction {tx_id.hex()} is leaf {loc.log_index}, not in a tree of "
            f"size {tree_size}; ask for a size > {loc.log_index}",
            code="bad_size",
        )
    if head_root is not None:  # the head's root is known: read only the path
        proof, root = inclusion_proof(node.store, loc.log_index, tree_size, known), head_root
    else:
        proof, root = inclusion_proof_and_root(node.store, loc.log_index, tree_size, known)
    return schemas.inclusion_dto(tx_id, loc.log_index, tree_size, leaf_hash(raw), proof, root)


def prove_consistency(node: Node, size1: int, size2: int | None) -> schemas.ConsistencyProofDTO:
    """RFC 9162 consistency proof from the log of ``size1`` to the log of ``size2``."""
    tree_size = _tree_size(node, size2)
    if not 0 < size1 <= tree_size:
        raise ValidationError(
            f"from: got {size1}, want 0 < from <= to {tree_size} (a proof from the empty "
            "tree proves nothing)",
            code="bad_size",
        )
    proof, root1, root2 = consistency_proof_and_roots(node.store, size1, tree_size)
    return schemas.consistency_dto(size1, tree_size, proof, root1, root2)


def get_account(node: Node, account: str, limit: int, before: int | None) -> schemas.AccountView:
    """An account record, its key records and the transactions touching it."""
    validate_account_id(account)
    raw = node.store.find_state(f"acct/{account}")
    if raw is None:
        raise NotFoundError(f"account {account} is not registered")
    record = orjson.loads(raw)
    keys = []
    for kid in record.get("keys", []):
        key_raw = node.store.find_state(f"key/{kid}")
        if key_raw is not None:
            keys.append({"kid": kid, **orjson.loads(key_raw)})
    indexes = node.store.account_log_indexes(account, limit=limit, before=before)
    return schemas.AccountView(account=record, keys=keys, transactions=_txs_at(node, indexes))


def _txs_at(node: Node, indexes: Sequence[int]) -> list[schemas.AccountTx]:
    out = []
    for index in indexes:
        raw = node.store.find_envelope(index)
        if raw is not None:
            out.append(schemas.account_tx_dto(parse_envelope(raw), index))
    return out


__all__ = [
    "MAX_ACCOUNT_TXS",
    "MAX_BLOCKS_PAGE",
    "BlockCache",
    "chain_info",
    "get_account",
    "get_block",
    "get_checkpoint",
    "get_transaction",
    "head_height",
    "list_blocks",
    "prove_consistency",
    "prove_inclusion",
]
