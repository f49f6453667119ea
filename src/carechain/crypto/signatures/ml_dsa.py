"""ML-DSA-65 (FIPS 204) through ``cryptography`` (OpenSSL).

The private key is the 32-byte seed ξ; signing is hedged (randomised) as FIPS 204 recommends,
so the same body signed twice gives two different signatures: transaction ids therefore hash
the body, never the signature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa


@dataclass(frozen=True, slots=True)
class _MLDSA65Signer:
    key: mldsa.MLDSA65PrivateKey
    public: bytes

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


class MLDSA65:
    """The ``ml-dsa-65`` scheme."""

    alg = "ml-dsa-65"
    public_key_size = 1952
    signature_size = 3309

    def generate(self) -> bytes:
        return os.urandom(32)

    def public_key(self, private: bytes) -> bytes:
        key = mldsa.MLDSA65PrivateKey.from_seed_bytes(private)
        return key.public_key().public_bytes_raw()

    def sign(self, private: bytes, message: bytes) -> bytes:
        return mldsa.MLDSA65PrivateKey.from_seed_bytes(private).sign(message)

    def signer(self, private: bytes) -> _MLDSA65Signer:
        key = mldsa.MLDSA65PrivateKey.from_seed_bytes(private)  # expanded once
        return _MLDSA65Signer(key, key.public_key().public_bytes_raw())

    def check(self, public: bytes, message: bytes, signature: bytes) -> bool:
        if len(public) != self.public_key_size or len(signature) != self.signature_size:
            return False
        try:
            key = mldsa.MLDSA65PublicKey.from_public_bytes(public)
            key.verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True
