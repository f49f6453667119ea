"""Pydantic DTOs of the HTTP API and the explicit converters from ledger objects.

Pydantic lives only here, at the edge (GUIDE §4): the core hands over frozen dataclasses and
verbatim bytes, and the ``*_dto`` functions below turn them into these models. Conventions:
ids and hashes are lowercase hex; raw bytes that are not hashes (envelopes, headers,
public keys, signatures) are unpadded base64url, as in the ledger's own JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from carechain.encoding import b64u_encode
from carechain.ledger.block import BlockHeader
from carechain.ledger.tx import SignedTx
from carechain.storage import TxLocation

TxStatus = Literal["ok", "rejected", "pending"]


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="https://carechain.dev/problems/<code>")
    title: str = Field(description="Short summary of the problem family.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What was wrong and, where it helps, how to fix it.")
    code: str = Field(description="Stable machine-readable error code (snake_case).")


# -- transactions ---------------------------------------------------------------------------


class TxResult(BaseModel):
    """The outcome of one submitted transaction."""

    tx_id: str = Field(description="Transaction id (hex SHA-256 of the signing bytes).")
    status: TxStatus = Field(description="ok / rejected (committed) or pending (not yet).")
    code: str | None = Field(default=None, description="Receipt code: ok or the rejection reason.")
    message: str | None = Field(default=None, description="Human explanation of a rejection.")
    height: int | None = Field(default=None, description="Height of the committing block.")
    log_index: int | None = Field(default=None, description="Leaf index in the ledger log.")


class SubmitResponse(BaseModel):
    """Results in submission order."""

    results: list[TxResult]


class SignatureDTO(BaseModel):
    """One signature of a transaction."""

    alg: str = Field(description="Signature algorithm id.")
    kid: str = Field(description="Key id of the signer.")
    sig: str = Field(description="The signature, base64url.")


class TxDetail(BaseModel):
    """A committed transaction with its receipt."""

    tx_id: str
    height: int
    position: int = Field(description="Index within its block.")
    log_index: int
    block_hash: str
    envelope_b64: str = Field(description="The envelope bytes exactly as submitted, base64url.")
    body: dict[str, Any] = Field(description="The decoded, signed body (args as submitted).")
    signatures: list[SignatureDTO]
    receipt: dict[str, Any] = Field(description="The decoded receipt.")


def pending_result(tx_id: bytes) -> TxResult:
    """Result of a transaction accepted but not (yet) seen committed."""
    return TxResult(tx_id=tx_id.hex(), status="pending")


def committed_result(tx_id: bytes, height: int, log_index: int, receipt: bytes) -> TxResult:
    """Result of a committed transaction from its stored receipt bytes."""
    rec = orjson.loads(receipt)
    status: TxStatus = "ok" if rec.get("status") == "ok" else "rejected"
    return TxResult(
        tx_id=tx_id.hex(),
        status=status,
        code=str(rec.get("code", status)),
        message=str(rec["msg"]) if "msg" in rec else None,
        height=height,
        log_index=log_index,
    )


def tx_detail_dto(tx: SignedTx, loc: TxLocation, block_hash: bytes, receipt: bytes) -> TxDetail:
    """A committed transaction as returned by ``GET /v1/transactions/{tx_id}``."""
    return TxDetail(
        tx_id=tx.tx_id.hex(),
        height=loc.height,
        position=loc.position,
        log_index=loc.log_index,
        block_hash=block_hash.hex(),
        envelope_b64=b64u_encode(tx.raw),
        body=tx.body.to_json(),
        signatures=[
            SignatureDTO(alg=s.alg, kid=s.kid, sig=b64u_encode(sig))
            for s, sig in zip(tx.body.signers, tx.sigs, strict=True)
        ],
        receipt=orjson.loads(receipt),
    )


# -- blocks and chain ----------------------------------------------------------------------


class BlockSummary(BaseModel):
    """One line of the block list."""

    height: int
    hash: str
    time: int = Field(description="Block timestamp, Unix milliseconds.")
    txs: int = Field(description="Number of transactions.")
    proposer: str = Field(description="Key id of the proposing node (genesis for block 0).")
    log_size: int = Field(description="Ledger log size after this block.")


class BlockList(BaseModel):
    """Blocks, newest first."""

    head: int = Field(description="Height of the newest committed block.")
    blocks: list[BlockSummary]


class BlockTx(BaseModel):
    """A transaction as listed in its block."""

    tx_id: str
    kind: str
    sender: str
    status: Literal["ok", "rejected"]
    code: str


class BlockDetail(BaseModel):
    """A block: its header (decoded and verbatim), seal and transactions."""

    height: int
    hash: str
    header: dict[str, Any] = Field(description="The decoded canonical header.")
    header_b64: str = Field(description="The canonical header bytes, base64url.")
    seal: dict[str, Any] | None = Field(description="The proposer's seal; null for genesis.")
    transactions: list[BlockTx]


def block_summary_dto(header: BlockHeader, hash_: bytes) -> BlockSummary:
    """A block-list line from a parsed header."""
    return BlockSummary(
        height=header.height,
        hash=hash_.hex(),
        time=header.time,
        txs=header.txs,
        proposer=header.proposer,
        log_size=header.log_size,
    )


def block_tx_dto(tx: SignedTx, receipt: bytes) -> BlockTx:
    """A block's transaction line."""
    rec = orjson.loads(receipt)
    return BlockTx(
        tx_id=tx.tx_id.hex(),
        kind=tx.body.kind,
        sender=tx.body.sender,
        status="ok" if rec.get("status") == "ok" else "rejected",
        code=str(rec.get("code", "")),
    )


