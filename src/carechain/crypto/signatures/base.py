"""The signature-scheme protocol, public-key records and key ids.

A key id is derived from the public-key record, so a kid names exactly one (alg, key) pair:
``kid = hex(tagged_hash("carechain/key@1", canonical({"alg": alg, "pub": b64u(pub)}))[:16])``.
The algorithm is part of the record: the same key bytes under another algorithm have another id,
which defeats algorithm substitution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from carechain.crypto.hashing import tagged_hash
from carechain.encoding import b64u_encode, canonical_bytes

KEY_TAG = "carechain/key@1"


def key_id(alg: str, public: bytes) -> str:
    """The key id of ``public`` under ``alg``: 32 lowercase hex characters."""
    record = canonical_bytes({"alg": alg, "pub": b64u_encode(public)})
    return tagged_hash(KEY_TAG, record)[:16].hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeyRecord:
    """A public key with its algorithm; the unit that key ids are derived from."""

    alg: str
    """Algorithm id from the registry, e.g. ``ed25519`` or ``ml-dsa-65``."""
    public: bytes
    """Raw public-key bytes in the scheme's standard encoding."""

    @property
    def kid(self) -> str:
        """The key id derived from this record."""
        return key_id(self.alg, self.public)


class Signer(Protocol):
    """A private key loaded for signing (its expansion done once)."""

    @property
    def public(self) -> bytes:
        """The matching public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``."""
        ...


class SignatureScheme(Protocol):
    """One signature algorithm. Implementations are stateless."""

    alg: str
    public_key_size: int
    signature_size: int

    def generate(self) -> bytes:
        """Return a new private key (seed) as bytes."""
        ...

    def public_key(self, private: bytes) -> bytes:
        """Derive the public key from a private key."""
        ...

    def sign(self, private: bytes, message: bytes) -> bytes:
        """Sign ``message``."""
        ...

    def signer(self, private: bytes) -> Signer:
        """Load ``private`` once for many signatures (what a key used repeatedly keeps)."""
        ...

    def check(self, public: bytes, message: bytes, signature: bytes) -> bool:
        """Return True iff ``signature`` is valid for ``message`` under ``public`` (strict)."""
        ...
