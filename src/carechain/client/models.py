"""What the SDK returns, and strict parsers of the API's JSON answers into it.

A parser never trusts a field it can check locally: envelopes are parsed and their id
recomputed, block headers are parsed and hashed. A missing or mistyped field raises
``InfrastructureError`` with code ``bad_response`` (or the error class the caller passes,
e.g. ``ProofError`` while verifying a proof).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from carechain.encoding import b64u_decode
from carechain.errors import InfrastructureError, LedgerError, ValidationError, VerificationError
from carechain.ledger.block import BlockHeader, header_hash, parse_header
from carechain.ledger.tx import SignedTx, parse_envelope

_HEX_RE = re.compile(r"[0-9a-f]*")

ErrorClass = type[LedgerError]


def _bad(err: ErrorClass, message: str) -> LedgerError:
    if err is InfrastructureError:
        return InfrastructureError(message, code="bad_response")
    return err(message)


def get_field(obj: Any, name: str, typ: type, what: str, err: ErrorClass) -> Any:
    """``obj[name]`` of type ``typ`` (bool is not an int) or raise ``err``."""
    if not isinstance(obj, Mapping):
        raise _bad(err, f"{what}: the server answered {type(obj).__name__}, want an object")
    if name not in obj:
        raise _bad(err, f"{what}: the server's answer lacks {name!r}")
    value = obj[name]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _bad(err, f"{what}.{name}: got {type(value).__name__}, want {typ.__name__}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise _bad(err, f"{what}.{name}: got {value}, want >= 0")
    return value


def get_opt(obj: Mapping[str, Any], name: str, typ: type, what: str, err: ErrorClass) -> Any:
    """Like :func:`get_field` but ``None`` when absent or null."""
    if obj.get(name) is None:
        return None
    return get_field(obj, name, typ, what, err)


def parse_hex(text: object, what: str, err: ErrorClass, size: int | None = 32) -> bytes:
    """Lowercase hex of ``size`` bytes (any size when None) or raise ``err``."""
    if not isinstance(text, str) or len(text) % 2 or not _HEX_RE.fullmatch(text):
        raise _bad(err, f"{what}: got {str(text)[:80]!r}, want lowercase hex")
    data = bytes.fromhex(text)
    if size is not None and len(data) != size:
        raise _bad(err, f"{what}: got {len(data)} bytes, want {size}")
    return data


def get_hex(obj: Any, name: str, what: str, err: ErrorClass, size: int | None = 32) -> bytes:
    """``obj[name]`` as lowercase hex of ``size`` bytes."""
    return parse_hex(get_field(obj, name, str, what, err), f"{what}.{name}", err, size)


def decode_b64(text: str, what: str) -> bytes:
    """Bytes the API sends as base64: unpadded base64url (the project's form) or standard."""
    try:
        return b64u_decode(text, what=what)
    except ValidationError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InfrastructureError(f"{what}: not base64", code="bad_response") from None


def tx_id_bytes(tx_id: bytes | str) -> bytes:
    """A transaction id given as 32 bytes or 64 lowercase hex characters."""
    if isinstance(tx_id, bytes):
        if len(tx_id) != 32:
            raise ValidationError(f"transaction id: got {len(tx_id)} bytes, want 32")
        return tx_id
    text = tx_id.strip().lower()
    if len(text) != 64 or not _HEX_RE.fullmatch(text):
        raise ValidationError(f"transaction id: got {tx_id[:80]!r}, want 64 hex characters")
    return bytes.fromhex(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The node's answer for one submitted transaction."""

    tx_id: bytes
    """The transaction id."""
    status: str
    """``ok`` (committed, contract accepted), ``rejected`` (committed with a rejected receipt:
    the attempt is evidence) or ``pending`` (accepted, not yet committed: ``wait=False``)."""
    code: str = ""
    """``ok`` or the rejection reason code."""
    message: str = ""
    """Human explanation of a rejection."""
    height: int | None = None
    """Block height, once committed."""
    log_index: int | None = None
    """Leaf index in the ledger-wide log, once committed."""

    @property
    def ok(self) -> bool:
        """True iff committed and accepted by its contract."""
        return self.status == "ok"


def parse_results(obj: Any, sent: Sequence[bytes]) -> list[Result]:
    """Parse ``{"results": [...]}``; one result per sent transaction, in order."""
    err: ErrorClass = InfrastructureError
    items = get_field(obj, "results", list, "submit", err)
    if len(items) != len(sent):
        raise _bad(err, f"submit: got {len(items)} results for {len(sent)} transactions")
    out = []
    for i, (item, want) in enumerate(zip(items, sent, strict=True)):
        what = f"submit.results[{i}]"
        tx_id = get_hex(item, "tx_id", what, err)
        if tx_id != want:
            raise _bad(err, f"{what}.tx_id: got {tx_id.hex()}, want {want.hex()}")
        status = get_field(item, "status", str, what, err)
        if status not in ("ok", "rejected", "pending"):
            raise _bad(err, f"{what}.status: got {status!r}, want ok, rejected or pending")
        out.append(
            Result(
                tx_id=tx_id,
                status=status,
                code=get_opt(item, "code", str, what, err) or ("ok" if status == "ok" else ""),
                message=get_opt(item, "message", str, what, err) or "",
                height=get_opt(item, "height", int, what, err),
                log_index=get_opt(item, "log_index", int, what, err),
            )
        )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TxRecord:
    """A committed transaction as the API reports it (envelope checked locally)."""

    tx_id: bytes
    """The id, recomputed from the envelope."""
    height: int
    """Block height."""
    position: int
    """Index within the block."""
    log_index: int
    """Leaf index in the ledger-wide log."""
    block_hash: bytes
    """Header hash of its block (as reported)."""
    envelope: bytes
    """The envelope bytes (the Merkle leaf data)."""
    tx: SignedTx
    """The parsed envelope."""
    receipt: Mapping[str, Any] = field(default_factory=dict)
    """The receipt as reported (``status``, ``code``, ``events``, ``msg``)."""

    @property
    def status(self) -> str:
        """The receipt's status (``ok`` / ``rejected``)."""
        return str(self.receipt.get("status", ""))


def parse_tx_record(obj: Any, want: bytes) -> TxRecord:
    """Parse ``GET /v1/transactions/{id}``; the envelope must hash to ``want``."""
    err: ErrorClass = InfrastructureError
    what = "transaction"
    envelope = decode_b64(get_field(obj, "envelope_b64", str, what, err), f"{what}.envelope_b64")
    try:
        tx = parse_envelope(envelope)
    except LedgerError as exc:
        raise VerificationError(
            f"the server's envelope for {want.hex()} is invalid: {exc}"
        ) from None
    if tx.tx_id != want:
        raise VerificationError(
            f"the server's envelope has transaction id {tx.tx_id.hex()}, want {want.hex()}"
        )
    receipt = obj.get("receipt") or {}
    if not isinstance(receipt, Mapping):
        raise _bad(err, f"{what}.receipt: want an object")
    return TxRecord(
        tx_id=tx.tx_id,
        height=get_field(obj, "height", int, what, err),
        position=get_field(obj, "position", int, what, err),
        log_index=get_field(obj, "log_index", int, what, err),
        block_hash=get_hex(obj, "block_hash", what, err),
        envelope=envelope,
        tx=tx,
        receipt=receipt,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockTx:
    """One transaction of a block, summarised."""

    tx_id: bytes
    """Transaction id."""
    kind: str
    """Contract kind."""
    sender: str
    """Sender account."""
    status: str
    """Receipt status."""
    code: str
    """Receipt code."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A block as the API reports it (header parsed and hashed locally)."""

    height: int
    """Height."""
    hash: bytes
    """Header hash, recomputed from ``header_bytes``."""
    header: BlockHeader
    """The parsed header."""
    header_bytes: bytes
    """Canonical header bytes."""
    seal: Mapping[str, Any] | None
    """The proposer's seal as reported (``None`` for block 0)."""
    transactions: tuple[BlockTx, ...]
    """Its transactions, in block order."""


def parse_block(obj: Any, want_height: int) -> Block:
    """Parse ``GET /v1/blocks/{h}``; the header must parse, hash and name ``want_height``."""
    err: ErrorClass = InfrastructureError
    what = "block"
    header_bytes = decode_b64(get_field(obj, "header_b64", str, what, err), f"{what}.header_b64")
    try:
        header = parse_header(header_bytes)
    except LedgerError as exc:
        raise VerificationError(
            f"block {want_height}: the server's header is invalid: {exc}"
        ) from None
    digest = header_hash(header_bytes)
    if header.height != want_height:
        raise VerificationError(f"block header names height {header.height}, want {want_height}")
    reported = get_hex(obj, "hash", what, err)
    if reported != digest:
        raise VerificationError(
            f"block {want_height}: the server reports hash {reported.hex()}, the header hashes "
            f"to {digest.hex()}"
        )
    txs = []
    for i, item in enumerate(get_field(obj, "transactions", list, what, err)):
        w = f"{what}.transactions[{i}]"
        txs.append(
            BlockTx(
                tx_id=get_hex(item, "tx_id", w, err),
                kind=str(item.get("kind", "")),
                sender=str(item.get("sender", "")),
                status=str(item.get("status", "")),
                code=str(item.get("code", "")),
            )
        )
    if len(txs) != header.txs:
        raise VerificationError(
            f"block {want_height}: the server lists {len(txs)} transactions, "
            f"the header {header.txs}"
        )
    seal = obj.get("seal")
    return Block(
        height=header.height,
        hash=digest,
        header=header,
        header_bytes=header_bytes,
        seal=seal if isinstance(seal, Mapping) else None,
        transactions=tuple(txs),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainInfo:
    """``GET /v1/chain``: what the node says about itself (informative, not trusted)."""

    chain: str
    """Chain id."""
    origin: str
    """Checkpoint origin."""
    genesis_sha256: str
    """SHA-256 of the genesis document as reported (hex)."""
    block0_hash: str
    """Header hash of block 0 as reported (hex)."""
    height: int
    """Head height."""
    log_size: int
    """Ledger log size."""
    raw: Mapping[str, Any]
    """The whole answer."""


def parse_chain_info(obj: Any) -> ChainInfo:
    """Parse ``GET /v1/chain``."""
    err: ErrorClass = InfrastructureError
    return ChainInfo(
        chain=get_field(obj, "chain", str, "chain", err),
        origin=get_field(obj, "origin", str, "chain", err),
        genesis_sha256=get_field(obj, "genesis_sha256", str, "chain", err),
        block0_hash=get_field(obj, "block0_hash", str, "chain", err),
        height=get_field(obj, "height", int, "chain", err),
        log_size=get_field(obj, "log_size", int, "chain", err),
        raw=obj,
    )


__all__ = [
    "Block",
    "BlockTx",
    "ChainInfo",
    "Result",
    "TxRecord",
    "decode_b64",
    "get_field",
    "get_hex",
    "get_opt",
    "parse_block",
    "parse_chain_info",
    "parse_hex",
    "parse_results",
    "parse_tx_record",
    "tx_id_bytes",
]
