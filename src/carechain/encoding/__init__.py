"""Canonical bytes: RFC 8785 JSON over a restricted value model, framing, base64url.

Everything carechain hashes or signs is produced here, from one named function each.
"""

from carechain.encoding.b64 import b64u_decode, b64u_encode
from carechain.encoding.canonical import (
    MAX_SAFE_INT,
    JsonObject,
    JsonValue,
    canonical_bytes,
    validate_value,
)
from carechain.encoding.decode import DEFAULT_LIMITS, Limits, decode_canonical
from carechain.encoding.framing import pae

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_SAFE_INT",
    "JsonObject",
    "JsonValue",
    "Limits",
    "b64u_decode",
    "b64u_encode",
    "canonical_bytes",
    "decode_canonical",
    "pae",
    "validate_value",
]
