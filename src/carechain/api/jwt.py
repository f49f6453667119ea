"""Compact JWS (RFC 7515) for SMART Backend Services client assertions (RFC 7523).

Only what client authentication needs: a JWT header ``{"alg", "kid", "typ": "JWT"}`` signed
with a ledger key. ``alg`` is ``EdDSA`` (RFC 8037) for ``ed25519`` keys and ``ML-DSA-65``
(IETF draft-ietf-cose-dilithium / JOSE ML-DSA) for ``ml-dsa-65`` keys; nothing else is ever
accepted (no ``none``, no HMAC: no algorithm confusion). The signature covers the ASCII bytes
``base64url(header) "." base64url(payload)`` exactly as received (RFC 7515 §5.2 step 8).

:func:`decode_jws` checks form only (three strict base64url parts, JSON objects without
duplicate keys or NaN, bounded size); whether the signature verifies and the claims hold is
the authorization server's decision (``carechain.api.auth``). The SDK signs with
:func:`make_client_assertion`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_decode, b64u_encode
from carechain.errors import ValidationError

JWS_TO_LEDGER_ALG: Mapping[str, str] = {"EdDSA": "ed25519", "ML-DSA-65": "ml-dsa-65"}
"""JOSE ``alg`` → ledger algorithm id."""
LEDGER_TO_JWS_ALG: Mapping[str, str] = {v: k for k, v in JWS_TO_LEDGER_ALG.items()}
"""Ledger algorithm id → JOSE ``alg``."""

MAX_JWS_CHARS = 16 * 1024
"""Largest compact JWS accepted (an ML-DSA-65 signature is ~4.4k characters)."""
MAX_ASSERTION_LIFETIME_S = 300
"""Most seconds a client assertion may be valid for (SMART: no more than five minutes)."""
DEFAULT_ASSERTION_LIFETIME_S = 240


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedJws:
    """A compact JWS split and decoded, not yet verified."""

    header: dict[str, Any]
    """The protected header."""
    claims: dict[str, Any]
    """The payload as a JSON object (JWT claims set)."""
    signing_input: bytes
    """``header_b64 "." payload_b64`` as received: what the signature covers."""
    signature: bytes
    """The signature bytes."""


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValidationError(f"{name} is not JSON")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc.message}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"{what}: not UTF-8 JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{what}: want a JSON object")
    return value


def encode_jws(header: Mapping[str, Any], claims: Mapping[str, Any], key: PrivateKey) -> str:
    """Sign ``claims`` under ``header`` with ``key``; returns the compact serialisation."""
    signing_input = f"{b64u_encode(_json_bytes(header))}.{b64u_encode(_json_bytes(claims))}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64u_encode(signature)}"


def make_client_assertion(
    key: PrivateKey,
    account: str,
    aud: str,
    now_s: int,
    *,
    lifetime_s: int = DEFAULT_ASSERTION_LIFETIME_S,
    jti: str | None = None,
) -> str:
    """A SMART Backend Services client assertion: ``account`` authenticates with ``key``.

    ``aud`` is the token endpoint URL; ``now_s`` the current Unix time in seconds.
    """
    alg = LEDGER_TO_JWS_ALG.get(key.alg)
    if alg is None:
        raise ValidationError(f"no JOSE algorithm for {key.alg!r} keys")
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    claims = {
        "aud": aud,
        "exp": now_s + lifetime_s,
        "iat": now_s,
        "iss": account,
        "jti": jti or secrets.token_urlsafe(18),
        "sub": account,
    }
    return encode_jws(header, claims, key)


def decode_jws(token: str) -> DecodedJws:
    """Split and decode a compact JWS strictly (form only; raises ValidationError)."""
    if len(token) > MAX_JWS_CHARS:
        raise ValidationError(f"client_assertion: longer than {MAX_JWS_CHARS} characters")
    if not token.isascii():
        raise ValidationError("client_assertion: not ASCII")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValidationError("client_assertion: want a compact JWS 'header.payload.signature'")
    header_b64, payload_b64, sig_b64 = parts
    header = _json_object(b64u_decode(header_b64, what="JWS header"), "JWS header")
    claims = _json_object(b64u_decode(payload_b64, what="JWT claims"), "JWT claims")
    signature = b64u_decode(sig_b64, what="JWS signature", max_bytes=8192)
    return DecodedJws(
        header=header,
        claims=claims,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )


__all__ = [
    "DEFAULT_ASSERTION_LIFETIME_S",
    "JWS_TO_LEDGER_ALG",
    "LEDGER_TO_JWS_ALG",
    "MAX_ASSERTION_LIFETIME_S",
    "MAX_JWS_CHARS",
    "DecodedJws",
    "decode_jws",
    "encode_jws",
    "make_client_assertion",
]
