"""Read models of the explorer: what each page shows, read from a node's committed store.

Every function here is synchronous and read-only; the routes run them in a threadpool so the
event loop never waits on storage. Values are plain Python (strings, ints, lists, frozen
dataclasses) ready for the templates, which escape everything they print.

Invariants:

* Only committed data is shown: blocks, envelopes, receipts and state come from the store
  (``node.store``); the one exception is :func:`node_health`, which reports the live node.
* A page about something that does not exist returns ``None`` (the route answers 404); a
  malformed identifier never reaches this module (the route answers 400).
* Stored bytes are parsed, never trusted to be small: lists are paged (``limit``) and
  JSON shown to the user is pretty-printed from the verbatim stored bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from carechain.encoding import b64u_decode
from carechain.ledger.block import BlockHeader, header_hash, parse_header, parse_seal
from carechain.ledger.tx import parse_envelope
from carechain.merkle import leaf_hash
from carechain.node.node import Node
from carechain.storage import LedgerStore, StoredBlock

RECENT_BLOCKS = 10
"""Blocks listed on the status page."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TxRow:
    """One transaction in a list (block page, account page)."""

    tx_id: str
    """Transaction id, lowercase hex."""
    log_index: int
    """Leaf index in the ledger-wide log."""
    height: int
    """Height of the block that holds it."""
    position: int
    """Index within that block."""
    kind: str
    """Contract kind, e.g. ``identity.register_member@1``."""
    sender: str
    """Sender account id."""
    status: str
    """Receipt status: ``ok`` or ``rejected``."""
    code: str
    """Receipt code: ``ok`` or the rejection reason."""
    message: str = ""
    """Rejection message (empty when ``ok``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRow:
    """One block in a list."""

    height: int
    """Block height."""
    hash: str
    """Header hash, lowercase hex."""
    time: int
    """Block timestamp, Unix ms."""
    txs: int
    """Number of transactions."""
    log_size: int
    """Log size after the block."""
    proposer: str
    """Proposer key id (``genesis`` for block 0)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """How the live node is doing."""

    ok: bool
    """False once the node stopped after a fatal error."""
    detail: str
    """``producing blocks`` or the fatal error."""
    uptime_s: int
    """Seconds since the node object was created."""
    mempool: int
    """Transactions waiting for a block."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A window of a newest-first list and the cursors around it."""

    items: list[Any] = field(default_factory=list)
    """The rows shown."""
    older: int | None = None
    """``before=`` cursor of the next (older) page, or None at the end."""
    newer: int | None = None
    """``before=`` cursor of the previous (newer) page; -1 means the first page."""


def _json(raw: bytes) -> Any:
    return orjson.loads(raw)


def pretty_json(value: Any) -> str:
    """Indented JSON with sorted keys, for display."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _state(store: LedgerStore, key: str) -> Any:
    raw = store.find_state(key)
    return None if raw is None else _json(raw)


def _tx_row(raw: bytes, receipt: bytes, *, log_index: int, height: int, position: int) -> TxRow:
    tx = parse_envelope(raw)
    rec = _json(receipt)
    return TxRow(
        tx_id=tx.tx_id.hex(),
        log_index=log_index,
        height=height,
        position=position,
        kind=tx.body.kind,
        sender=tx.body.sender,
        status=str(rec.get("status", "")),
        code=str(rec.get("code", "")),
        message=str(rec.get("msg", "")),
    )


def _header(block: StoredBlock) -> BlockHeader:
    return parse_header(block.header)


def _block_row(block: StoredBlock) -> BlockRow:
    header = _header(block)
    return BlockRow(
        height=header.height,
        hash=header_hash(block.header).hex(),
        time=header.time,
        txs=header.txs,
        log_size=header.log_size,
        proposer=header.proposer,
    )


def node_health(node: Node) -> Health:
    """The live node's health (the only non-committed data the explorer shows)."""
    failed = node.failed
    return Health(
        ok=failed is None,
        detail="producing blocks" if failed is None else f"stopped: {failed}",
        uptime_s=int(time.monotonic() - node.started_at),
        mempool=len(node.mempool),
    )


def organisations(store: LedgerStore) -> list[dict[str, Any]]:
    """Organisation records from state ``org/*``, in id order."""
    return [_json(raw) for _, raw in store.iter_state("org/")]


def node_names(store: LedgerStore) -> dict[str, dict[str, Any]]:
    """Node records from state ``node/*`` by key id."""
    return {key.removeprefix("node/"): _json(raw) for key, raw in store.iter_state("node/")}


def chain_status(node: Node) -> dict[str, Any]:
    """Everything the status page shows."""
    store = node.store
    head = store.head_height()
    assert head is not None, "a node always has block 0"
    head_block = store.find_block(head)
    assert head_block is not None
    checkpoint = store.find_checkpoint()
    recent = list(store.iter_blocks(max(0, head - RECENT_BLOCKS + 1), head + 1))
    return {
        "chain": node.genesis.chain,
        "origin": node.genesis.origin,
        "height": head,
        "log_size": store.log_size(),
        "head_hash": header_hash(head_block.header).hex(),
        "head_time": _header(head_block).time,
        "checkpoint": checkpoint.decode("utf-8", "replace") if checkpoint else "",
        "health": node_health(node),
        "orgs": organisations(store),
        "nodes": node_names(store),
        "blocks": [_block_row(b) for b in reversed(recent)],
    }


