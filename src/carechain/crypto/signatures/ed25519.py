"""Ed25519 (RFC 8032) through libsodium (pynacl).

libsodium's ``crypto_sign_open`` is strict: it rejects non-canonical ``S``,
non-canonical and small-order public keys and ``R`` values, as carechain requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing
import nacl.utils


@dataclass(frozen=True, slots=True)
class _Ed25519Signer:
    key: nacl.signing.SigningKey
    public: bytes

    def sign(self, message: bytes) -> bytes:
        return bytes(self.key.sign(message).signature)


class Ed25519:
    """The ``ed25519`` scheme."""

    alg = "ed25519"
    public_key_size = 32
    signature_size = 64

    def generate(self) -> bytes:
        return bytes(nacl.utils.random(32))

    def public_key(self, private: bytes) -> bytes:
        return bytes(nacl.signing.SigningKey(private).verify_key)

    def sign(self, private: bytes, message: bytes) -> bytes:
        return bytes(nacl.signing.SigningKey(private).sign(message).signature)

    def signer(self, private: bytes) -> _Ed25519Signer:
        key = nacl.signing.SigningKey(private)  # the seed expanded once
        return _Ed25519Signer(key, bytes(key.verify_key))

    def check(self, public: bytes, message: bytes, signature: bytes) -> bool:
        if len(public) != 32 or len(signature) != 64:
            return False
        try:
            nacl.bindings.crypto_sign_open(signature + message, public)
        except nacl.exceptions.BadSignatureError:
            return False
        except (nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True
