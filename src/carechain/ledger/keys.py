"""The key registry in state, and public-key resolution for signature checks.

State layout (written by the identity contract and genesis)::

    key/<kid> -> {"account": id, "alg": alg, "pub": b64u, "since": height,
                  "status": "active" | "revoked", "revoked_at"?: height}

Invariants: a key record is never deleted (revocation only changes ``status``), so a key found
when a transaction is submitted is still found when its block executes; a kid is derived from
(alg, pub), so its public key can never change.

Resolution for *cryptographic* checks: the state record, else a key the transaction itself
introduces in ``args.keys`` (``[{"alg", "pub"}]``, e.g. a patient registering, or a rotation
proving possession of the new key). Whether that key may *authorise* the transaction is decided
at execution (``contracts.identity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from carechain.crypto.signatures import check_signature, key_id
from carechain.encoding import b64u_decode
from carechain.ledger.state import StateReader
from carechain.ledger.tx import SignedTx, signing_bytes


def key_state_key(kid: str) -> str:
    """State key of a key record."""
    return f"key/{kid}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SigCheck:
    """One signature to check: everything a worker process needs, as plain bytes."""

    alg: str
    """Algorithm id."""
    public: bytes
    """Public key."""
    message: bytes
    """Signing bytes."""
    signature: bytes
    """The signature."""


def introduced_keys(tx: SignedTx) -> dict[str, tuple[str, bytes]]:
    """Keys carried in ``args.keys`` of ``tx``, by kid (malformed entries ignored here)."""
    out: dict[str, tuple[str, bytes]] = {}
    keys = tx.body.args.get("keys")
    if isinstance(keys, list):
        for entry in keys[:8]:
            if isinstance(entry, Mapping) and isinstance(entry.get("alg"), str):
                pub_text = entry.get("pub")
                if isinstance(pub_text, str):
                    try:
                        pub = b64u_decode(pub_text, max_bytes=4096)
                    except Exception:  # noqa: S112 - malformed entries are the contract's to reject
                        continue
                    out[key_id(str(entry["alg"]), pub)] = (str(entry["alg"]), pub)
    return out


def resolve_sig_checks(tx: SignedTx, state: StateReader) -> list[SigCheck] | None:
    """The signature checks of ``tx``, or None when a signer's public key is unknown."""
    msg = signing_bytes(tx.body_bytes)
    checks = []
    introduced: dict[str, tuple[str, bytes]] | None = None
    for signer, sig in zip(tx.body.signers, tx.sigs, strict=True):
        raw = state.find_state(key_state_key(signer.kid))
        if raw is not None:
            rec = orjson.loads(raw)
            alg, pub = rec["alg"], b64u_decode(rec["pub"])
        else:
            if introduced is None:
                introduced = introduced_keys(tx)
            if signer.kid not in introduced:
                return None
            alg, pub = introduced[signer.kid]
        if alg != signer.alg:
            # The kid is bound to (alg, pub): a different alg is a substitution attempt.
            alg = signer.alg
            pub = b""
        checks.append(SigCheck(alg=alg, public=pub, message=msg, signature=sig))
    return checks


def run_sig_checks(checks: list[SigCheck]) -> bool:
    """True iff every check verifies."""
    return all(check_signature(c.alg, c.public, c.message, c.signature) for c in checks)


def node_state_key(kid: str) -> str:
    """State key of a block-proposer (node) key record: ``{"org", "alg", "pub", "name"}``."""
    return f"node/{kid}"
