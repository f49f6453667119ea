"""Transactions: the body, its signing bytes, the envelope and strict parsing.

Wire format of an envelope (canonical JSON, stored verbatim)::

    {"body": "<base64url of the canonical body bytes>", "sigs": ["<base64url sig>", ...]}

The body (canonical JSON, restricted model)::

    {"args": {...}, "chain": "<chain id>", "created": <ms>, "kind": "identity.register@1",
     "nonce": "<base64url, 16 bytes>", "sender": "<account id>",
     "signers": [{"alg": "ed25519", "kid": "<key id>"}, ...]}

``sigs[i]`` is the signature of ``signers[i]`` over :func:`signing_bytes`. The algorithm and
key id of every signer sit inside the signed bytes (no algorithm substitution), and
``tx_id = SHA-256(signing_bytes)``: the same body re-signed has the same id (replay).

Invariants: a ``SignedTx`` is only built by :func:`parse_envelope` or :func:`sign_tx`, so every
instance holds canonical bytes and a body that passed the schema checks; it does NOT imply the
signatures verify (that needs the signer's public key, see ``ledger.auth``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NewType

from carechain.crypto.signatures import ALGORITHMS, PrivateKey
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
from carechain.errors import LimitExceededError, ValidationError

AccountId = NewType("AccountId", str)
TxId = NewType("TxId", bytes)

TX_TAG = "carechain/tx@1"
NONCE_SIZE = 16
MAX_SIGNERS = 4
MAX_ENVELOPE_BYTES = 256 * 1024
ENVELOPE_LIMITS = Limits(max_bytes=MAX_ENVELOPE_BYTES, max_string=64 * 1024, max_items=1000)
BODY_LIMITS = Limits(max_bytes=MAX_ENVELOPE_BYTES, max_string=16 * 1024, max_items=1000)

ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9._:-]{1,63}\Z")
KIND_RE = re.compile(r"^([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)@([1-9][0-9]{0,2})\Z")
KID_RE = re.compile(r"^[0-9a-f]{32}\Z")
_BODY_FIELDS = frozenset({"args", "chain", "created", "kind", "nonce", "sender", "signers"})
_ENVELOPE_FIELDS = frozenset({"body", "sigs"})


def validate_account_id(value: object, *, what: str = "account") -> AccountId:
    """Return ``value`` as an AccountId or raise ValidationError."""
    if not isinstance(value, str) or not ACCOUNT_RE.match(value):
        raise ValidationError(
            f"{what}: {value!r} is not an account id (2-64 chars of a-z 0-9 . _ : -, "
            "starting with a letter or digit)"
        )
    return AccountId(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """One required signer of a transaction."""

    alg: str
    """Signature algorithm id (from the closed registry)."""
    kid: str
    """Key id of the signing key (derived from the public-key record)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TxBody:
    """The signed content of a transaction."""

    chain: str
    """Chain id; a transaction for another chain is rejected."""
    kind: str
    """Contract kind with version, e.g. ``identity.register_patient@1``."""
    sender: AccountId
    """The account that acts."""
    created: int
    """Creation time in Unix milliseconds (must lie within the window around block time)."""
    nonce: bytes
    """16 random bytes: makes otherwise equal bodies distinct."""
    args: JsonObject
    """Kind-specific arguments (validated by the contract)."""
    signers: tuple[Signer, ...]
    """Required signers, in signature order."""

    def to_json(self) -> dict[str, Any]:
        """The body as a JSON value of the restricted model."""
        return {
            "args": self.args,
            "chain": self.chain,
            "created": self.created,
            "kind": self.kind,
            "nonce": b64u_encode(self.nonce),
            "sender": self.sender,
            "signers": [{"alg": s.alg, "kid": s.kid} for s in self.signers],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTx:
    """A parsed envelope with its verbatim bytes."""

    raw: bytes
    """The envelope bytes exactly as received (the Merkle leaf data)."""
    body_bytes: bytes
    """The canonical body bytes."""
    body: TxBody
    """The parsed body."""
    sigs: tuple[bytes, ...]
    """Signatures, parallel to ``body.signers``."""
    tx_id: TxId
    """SHA-256 of the signing bytes."""


def signing_bytes(body_bytes: bytes) -> bytes:
    """The bytes every signer of a transaction signs: PAE(``carechain/tx@1``, body)."""
    return pae(TX_TAG, body_bytes)


def compute_tx_id(body_bytes: bytes) -> TxId:
    """The transaction id: SHA-256 of :func:`signing_bytes`."""
    return TxId(hashlib.sha256(signing_bytes(body_bytes)).digest())


def _field(obj: Mapping[str, Any], name: str, typ: type, what: str) -> Any:
    if name not in obj:
        raise ValidationError(f"{what}: missing field {name!r}", code="missing_field")
    value = obj[name]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ValidationError(f"{what}.{name}: expected {typ.__name__}")
    return value


def parse_body(body_bytes: bytes) -> TxBody:
    """Parse and validate canonical body bytes (schema only, not contract rules)."""
    obj = decode_canonical(body_bytes, limits=BODY_LIMITS, what="body")
    if not isinstance(obj, Mapping):
        raise ValidationError("body: expected a JSON object")
    unknown = set(obj) - _BODY_FIELDS
    if unknown:
        raise ValidationError(f"body: unknown field(s) {sorted(unknown)}", code="unknown_field")
    kind = _field(obj, "kind", str, "body")
    if not KIND_RE.match(kind):
        raise ValidationError(f"body.kind: {kind!r} is not 'contract.action@version'")
    created = _field(obj, "created", int, "body")
    if not 0 <= created <= MAX_SAFE_INT:
        raise ValidationError("body.created: must be a non-negative millisecond timestamp")
    nonce = b64u_decode(_field(obj, "nonce", str, "body"), what="body.nonce")
    if len(nonce) != NONCE_SIZE:
        raise ValidationError(f"body.nonce: got {len(nonce)} bytes, want {NONCE_SIZE}")
    raw_signers = _field(obj, "signers", list, "body")
    if not 1 <= len(raw_signers) <= MAX_SIGNERS:
        raise ValidationError(f"body.signers: want 1 to {MAX_SIGNERS} signers")
    signers = []
    for i, s in enumerate(raw_signers):
        where = f"body.signers[{i}]"
        if not isinstance(s, Mapping) or set(s) != {"alg", "kid"}:
            raise ValidationError(f"{where}: want exactly {{alg, kid}}")
        alg, kid = _field(s, "alg", str, where), _field(s, "kid", str, where)
        if alg not in ALGORITHMS:
            raise ValidationError(f"{where}.alg: unknown algorithm {alg!r}")
        if not KID_RE.match(kid):
            raise ValidationError(f"{where}.kid: not a key id (32 lowercase hex)")
        signers.append(Signer(alg=alg, kid=kid))
    if len({s.kid for s in signers}) != len(signers):
        raise ValidationError("body.signers: the same key is listed twice")
    return TxBody(
        chain=_field(obj, "chain", str, "body"),
        kind=kind,
        sender=validate_account_id(_field(obj, "sender", str, "body"), what="body.sender"),
        created=created,
        nonce=nonce,
        args=_field(obj, "args", Mapping, "body"),
        signers=tuple(signers),
    )


def parse_envelope(raw: bytes) -> SignedTx:
    """Parse envelope bytes strictly (canonical, limits, schema). Signatures not checked."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise LimitExceededError(
            f"envelope: {len(raw)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}"
        )
    obj = decode_canonical(raw, limits=ENVELOPE_LIMITS, what="envelope")
    if not isinstance(obj, Mapping):
        raise ValidationError("envelope: want a JSON object {body, sigs}")
    if set(obj) != _ENVELOPE_FIELDS:
        code = "unknown_field" if set(obj) - _ENVELOPE_FIELDS else "missing_field"
        raise ValidationError("envelope: want exactly the fields 'body' and 'sigs'", code=code)
    body_bytes = b64u_decode(_field(obj, "body", str, "envelope"), what="envelope.body")
    body = parse_body(body_bytes)
    raw_sigs = _field(obj, "sigs", list, "envelope")
    if len(raw_sigs) != len(body.signers):
        raise ValidationError(
            f"envelope.sigs: got {len(raw_sigs)} signatures, want {len(body.signers)} "
            "(one per body.signers entry)",
            code="signature_count",
        )
    sigs = tuple(
        b64u_decode(s, what=f"envelope.sigs[{i}]", max_bytes=8192) for i, s in enumerate(raw_sigs)
    )
    return SignedTx(
        raw=raw, body_bytes=body_bytes, body=body, sigs=sigs, tx_id=compute_tx_id(body_bytes)
    )


def encode_envelope(body_bytes: bytes, sigs: Sequence[bytes]) -> bytes:
    """Assemble canonical envelope bytes."""
    return canonical_bytes(
        {"body": b64u_encode(body_bytes), "sigs": [b64u_encode(s) for s in sigs]}
    )


def sign_tx(body: TxBody, keys: Sequence[PrivateKey]) -> SignedTx:
    """Sign ``body`` with ``keys`` (in ``body.signers`` order) and return the parsed result."""
    if [(k.alg, k.kid) for k in keys] != [(s.alg, s.kid) for s in body.signers]:
        raise ValidationError("sign_tx: keys do not match body.signers (alg, kid, order)")
    body_bytes = canonical_bytes(body.to_json())
    msg = signing_bytes(body_bytes)
    return parse_envelope(encode_envelope(body_bytes, [k.sign(msg) for k in keys]))


def make_tx(
    *,
    chain: str,
    kind: str,
    sender: str,
    args: JsonObject,
    keys: Sequence[PrivateKey],
    created: int,
    nonce: bytes,
) -> SignedTx:
    """Build and sign a transaction. The caller supplies time and a fresh random ``nonce``."""
    body = TxBody(
        chain=chain,
        kind=kind,
        sender=validate_account_id(sender, what="sender"),
        created=created,
        nonce=nonce,
        args=args,
        signers=tuple(Signer(alg=k.alg, kid=k.kid) for k in keys),
    )
    return sign_tx(body, keys)
