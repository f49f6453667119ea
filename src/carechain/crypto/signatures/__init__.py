"""Signature schemes keyed by algorithm id, in a closed registry.

Use :func:`get_scheme` to obtain a scheme; an unknown id raises ``ValidationError``.
"""

from carechain.crypto.signatures.base import (
    PublicKeyRecord,
    SignatureScheme,
    key_id,
)
from carechain.crypto.signatures.registry import (
    ALGORITHMS,
    PrivateKey,
    check_signature,
    generate_key,
    get_scheme,
    verify_signature,
)

__all__ = [
    "ALGORITHMS",
    "PrivateKey",
    "PublicKeyRecord",
    "SignatureScheme",
    "check_signature",
    "generate_key",
    "get_scheme",
    "key_id",
    "verify_signature",
]