def block_detail_dto(
    height: int, hash_: bytes, header: bytes, seal: bytes, txs: Sequence[BlockTx]
) -> BlockDetail:
    """A block as returned by ``GET /v1/blocks/{height}``."""
    return BlockDetail(
        height=height,
        hash=hash_.hex(),
        header=orjson.loads(header),
        header_b64=b64u_encode(header),
        seal=orjson.loads(seal) if seal else None,
        transactions=list(txs),
    )


class NodeKey(BaseModel):
    """A block-proposer (node) key from the chain state."""

    kid: str
    alg: str
    pub: str = Field(description="Public key, base64url.")
    org: str
    name: str = Field(description="Key name; also the checkpoint signer name is the origin.")
    status: str


class ChainInfo(BaseModel):
    """What a client needs to trust this chain's checkpoints."""

    chain: str
    origin: str = Field(description="Checkpoint origin line; the signed-note key name.")
    genesis_sha256: str = Field(
        description="SHA-256 of the genesis document bytes (check with `sha256sum genesis.json`)."
    )
    block0_hash: str = Field(description="Header hash of block 0.")
    height: int
    log_size: int
    node_keys: list[NodeKey]
    kinds: list[str] = Field(
        default_factory=list, description="Transaction kinds this node's contracts accept."
    )


def node_key_dto(kid: str, rec: Mapping[str, Any]) -> NodeKey:
    """A node key from its ``node/<kid>`` state record."""
    return NodeKey(
        kid=kid,
        alg=str(rec["alg"]),
        pub=str(rec["pub"]),
        org=str(rec.get("org", "")),
        name=str(rec.get("name", kid)),
        status=str(rec.get("status", "active")),
    )


# -- proofs --------------------------------------------------------------------------------


class InclusionProofDTO(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof of a transaction's envelope in the ledger log."""

    tx_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="SHA-256(0x00 || envelope bytes).")
    proof: list[str] = Field(description="Audit path, bottom-up, hex.")
    root: str = Field(description="Root of the tree of tree_size.")


class ConsistencyProofDTO(BaseModel):
    """RFC 9162 §2.1.4 consistency proof between two log sizes."""

    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    proof: list[str]
    root1: str
    root2: str


def inclusion_dto(
    tx_id: bytes, index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> InclusionProofDTO:
    """An inclusion proof with every hash in hex (built from the store's own values, so
    not validated again)."""
    return InclusionProofDTO.model_construct(
        tx_id=tx_id.hex(),
        leaf_index=index,
        tree_size=size,
        leaf_hash=leaf.hex(),
        proof=[p.hex() for p in proof],
        root=root.hex(),
    )


def consistency_dto(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> ConsistencyProofDTO:
    """A consistency proof with every hash in hex."""
    return ConsistencyProofDTO.model_validate(
        {
            "from": size1,
            "to": size2,
            "proof": [p.hex() for p in proof],
            "root1": root1.hex(),
            "root2": root2.hex(),
        }
    )


# -- accounts ------------------------------------------------------------------------------


class AccountTx(BaseModel):
    """A transaction touching an account."""

    tx_id: str
    log_index: int
    kind: str


class AccountView(BaseModel):
    """An account record, its keys and recent transactions."""

    account: dict[str, Any] = Field(description="The acct/<id> state record.")
    keys: list[dict[str, Any]] = Field(description="key/<kid> records, each with its kid.")
    transactions: list[AccountTx] = Field(description="Newest first.")


def account_tx_dto(tx: SignedTx, log_index: int) -> AccountTx:
    """An account's transaction line."""
    return AccountTx(tx_id=tx.tx_id.hex(), log_index=log_index, kind=tx.body.kind)


# -- operations ----------------------------------------------------------------------------


class Health(BaseModel):
    """Liveness of the node."""

    status: Literal["ok", "failed"]
    height: int
    log_size: int
    mempool: int = Field(description="Transactions waiting for a block.")
    uptime_s: float
    error: str | None = Field(default=None, description="Why the node stopped (when failed).")


# -- auth ----------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the RFC 6749 token type
    expires_in: int = Field(description="Lifetime in seconds.")
    scope: str = Field(description="Granted scopes, space-separated.")


class WhoAmI(BaseModel):
    """The caller behind a bearer token."""

    account: str
    kid: str = Field(description="Key that signed the client assertion.")
    scopes: list[str]
    expires_in: int


__all__ = [
    "AccountTx",
    "AccountView",
    "BlockDetail",
    "BlockList",
    "BlockSummary",
    "BlockTx",
    "ChainInfo",
    "ConsistencyProofDTO",
    "Health",
    "InclusionProofDTO",
    "NodeKey",
    "Problem",
    "SignatureDTO",
    "SubmitResponse",
    "TokenResponse",
    "TxDetail",
    "TxResult",
    "WhoAmI",
    "account_tx_dto",
    "block_detail_dto",
    "block_summary_dto",
    "block_tx_dto",
    "committed_result",
    "consistency_dto",
    "inclusion_dto",
    "node_key_dto",
    "pending_result",
    "tx_detail_dto",
]
