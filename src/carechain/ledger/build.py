"""Building a block from ordered, signature-checked transactions.

The node (to propose) and ``verify_chain`` (to check) call the same :func:`build_block`, so a
verified chain is by construction one the node would have produced. Steps:

1. ``tx_root``: RFC 9162 root over the envelopes' leaf hashes;
2. execute the block (receipts, writes, state root);
3. ``receipt_root``: RFC 9162 root over the canonical receipt bytes;
4. append the envelopes to the ledger-wide log; ``log_size``/``log_root`` after the block;
5. assemble the canonical header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carechain.crypto.hashing import Hash32
from carechain.encoding import JsonObject
from carechain.ledger.block import BlockHeader, header_hash
from carechain.ledger.execute import BlockResult, ContractSet, execute_block
from carechain.ledger.params import ChainParams
from carechain.ledger.state import StateReader
from carechain.ledger.tx import SignedTx
from carechain.merkle import CompactTree, leaf_hash


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltBlock:
    """A block ready to seal and commit."""

    header: BlockHeader
    """The header."""
    header_bytes: bytes
    """Canonical header bytes."""
    hash: Hash32
    """Header hash."""
    receipts: tuple[bytes, ...]
    """Canonical receipt bytes, in block order."""
    result: BlockResult
    """Execution result (writes, touched accounts)."""
    merkle_nodes: tuple[tuple[int, int, bytes], ...]
    """New complete nodes of the ledger log."""
    log: CompactTree
    """The ledger log after this block."""


def block_root(leaves: Sequence[bytes]) -> Hash32:
    """RFC 9162 root over raw leaf data."""
    tree = CompactTree()
    tree.append([leaf_hash(x) for x in leaves])
    return Hash32(tree.root())


def build_block(
    state: StateReader,
    *,
    parent: BlockHeader,
    parent_hash: bytes,
    txs: Sequence[SignedTx],
    time: int,
    proposer: str,
    seal: JsonObject,
    params: ChainParams,
    contracts: ContractSet,
    log: CompactTree,
) -> BuiltBlock:
    """Execute ``txs`` on ``state`` as the block after ``parent`` and assemble its header."""
    height = parent.height + 1
    leaves = [leaf_hash(tx.raw) for tx in txs]
    block_tree = CompactTree()  # step 1
    block_tree.append(leaves)
    result = execute_block(  # step 2
        state,
        chain=parent.chain,
        height=height,
        time=time,
        prev_state_root=parent.state_root,
        txs=txs,
        params=params,
        contracts=contracts,
    )
    receipts = tuple(r.to_bytes() for r in result.receipts)
    new_log = log.copy()  # step 4
    nodes = tuple(new_log.append(leaves))
    header = BlockHeader(  # step 5
        chain=parent.chain,
        height=height,
        prev=Hash32(parent_hash),
        time=time,
        txs=len(txs),
        tx_root=Hash32(block_tree.root()),
        receipt_root=block_root(receipts),  # step 3
        log_size=new_log.size,
        log_root=Hash32(new_log.root()),
        state_root=result.state_root,
        proposer=proposer,
        seal=seal,
    )
    header_bytes = header.to_bytes()
    return BuiltBlock(
        header=header,
        header_bytes=header_bytes,
        hash=header_hash(header_bytes),
        receipts=receipts,
        result=result,
        merkle_nodes=nodes,
        log=new_log,
    )
