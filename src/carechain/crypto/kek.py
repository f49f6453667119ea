"""The node's key-encryption key (KEK): wraps per-record data keys (RFC 3394 AES key wrap).

A KEK file (``DIR/keys/record-kek.json``) is one canonical JSON object (RFC 8785)::

    {"v":1,"type":"carechain-kek","kek_id":hex32,
     "kdf":{"name":"scrypt","n":...,"r":8,"p":1,"salt":b64u},
     "aead":{"name":"aes-256-gcm","nonce":b64u},"ct":b64u}

``ct`` is AES-256-GCM of the 32-byte KEK under ``scrypt(password, salt, n, r, p)``, with the
canonical encoding of every other field (the *header*) as associated data — the same scheme
and helpers as :mod:`carechain.crypto.keystore`.

Invariants:

* a KEK file is never written in clear, is mode 0600 in a 0700 directory, is created
  atomically and is never overwritten (``ConflictError``, code ``kek_exists``);
* loading checks, in this order: canonical JSON and structure (``ValidationError``), the AEAD
  tag (``AuthenticationError``, code ``bad_kek_password``: wrong password or any changed byte),
  then that the key's id is ``kek_id`` (``VerificationError``);
* ``kek_id`` is ``SHA-256(PAE("carechain/kek-id@1", key))`` truncated to 16 bytes, hex: it
  names the KEK that wrapped a data key (for rotation) and reveals nothing usable about it;
* :meth:`KEK.unwrap` raises ``VerificationError`` for a wrong KEK or any changed byte of the
  wrapped key (RFC 3394 §2.2.3 integrity check), never returns a wrong key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from carechain.crypto.hashing import tagged_hash
from carechain.crypto.keystore import (
    DEFAULT_SCRYPT_N,
    NONCE_SIZE,
    SALT_SIZE,
    SCRYPT_P,
    SCRYPT_R,
    TAG_SIZE,
    check_password,
    derive_password_key,
    parse_const,
    parse_fields,
    parse_int,
    parse_str,
    validate_scrypt_params,
    write_new_private_file,
)
from carechain.encoding import Limits, b64u_decode, b64u_encode, canonical_bytes, decode_canonical
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    InfrastructureError,
    NotFoundError,
    ValidationError,
    VerificationError,
)

FORMAT_VERSION = 1
FILE_TYPE = "carechain-kek"
KEK_FILE_NAME = "record-kek.json"
"""File name of the record KEK inside the keys directory (``DIR/keys/record-kek.json``)."""
KEK_SIZE = 32
"""AES-256 key-encryption key, in bytes."""
DATA_KEY_SIZE = 32
"""AES-256 data key, in bytes."""
WRAPPED_KEY_SIZE = DATA_KEY_SIZE + 8
"""RFC 3394 output: the key plus one 64-bit integrity block."""
KEK_ID_TAG = "carechain/kek-id@1"

_KEK_ID_RE = re.compile(r"[0-9a-f]{32}")
_LIMITS = Limits(max_bytes=4096, max_string=1024, max_items=16)
_TOP_FIELDS = frozenset({"v", "type", "kek_id", "kdf", "aead", "ct"})
_KDF_FIELDS = frozenset({"name", "n", "r", "p", "salt"})
_AEAD_FIELDS = frozenset({"name", "nonce"})


def kek_id_of(key: bytes) -> str:
    """The id of KEK ``key``: 32 lowercase hex characters of its tagged SHA-256."""
    return tagged_hash(KEK_ID_TAG, key)[:16].hex()


def kek_path(data_dir: Path | str) -> Path:
    """Where the record KEK of the chain in ``data_dir`` lives."""
    return Path(data_dir) / "keys" / KEK_FILE_NAME


@dataclass(frozen=True, slots=True)
class KEK:
    """A key-encryption key held in memory; wraps and unwraps 32-byte data keys."""

    key: bytes = field(repr=False)
    """The 32 secret bytes (never printed)."""
    kek_id: str = field(init=False)
    """Id of the key (:func:`kek_id_of`), stored beside every key it wraps."""

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEK_SIZE:
            raise ValidationError(f"a KEK is {KEK_SIZE} bytes")
        object.__setattr__(self, "kek_id", kek_id_of(self.key))

    @classmethod
    def generate(cls) -> KEK:
        """A fresh random KEK (not stored anywhere: see :func:`create_kek`)."""
        return cls(os.urandom(KEK_SIZE))

    def wrap(self, data_key: bytes) -> bytes:
        """RFC 3394 AES key wrap of a 32-byte ``data_key``: 40 bytes."""
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_SIZE:
            raise ValidationError(f"a data key is {DATA_KEY_SIZE} bytes")
        return aes_key_wrap(self.key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        """The data key inside ``wrapped``; ``VerificationError`` for a wrong KEK or tampering."""
        if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_KEY_SIZE:
            raise VerificationError(
                f"wrapped key: got {len(wrapped) if isinstance(wrapped, bytes) else '?'} bytes, "
                f"want {WRAPPED_KEY_SIZE}",
                code="bad_wrapped_key",
            )
        try:
            return aes_key_unwrap(self.key, wrapped)  # RFC 3394 §2.2.3: integrity check
        except InvalidUnwrap:
            raise VerificationError(
                f"wrapped key does not unwrap under KEK {self.kek_id} "
                "(wrong KEK or the wrapped key was changed)",
                code="bad_wrapped_key",
            ) from None


def encrypt_kek(kek: KEK, password: bytes, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """The canonical KEK-file bytes holding ``kek`` encrypted under ``password``."""
    validate_scrypt_params(scrypt_n, what="scrypt")
    check_password(password)
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    header: dict[str, object] = {
        "v": FORMAT_VERSION,
        "type": FILE_TYPE,
        "kek_id": kek.kek_id,
        "kdf": {
            "name": "scrypt",
            "n": scrypt_n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": b64u_encode(salt),
        },
        "aead": {"name": "aes-256-gcm", "nonce": b64u_encode(nonce)},
    }
    aad = canonical_bytes(header)
    file_key = derive_password_key(password, salt, n=scrypt_n)
    ct = AESGCM(file_key).encrypt(nonce, kek.key, aad)
    return canonical_bytes({**header, "ct": b64u_encode(ct)})


def decrypt_kek(data: bytes, password: bytes) -> KEK:
    """Parse and decrypt KEK-file bytes (see the module docstring for the order of checks)."""
    w = "KEK file"
    top = parse_fields(decode_canonical(bytes(data), limits=_LIMITS, what=w), _TOP_FIELDS, w)
    parse_const(top, "v", FORMAT_VERSION, w)
    parse_const(top, "type", FILE_TYPE, w)
    kek_id = parse_str(top, "kek_id", w)
    if _KEK_ID_RE.fullmatch(kek_id) is None:
        raise ValidationError(f"{w}.kek_id: expected 32 lowercase hex characters")
    kdf = parse_fields(top["kdf"], _KDF_FIELDS, f"{w}.kdf")
    parse_const(kdf, "name", "scrypt", f"{w}.kdf")
    n, r, p = (parse_int(kdf, k, f"{w}.kdf") for k in ("n", "r", "p"))
    validate_scrypt_params(n, r, p, what=f"{w}.kdf")
    salt = b64u_decode(parse_str(kdf, "salt", f"{w}.kdf"), what=f"{w}.kdf.salt")
    if not SALT_SIZE <= len(salt) <= 64:
        raise ValidationError(f"{w}.kdf.salt: got {len(salt)} bytes, want 16 to 64")
    aead = parse_fields(top["aead"], _AEAD_FIELDS, f"{w}.aead")
    parse_const(aead, "name", "aes-256-gcm", f"{w}.aead")
    nonce = b64u_decode(parse_str(aead, "nonce", f"{w}.aead"), what=f"{w}.aead.nonce")
    if len(nonce) != NONCE_SIZE:
        raise ValidationError(f"{w}.aead.nonce: got {len(nonce)} bytes, want {NONCE_SIZE}")
    ct = b64u_decode(parse_str(top, "ct", w), what=f"{w}.ct")
    if len(ct) != KEK_SIZE + TAG_SIZE:
        raise ValidationError(f"{w}.ct: got {len(ct)} bytes, want {KEK_SIZE + TAG_SIZE}")
    header = canonical_bytes({k: v for k, v in top.items() if k != "ct"})
    check_password(password, allow_empty=True)
    file_key = derive_password_key(password, salt, n=n, r=r, p=p)
    try:
        key = AESGCM(file_key).decrypt(nonce, ct, header)
    except InvalidTag:
        raise AuthenticationError(
            "wrong password or corrupted KEK file (AES-GCM authentication failed)",
            code="bad_kek_password",
        ) from None
    kek = KEK(key)
    if kek.kek_id != kek_id:
        raise VerificationError(f"{w}: key id is {kek.kek_id}, file says {kek_id}")
    return kek


def create_kek(path: Path | str, password: bytes, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> KEK:
    """Generate a KEK, store it encrypted at ``path`` (0600, atomic, never overwriting)."""
    path = Path(path)
    kek = KEK.generate()
    data = encrypt_kek(kek, password, scrypt_n=scrypt_n)

    def exists() -> ConflictError:
        return ConflictError(f"a KEK file already exists at {path}", code="kek_exists")

    if path.exists():
        raise exists()
    write_new_private_file(path, data, exists_error=exists)
    return kek


def load_kek(path: Path | str, password: bytes) -> KEK:
    """Read and decrypt the KEK file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(_LIMITS.max_bytes + 1)
    except FileNotFoundError:
        raise NotFoundError(f"no KEK file at {path}") from None
    except OSError as exc:
        raise InfrastructureError(f"cannot read KEK file {path}: {exc.strerror}") from None
    return decrypt_kek(data, password)
