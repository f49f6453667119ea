"""The closed registry of signature schemes, keyed by algorithm id.

Adding a scheme is a code change reviewed like any other: there is no plug-in path, and an
unknown algorithm id is a validation error, never a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from carechain.crypto.signatures.base import PublicKeyRecord, SignatureScheme, key_id
from carechain.crypto.signatures.ed25519 import Ed25519
from carechain.crypto.signatures.ml_dsa import MLDSA65
from carechain.errors import SignatureError, ValidationError

_SCHEMES: Mapping[str, SignatureScheme] = MappingProxyType(
    {s.alg: s for s in (Ed25519(), MLDSA65())}
)

ALGORITHMS: tuple[str, ...] = tuple(sorted(_SCHEMES))
"""Every algorithm id the registry knows, sorted."""


def get_scheme(alg: str) -> SignatureScheme:
    """Return the scheme for ``alg`` or raise :class:`ValidationError`."""
    try:
        return _SCHEMES[alg]
    except (KeyError, TypeError):
        raise ValidationError(
            f"unknown signature algorithm {alg!r}; supported: {', '.join(ALGORITHMS)}"
        ) from None


def check_signature(alg: str, public: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` verifies; False for unknown algorithms or malformed inputs."""
    scheme = _SCHEMES.get(alg)
    return scheme is not None and scheme.check(public, message, signature)


def verify_signature(alg: str, public: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` verifies."""
    if not get_scheme(alg).check(public, message, signature):
        raise SignatureError(f"{alg} signature does not verify for key {key_id(alg, public)}")


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A private key with its algorithm; never written unencrypted by carechain."""

    alg: str
    """Algorithm id."""
    private: bytes = field(repr=False)
    """Private key bytes (seed)."""

    @property
    def public(self) -> bytes:
        """The matching public key."""
        return get_scheme(self.alg).public_key(self.private)

    @property
    def record(self) -> PublicKeyRecord:
        """The public-key record."""
        return PublicKeyRecord(alg=self.alg, public=self.public)

    @property
    def kid(self) -> str:
        """The key id."""
        return key_id(self.alg, self.public)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with this key."""
        return get_scheme(self.alg).sign(self.private, message)


def generate_key(alg: str = "ed25519") -> PrivateKey:
    """Generate a new private key for ``alg``."""
    return PrivateKey(alg, get_scheme(alg).generate())
