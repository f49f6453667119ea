"""The block state transition: apply a block's transactions to state, deterministically.

``execute_block`` is a pure function of (committed state, block context, transactions, contract
registry). For each transaction, in block order:

1. chain id must equal the block's chain (``wrong_chain``);
2. ``created`` must lie within ``params.tx_window_ms`` of the block time (``outside_window``);
3. the kind must be registered (``unknown_kind``);
4. the contracts' ``authorize`` hook checks the signers' keys against state (``unknown_key``,
   ``revoked_key``, ``unauthorized`` …);
5. the kind's handler runs on a child overlay. A :class:`ContractError` rejects the transaction:
   its writes are dropped and the receipt carries the error's code and message. Success merges
   the writes and records the events.

Signature *validity* is a block-validity rule checked before execution (the node's pipeline,
``verify_chain``); execution only decides which valid keys may act.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from carechain.crypto.hashing import Hash32
from carechain.encoding import JsonObject, validate_value
from carechain.errors import ContractError
from carechain.ledger.params import ChainParams
from carechain.ledger.receipt import Event, Receipt
from carechain.ledger.state import Overlay, StateReader, next_state_root
from carechain.ledger.tx import SignedTx


@dataclass(slots=True, kw_only=True)
class TxContext:
    """What a contract may know while it applies one transaction."""

    chain: str
    """Chain id."""
    height: int
    """Height of the block being executed."""
    time: int
    """Block time (Unix ms): the only clock contracts see."""
    params: ChainParams
    """Chain parameters."""
    position: int
    """Index of the transaction within the block."""
    tx: SignedTx
    """The transaction."""
    events: list[Event] = field(default_factory=list)
    """Events emitted so far."""
    touched: list[str] = field(default_factory=list)
    """Accounts this transaction concerns (for the account index)."""

    def emit(self, kind: str, attrs: JsonObject) -> None:
        """Record an event."""
        validate_value(attrs, path=f"event {kind}")
        self.events.append(Event(kind=kind, attrs=attrs))

    def touch(self, account: str) -> None:
        """Index this transaction under ``account`` too."""
        if account not in self.touched:
            self.touched.append(account)


Handler = Callable[[Overlay, SignedTx, TxContext], None]


class ContractSet(Protocol):
    """What execution needs from the contract registry."""

    def handler(self, kind: str) -> Handler | None:
        """The handler for ``kind``, or None when unknown."""
        ...

    def authorize(self, state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
        """Raise ContractError unless the signers may act for ``tx.body.sender``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockResult:
    """Everything executing a block produced."""

    receipts: tuple[Receipt, ...]
    """One receipt per transaction, in block order."""
    writes: tuple[tuple[str, bytes | None], ...]
    """The block's state writes, sorted by key."""
    state_root: Hash32
    """State commitment after the block."""
    touched: tuple[tuple[str, int], ...]
    """``(account, position)`` pairs for the account index."""


def _apply_tx(
    block_state: Overlay, tx: SignedTx, ctx: TxContext, contracts: ContractSet
) -> Receipt:
    body = tx.body
    try:
        if body.chain != ctx.chain:  # step 1
            raise ContractError(
                f"transaction is for chain {body.chain!r}, this is {ctx.chain!r}",
                code="wrong_chain",
            )
        if abs(ctx.time - body.created) > ctx.params.tx_window_ms:  # step 2
            raise ContractError(
                f"created {body.created} is more than {ctx.params.tx_window_ms} ms from "
                f"block time {ctx.time}",
                code="outside_window",
            )
        handler = contracts.handler(body.kind)  # step 3
        if handler is None:
            raise ContractError(f"no contract handles kind {body.kind!r}", code="unknown_kind")
        tx_state = block_state.child()
        contracts.authorize(tx_state, tx, ctx)  # step 4
        handler(tx_state, tx, ctx)  # step 5
    except ContractError as exc:
        ctx.events.clear()
        return Receipt(tx_id=tx.tx_id, status="rejected", code=exc.code, message=exc.message)
    block_state.merge(tx_state)
    return Receipt(tx_id=tx.tx_id, status="ok", code="ok", events=tuple(ctx.events))


def execute_block(
    state: StateReader,
    *,
    chain: str,
    height: int,
    time: int,
    prev_state_root: bytes,
    txs: Sequence[SignedTx],
    params: ChainParams,
    contracts: ContractSet,
) -> BlockResult:
    """Apply ``txs`` in order on top of ``state`` and return receipts, writes and roots."""
    overlay = Overlay(state)
    receipts = []
    touched: list[tuple[str, int]] = []
    for position, tx in enumerate(txs):
        ctx = TxContext(
            chain=chain, height=height, time=time, params=params, position=position, tx=tx
        )
        ctx.touch(tx.body.sender)
        receipts.append(_apply_tx(overlay, tx, ctx, contracts))
        touched.extend((account, position) for account in ctx.touched)
    writes = overlay.writes()
    return BlockResult(
        receipts=tuple(receipts),
        writes=writes,
        state_root=next_state_root(prev_state_root, height, writes),
        touched=tuple(touched),
    )
