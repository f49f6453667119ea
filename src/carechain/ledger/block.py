"""Block headers, their hash and the proposer's seal signature.

Header (canonical JSON, stored verbatim; every field covered by the header hash)::

    {"chain", "height", "prev", "time", "txs", "tx_root", "receipt_root", "log_size",
     "log_root", "state_root", "proposer", "seal"}

``header_hash = tagged_hash("carechain/block-header@1", header_bytes)``. The proposer signs
``PAE("carechain/block-seal@1", header_hash)``; the signature is stored next to the header as
canonical ``{"alg", "kid", "sig"}`` and ``kid`` must equal ``proposer``. Block 0 (genesis)
carries no signature: its ``prev`` is the hash of the genesis document, the chain's trust root.

Consortium blocks (ADR 0011) are identical on every node: ``proposer`` is ``"consortium"``,
``seal`` is ``{"kind": "etcd", "from": p, "to": p, "ts": t}`` (etcd position ``p``, proposer
time ``t``) and the time is :func:`consortium_block_time`. The signature stored beside such a
header is the storing node's own seal by any active node key; agreement between nodes is shown
by cosigned checkpoints, not by the header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carechain.crypto.hashing import Hash32, tagged_hash
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import (
    MAX_SAFE_INT,
    JsonObject,
    Limits,
    b64u_decode,
    b64u_encode,
    canonical_bytes,
    decode_canonical,
    pae,
)
from carechain.errors import ValidationError

HEADER_TAG = "carechain/block-header@1"
SEAL_TAG = "carechain/block-seal@1"
HEADER_LIMITS = Limits(max_bytes=16 * 1024, max_string=4096, max_items=64)
SEAL_LIMITS = Limits(max_bytes=16 * 1024, max_string=8192, max_items=8)
"""A seal holds a whole signature: an ML-DSA-65 one is 4412 base64url characters."""
_FIELDS = (
    "chain", "height", "prev", "time", "txs", "tx_root", "receipt_root",
    "log_size", "log_root", "state_root", "proposer", "seal",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader:
    """What a block commits to."""

    chain: str
    """Chain id."""
    height: int
    """Block height; genesis is 0."""
    prev: Hash32
    """Header hash of the previous block (genesis: hash of the genesis document)."""
    time: int
    """Block timestamp, Unix ms; never below the previous block's."""
    txs: int
    """Number of transactions in the block."""
    tx_root: Hash32
    """RFC 9162 root over the block's envelopes."""
    receipt_root: Hash32
    """RFC 9162 root over the block's receipts."""
    log_size: int
    """Size of the ledger-wide transaction log after this block."""
    log_root: Hash32
    """RFC 9162 root of the ledger-wide log after this block."""
    state_root: Hash32
    """State commitment after this block."""
    proposer: str
    """Key id of the node that proposed the block (``genesis`` for block 0)."""
    seal: JsonObject
    """Orderer evidence, e.g. ``{"kind": "solo", "from": 10, "to": 12}``."""

    def to_bytes(self) -> bytes:
        """Canonical header bytes."""
        return canonical_bytes(
            {
                "chain": self.chain,
                "height": self.height,
                "log_root": b64u_encode(self.log_root),
                "log_size": self.log_size,
                "prev": b64u_encode(self.prev),
                "proposer": self.proposer,
                "receipt_root": b64u_encode(self.receipt_root),
                "seal": self.seal,
                "state_root": b64u_encode(self.state_root),
                "time": self.time,
                "tx_root": b64u_encode(self.tx_root),
                "txs": self.txs,
            }
        )


def header_hash(header_bytes: bytes) -> Hash32:
    """The block hash: tagged hash of the canonical header bytes."""
    return tagged_hash(HEADER_TAG, header_bytes)


def seal_signing_bytes(hash_: bytes) -> bytes:
    """What the proposer signs for a block whose header hash is ``hash_``."""
    return pae(SEAL_TAG, hash_)


def _hash(obj: Mapping[str, Any], name: str) -> Hash32:
    value = b64u_decode(obj[name], what=f"header.{name}")
    if len(value) != 32:
        raise ValidationError(f"header.{name}: got {len(value)} bytes, want 32")
    return Hash32(value)


def _int(obj: Mapping[str, Any], name: str) -> int:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
        raise ValidationError(f"header.{name}: want a non-negative integer")
    return value


def parse_header(data: bytes) -> BlockHeader:
    """Parse canonical header bytes strictly."""
    obj = decode_canonical(data, limits=HEADER_LIMITS, what="header")
    if not isinstance(obj, Mapping) or set(obj) != set(_FIELDS):
        raise ValidationError(f"header: want exactly the fields {sorted(_FIELDS)}")
    chain, proposer, seal = obj["chain"], obj["proposer"], obj["seal"]
    if not isinstance(chain, str) or not isinstance(proposer, str):
        raise ValidationError("header.chain and header.proposer: want strings")
    if not isinstance(seal, Mapping):
        raise ValidationError("header.seal: want an object")
    return BlockHeader(
        chain=chain,
        height=_int(obj, "height"),
        prev=_hash(obj, "prev"),
        time=_int(obj, "time"),
        txs=_int(obj, "txs"),
        tx_root=_hash(obj, "tx_root"),
        receipt_root=_hash(obj, "receipt_root"),
        log_size=_int(obj, "log_size"),
        log_root=_hash(obj, "log_root"),
        state_root=_hash(obj, "state_root"),
        proposer=proposer,
        seal=seal,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Seal:
    """The proposer's signature over a header hash."""

    alg: str
    """Signature algorithm."""
    kid: str
    """Key id of the proposer's node key."""
    sig: bytes
    """The signature over :func:`seal_signing_bytes`."""

    def to_bytes(self) -> bytes:
        """Canonical seal bytes (stored next to the header)."""
        return canonical_bytes({"alg": self.alg, "kid": self.kid, "sig": b64u_encode(self.sig)})


def parse_seal(data: bytes) -> Seal:
    """Parse stored seal bytes strictly."""
    obj = decode_canonical(data, limits=SEAL_LIMITS, what="seal")
    if not isinstance(obj, Mapping) or set(obj) != {"alg", "kid", "sig"}:
        raise ValidationError("seal: want exactly the fields alg, kid, sig")
    alg, kid, sig = obj["alg"], obj["kid"], obj["sig"]
    if not isinstance(alg, str) or not isinstance(kid, str) or not isinstance(sig, str):
        raise ValidationError("seal: alg, kid and sig must be strings")
    return Seal(alg=alg, kid=kid, sig=b64u_decode(sig, what="seal.sig"))


CONSORTIUM_PROPOSER = "consortium"
"""``proposer`` of a consortium block: no single node proposes it."""
CONSORTIUM_SEAL_KIND = "etcd"
"""``seal.kind`` of a consortium block."""


def consortium_block_time(prev_time: int, proposed: int, newest_created: int, skew: int) -> int:
    """Block time of a consortium block, a pure function of ordered data.

    The proposer's clock ``proposed`` is bounded ahead by ``skew`` (``max_clock_skew_ms``)
    relative to the newest ``created`` among the block's client-signed transactions, and
    never goes below the previous block's time: a faulty proposer cannot move the chain's
    clock further ahead than its own clients' signed times allow.
    """
    return max(prev_time, min(proposed, newest_created + skew))


def sign_header(header_bytes: bytes, key: PrivateKey) -> Seal:
    """Seal a header with the proposer's node key."""
    return Seal(
        alg=key.alg, kid=key.kid, sig=key.sign(seal_signing_bytes(header_hash(header_bytes)))
    )
