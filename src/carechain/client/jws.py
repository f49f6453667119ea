"""A small compact-JWS encoder for SMART Backend Services client assertions.

SMART App Launch "Backend Services" authenticates a client with a signed JWT (RFC 7523
client assertion) posted to the token endpoint. This module only *builds* assertions; the
server verifies them (``carechain.api.jwt``, which the SDK must not import).

Algorithms: ``ed25519`` keys sign as JWS ``EdDSA`` (RFC 8037); ``ml-dsa-65`` keys as
``ML-DSA-65`` (draft-ietf-cose-dilithium). The header's ``kid`` is the carechain key id.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

import orjson

from carechain.crypto.signatures import PrivateKey
from carechain.errors import ValidationError

JWS_ALGORITHMS: Mapping[str, str] = {"ed25519": "EdDSA", "ml-dsa-65": "ML-DSA-65"}
"""carechain algorithm id → JWS ``alg``."""

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
"""SMART Backend Services: ``exp`` no more than five minutes in the future."""


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_jws(payload: Mapping[str, Any], key: PrivateKey, *, typ: str = "JWT") -> str:
    """``BASE64URL(header) . BASE64URL(payload) . BASE64URL(signature)`` (RFC 7515 §7.1)."""
    alg = JWS_ALGORITHMS.get(key.alg)
    if alg is None:
        raise ValidationError(
            f"no JWS algorithm for {key.alg!r}; use one of {sorted(JWS_ALGORITHMS)}"
        )
    header = {"alg": alg, "kid": key.kid, "typ": typ}
    signing_input = (
        b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
        + "."
        + b64url(orjson.dumps(dict(payload), option=orjson.OPT_SORT_KEYS))
    )
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def client_assertion(
    client_id: str,
    token_url: str,
    key: PrivateKey,
    *,
    now: int,
    lifetime: int = MAX_ASSERTION_LIFETIME,
    jti: str | None = None,
) -> str:
    """A SMART Backend Services client assertion (``iss = sub = client_id``, ``aud``)."""
    if not 0 < lifetime <= MAX_ASSERTION_LIFETIME:
        raise ValidationError(f"assertion lifetime: got {lifetime} s, want 1 to 300")
    claims = {
        "aud": token_url,
        "exp": now + lifetime,
        "iat": now,
        "iss": client_id,
        "jti": jti or os.urandom(16).hex(),
        "sub": client_id,
    }
    return encode_jws(claims, key)


__all__ = ["ASSERTION_TYPE", "JWS_ALGORITHMS", "b64url", "client_assertion", "encode_jws"]
