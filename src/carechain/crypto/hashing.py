"""SHA-256 and domain-separated (tagged) hashing.

``tagged_hash(tag, body)`` is ``SHA-256(PAE(tag, body))``: two structures of different types
can never share a hash even when their bodies are equal.
"""

from __future__ import annotations

import hashlib
from typing import NewType

from carechain.encoding.framing import pae

Hash32 = NewType("Hash32", bytes)
"""A 32-byte SHA-256 digest."""

ZERO_HASH = Hash32(b"\x00" * 32)


def sha256(data: bytes) -> Hash32:
    """Plain SHA-256 (used where a standard prescribes it, e.g. RFC 9162 leaves)."""
    return Hash32(hashlib.sha256(data).digest())


def tagged_hash(tag: str, body: bytes) -> Hash32:
    """SHA-256 over the PAE framing of ``body`` under ``tag``."""
    return Hash32(hashlib.sha256(pae(tag, body)).digest())
