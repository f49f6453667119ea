"""The closed registry of signature schemes, keyed by algorithm id.

Adding a scheme is a code change reviewed like any other: there is no plug-in path, and an
unknown algorithm id is a validation error, never a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from carechain.crypto.signatures.base import PublicKeyRecord, SignatureScheme, Signer, key_id
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
    """A private key with its algorithm; never written unencrypted by carechain.

    The key is loaded for signing once, on first use, and kept with the object (with its
    public key and kid), so a node key that signs every audit entry does not re-expand its
    seed per signature.
    """

    alg: str
    """Algorithm id."""
    private: bytes = field(repr=False)
    """Private key bytes (seed)."""
    _loaded: tuple[Signer, str] | None = field(default=None, init=False, repr=False, compare=False)
    """(signer, kid), set on first use."""

    def _load(self) -> tuple[Signer, str]:
        loaded = self._loaded
        if loaded is None:  # a race loads twice, harmlessly: both are the same key
            signer = get_scheme(self.alg).signer(self.private)
            loaded = (signer, key_id(self.alg, signer.public))
            object.__setattr__(self, "_loaded", loaded)
        return loaded

    def __reduce__(self) -> tuple[type[PrivateKey], tuple[str, bytes]]:
        return (PrivateKey, (self.alg, self.private))  # the loaded key stays in this process

    @property
    def public(self) -> bytes:
        """The matching public key."""
        return self._load()[0].public

    @property
    def record(self) -> PublicKeyRecord:
        """The public-key record."""
        return PublicKeyRecord(alg=self.alg, public=self.public)

    @property
    def kid(self) -> str:
        """The key id."""
        return self._load()[1]

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with this key."""
        return self._load()[0].sign(message)


def generate_key(alg: str = "ed25519") -> PrivateKey:
    """Generate a new private key for ``alg``."""
    return PrivateKey(alg, get_scheme(alg).generate())