def block_list(node: Node, *, before: int | None, limit: int) -> dict[str, Any]:
    """Blocks with ``height < before`` (None: from the head), newest first."""
    store = node.store
    head = store.head_height()
    assert head is not None
    top = head + 1 if before is None else min(before, head + 1)
    low = max(0, top - limit)
    blocks = [_block_row(b) for b in reversed(list(store.iter_blocks(low, top)))]
    newer: int | None = None
    if top <= head:
        newer = -1 if top + limit > head else top + limit
    return {
        "head": head,
        "page": Page(items=blocks, older=low if low > 0 else None, newer=newer),
        "limit": limit,
        "nodes": node_names(store),
    }


def block_detail(node: Node, height: int) -> dict[str, Any] | None:
    """The block page's data, or None if there is no block at ``height``."""
    store = node.store
    block = store.find_block(height)
    if block is None:
        return None
    header = _header(block)
    seal = parse_seal(block.signature) if block.signature else None
    first = header.log_size - header.txs
    txs = [
        _tx_row(raw, rec, log_index=first + i, height=height, position=i)
        for i, (raw, rec) in enumerate(zip(block.envelopes, block.receipts, strict=True))
    ]
    head = store.head_height()
    return {
        "header": header,
        "hash": header_hash(block.header).hex(),
        "header_json": pretty_json(_json(block.header)),
        "seal": seal,
        "txs": txs,
        "first_log_index": first,
        "head": head,
        "proposer_node": node_names(store).get(header.proposer),
    }


def tx_detail(node: Node, tx_id: bytes) -> dict[str, Any] | None:
    """The transaction page's data, or None if ``tx_id`` is not committed."""
    store = node.store
    loc = store.find_tx(tx_id)
    if loc is None:
        return None
    raw = store.find_envelope(loc.log_index)
    receipt_raw = store.find_receipt(loc.log_index)
    block = store.find_block(loc.height)
    assert raw is not None and receipt_raw is not None and block is not None
    tx = parse_envelope(raw)
    receipt = _json(receipt_raw)
    signers = []
    for signer in tx.body.signers:
        key = _state(store, f"key/{signer.kid}")
        signers.append(
            {
                "alg": signer.alg,
                "kid": signer.kid,
                "account": key.get("account") if isinstance(key, Mapping) else None,
                "status": key.get("status") if isinstance(key, Mapping) else "unknown",
            }
        )
    events = [
        {"kind": e.get("kind", ""), "attrs": pretty_json(e.get("attrs", {}))}
        for e in receipt.get("events", [])
    ]
    return {
        "tx_id": tx.tx_id.hex(),
        "body": tx.body,
        "body_json": pretty_json(_json(tx.body_bytes)),
        "signers": signers,
        "receipt": receipt,
        "events": events,
        "receipt_tx": b64u_decode(receipt.get("tx", ""), what="receipt.tx").hex(),
        "location": loc,
        "block_time": _header(block).time,
        "block_hash": header_hash(block.header).hex(),
        "envelope_size": len(raw),
        "leaf_hash": leaf_hash(raw).hex(),
        "origin": node.genesis.origin,
        "note_keys": checkpoint_keys(node),
    }


def checkpoint_keys(node: Node) -> list[dict[str, str]]:
    """Keys the browser may check checkpoint signatures with: the active node keys on chain.

    Nodes sign checkpoints under the key name ``origin`` (see ``Node._commit``).
    """
    return [
        {"name": node.genesis.origin, "alg": rec["alg"], "pub": rec["pub"], "node": rec["name"]}
        for rec in node_names(node.store).values()
        if rec.get("status") == "active"
    ]


def account_detail(
    node: Node, account: str, *, before: int | None, limit: int
) -> dict[str, Any] | None:
    """The account page's data, or None if the account is neither registered nor seen."""
    store = node.store
    record = _state(store, f"acct/{account}")
    indexes = store.account_log_indexes(account, limit=limit + 1, before=before)
    if record is None and not indexes:
        return None
    more = len(indexes) > limit
    indexes = indexes[:limit]
    rows: list[TxRow] = []
    for i in indexes:
        raw, rec = store.find_envelope(i), store.find_receipt(i)
        assert raw is not None and rec is not None
        loc = store.find_tx(parse_envelope(raw).tx_id)
        assert loc is not None
        rows.append(_tx_row(raw, rec, log_index=i, height=loc.height, position=loc.position))
    keys = []
    for kid in record.get("keys", []) if isinstance(record, Mapping) else []:
        key = _state(store, f"key/{kid}")
        keys.append({"kid": kid, **(key if isinstance(key, Mapping) else {})})
    org = _state(store, f"org/{record['org']}") if record and record.get("org") else None
    return {
        "account": account,
        "record": record,
        "record_json": pretty_json(record) if record is not None else "",
        "org": org,
        "keys": keys,
        "page": Page(
            items=rows,
            older=rows[-1].log_index if more and rows else None,
            newer=None if before is None else -1,
        ),
    }
