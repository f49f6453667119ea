"""Encrypted key files and the on-disk keyring.

A key file is one canonical JSON object (RFC 8785, :func:`carechain.encoding.canonical_bytes`)::

    {"v":1,"type":"carechain-key","name":...,"account":... (optional),"alg":...,"kid":...,
     "pub":b64u,"kdf":{"name":"scrypt","n":...,"r":8,"p":1,"salt":b64u},
     "aead":{"name":"aes-256-gcm","nonce":b64u},"ct":b64u}

``ct`` is AES-256-GCM of the private seed under ``scrypt(password, salt, n, r, p)``. Its
associated data is the canonical encoding of every other field (the *header*), so a change to
any of alg, kid, pub, name, account or the KDF/AEAD parameters fails authentication.

Invariants:

* a key file on disk is never written in clear, is mode 0600 in a 0700 directory, and is
  created atomically (complete temp file, then a no-clobber link or ``os.replace``);
* an existing key is never overwritten;
* reading a file checks, in this order: canonical JSON and structure (``ValidationError``),
  then the AEAD tag (``AuthenticationError``), then that the decrypted seed derives ``pub`` and
  that ``kid`` is the id of ``(alg, pub)`` (``ValidationError``);
* :func:`read_key_info` never needs the password and checks ``kid`` against ``(alg, pub)``.
"""

from __future__ import annotations

import builtins
import getpass
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carechain.crypto.signatures import PrivateKey, generate_key, get_scheme, key_id
from carechain.encoding import Limits, b64u_decode, b64u_encode, canonical_bytes, decode_canonical
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    InfrastructureError,
    NotFoundError,
    ValidationError,
)

FORMAT_VERSION = 1
FILE_TYPE = "carechain-key"
KEY_FILE_SUFFIX = ".key.json"
DEFAULT_SCRYPT_N = 2**15
"""scrypt cost written by default (32 MiB with r=8); tests may pass 2**10."""
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SCRYPT_N = 2**10
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_MEMORY = 2**30
"""Largest scrypt working set (128·r·n bytes) a key file may ask for: bounds a hostile file."""
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_SEED_SIZE = 64
MAX_ACCOUNT_LENGTH = 256
PASSWORD_ENV = "CARECHAIN_PASSWORD"  # noqa: S105 - the variable name, not a password

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KID_RE = re.compile(r"[0-9a-f]{32}")
_LIMITS = Limits(max_bytes=64 * 1024, max_string=16 * 1024, max_items=16)
_TOP_FIELDS = frozenset({"v", "type", "name", "account", "alg", "kid", "pub", "kdf", "aead", "ct"})
_OPTIONAL_FIELDS = frozenset({"account"})
_KDF_FIELDS = frozenset({"name", "n", "r", "p", "salt"})
_AEAD_FIELDS = frozenset({"name", "nonce"})


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyFileInfo:
    """The public part of a key file: readable without the password."""

    name: str
    """Local name of the key (also the file name stem)."""
    alg: str
    """Signature algorithm id from the registry."""
    kid: str
    """Key id of ``(alg, public)``: 32 lowercase hex characters."""
    public: bytes = field(repr=False)
    """Raw public-key bytes."""
    account: str | None = None
    """Ledger account the key belongs to, when known."""

    def to_public_dict(self) -> dict[str, str]:
        """The exportable public record: alg, kid, pub (base64url), name and account if set."""
        out = {"alg": self.alg, "kid": self.kid, "pub": b64u_encode(self.public), "name": self.name}
        if self.account is not None:
            out["account"] = self.account
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _KeyFile:
    info: KeyFileInfo
    n: int
    r: int
    p: int
    salt: bytes
    nonce: bytes
    ct: bytes
    header: bytes
    """Canonical bytes of every field except ``ct``: the AEAD associated data."""


def validate_key_name(name: object) -> str:
    """Return ``name`` if it is a valid key name, else raise :class:`ValidationError`."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValidationError(
            f"invalid key name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return name


def _validate_account(account: object) -> str | None:
    if account is None:
        return None
    if (
        not isinstance(account, str)
        or not 1 <= len(account) <= MAX_ACCOUNT_LENGTH
        or not account.isprintable()
    ):
        raise ValidationError(
            f"invalid account {account!r}: expected 1-{MAX_ACCOUNT_LENGTH} printable characters"
        )
    return account


def _validate_scrypt(n: int, r: int, p: int, what: str = "kdf") -> None:
    if n < MIN_SCRYPT_N or n > MAX_SCRYPT_N or n & (n - 1):
        raise ValidationError(
            f"{what}.n: {n} is not a power of two in [2^10, 2^20] (scrypt cost parameter)"
        )
    if not 1 <= r <= 32:
        raise ValidationError(f"{what}.r: {r} is outside [1, 32]")
    if not 1 <= p <= 16:
        raise ValidationError(f"{what}.p: {p} is outside [1, 16]")
    if 128 * r * n > MAX_SCRYPT_MEMORY:
        raise ValidationError(f"{what}: scrypt would need {128 * r * n} bytes (limit 2^30)")


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password)


def _check_password(password: object, *, allow_empty: bool = False) -> bytes:
    """Reject non-bytes, empty (when creating) and NUL-containing passwords.

    NUL is refused because scrypt's PBKDF2-HMAC zero-pads short keys: ``b"pw"`` and
    ``b"pw\\x00"`` would otherwise be the same password.
    """
    if not isinstance(password, bytes):
        raise ValidationError(f"password must be bytes, got {type(password).__name__}")
    if not password and not allow_empty:
        raise ValidationError("password must not be empty")
    if b"\x00" in password:
        raise ValidationError("password must not contain NUL bytes")
    return password


def encrypt_key(
    key: PrivateKey,
    password: bytes,
    *,
    name: str,
    account: str | None = None,
    n: int = DEFAULT_SCRYPT_N,
) -> bytes:
    """Return the canonical key-file bytes holding ``key`` encrypted under ``password``."""
    validate_key_name(name)
    _validate_account(account)
    _validate_scrypt(n, SCRYPT_R, SCRYPT_P, what="scrypt")
    _check_password(password)
    get_scheme(key.alg)
    public = key.public
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    header: dict[str, object] = {
        "v": FORMAT_VERSION,
        "type": FILE_TYPE,
        "name": name,
        "alg": key.alg,
        "kid": key_id(key.alg, public),
        "pub": b64u_encode(public),
        "kdf": {"name": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": b64u_encode(salt)},
        "aead": {"name": "aes-256-gcm", "nonce": b64u_encode(nonce)},
    }
    if account is not None:
        header["account"] = account
    aad = canonical_bytes(header)
    ct = AESGCM(_derive(password, salt, n, SCRYPT_R, SCRYPT_P)).encrypt(nonce, key.private, aad)
    return canonical_bytes({**header, "ct": b64u_encode(ct)})


def _obj(
    value: object, fields: frozenset[str], what: str, optional: frozenset[str]
) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what}: expected an object")
    keys = set(value)
    unknown = sorted(keys - fields)
    if unknown:
        raise ValidationError(f"{what}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(fields - optional - keys)
    if missing:
        raise ValidationError(f"{what}: missing field(s) {', '.join(missing)}")
    return dict(value)


def _str(obj: Mapping[str, object], key: str, what: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValidationError(f"{what}.{key}: expected a string, got {type(value).__name__}")
    return value


def _int(obj: Mapping[str, object], key: str, what: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    return value


def _const(obj: Mapping[str, object], key: str, want: object, what: str) -> None:
    if obj[key] != want or isinstance(obj[key], bool):
        raise ValidationError(f"{what}.{key}: got {obj[key]!r}, want {want!r}")


def _parse(data: bytes) -> _KeyFile:
    """Decode and structurally validate a key file; no cryptography beyond lengths."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValidationError(f"key file: expected bytes, got {type(data).__name__}")
    w = "key file"
    top = _obj(
        decode_canonical(bytes(data), limits=_LIMITS, what=w), _TOP_FIELDS, w, _OPTIONAL_FIELDS
    )
    _const(top, "v", FORMAT_VERSION, w)
    _const(top, "type", FILE_TYPE, w)
    name = validate_key_name(_str(top, "name", w))
    account = _validate_account(top.get("account"))
    alg = _str(top, "alg", w)
    scheme = get_scheme(alg)
    kid = _str(top, "kid", w)
    if _KID_RE.fullmatch(kid) is None:
        raise ValidationError(f"{w}.kid: expected 32 lowercase hex characters, got {kid!r}")
    public = b64u_decode(_str(top, "pub", w), what=f"{w}.pub")
    if len(public) != scheme.public_key_size:
        raise ValidationError(
            f"{w}.pub: got {len(public)} bytes, want {scheme.public_key_size} for {alg}"
        )
    kdf = _obj(top["kdf"], _KDF_FIELDS, f"{w}.kdf", frozenset())
    _const(kdf, "name", "scrypt", f"{w}.kdf")
    n, r, p = (_int(kdf, k, f"{w}.kdf") for k in ("n", "r", "p"))
    _validate_scrypt(n, r, p, what=f"{w}.kdf")
    salt = b64u_decode(_str(kdf, "salt", f"{w}.kdf"), what=f"{w}.kdf.salt")
    if not SALT_SIZE <= len(salt) <= 64:
        raise ValidationError(f"{w}.kdf.salt: got {len(salt)} bytes, want 16 to 64")
    aead = _obj(top["aead"], _AEAD_FIELDS, f"{w}.aead", frozenset())
    _const(aead, "name", "aes-256-gcm", f"{w}.aead")
    nonce = b64u_decode(_str(aead, "nonce", f"{w}.aead"), what=f"{w}.aead.nonce")
    if len(nonce) != NONCE_SIZE:
        raise ValidationError(f"{w}.aead.nonce: got {len(nonce)} bytes, want {NONCE_SIZE}")
    ct = b64u_decode(_str(top, "ct", w), what=f"{w}.ct")
    if not TAG_SIZE < len(ct) <= TAG_SIZE + MAX_SEED_SIZE:
        raise ValidationError(f"{w}.ct: got {len(ct)} bytes, want 17 to {TAG_SIZE + MAX_SEED_SIZE}")
    header = canonical_bytes({k: v for k, v in top.items() if k != "ct"})
    info = KeyFileInfo(name=name, alg=alg, kid=kid, public=public, account=account)
    return _KeyFile(info=info, n=n, r=r, p=p, salt=salt, nonce=nonce, ct=ct, header=header)


def _check_kid(info: KeyFileInfo) -> None:
    want = key_id(info.alg, info.public)
    if info.kid != want:
        raise ValidationError(
            f"key file {info.name!r}: kid {info.kid} is not the id of its public key "
            f"(want {want}); the file is corrupted or was tampered with"
        )


def read_key_info(data: bytes) -> KeyFileInfo:
    """The public fields of a key file (no password); ``ValidationError`` if malformed."""
    info = _parse(data).info
    _check_kid(info)
    return info


def decrypt_key(data: bytes, password: bytes) -> tuple[PrivateKey, KeyFileInfo]:
    """Decrypt a key file; check the seed derives the file's public key and kid.

    Raises :class:`ValidationError` for a malformed file and :class:`AuthenticationError` for a
    wrong password or any change to the authenticated fields.
    """
    kf = _parse(data)
    _check_password(password, allow_empty=True)
    info = kf.info
    key = _derive(password, kf.salt, kf.n, kf.r, kf.p)
    try:
        seed = AESGCM(key).decrypt(kf.nonce, kf.ct, kf.header)
    except InvalidTag:
        raise AuthenticationError(
            f"wrong password or corrupted key file {info.name!r} (AES-GCM authentication failed)",
            code="bad_key_password",
        ) from None
    private = PrivateKey(info.alg, seed)
    try:
        derived = private.public
    except (ValueError, TypeError):
        raise ValidationError(
            f"key file {info.name!r}: decrypted {len(seed)}-byte seed is not a valid {info.alg} key"
        ) from None
    if derived != info.public:
        raise ValidationError(
            f"key file {info.name!r}: the decrypted private key does not match its 'pub' field"
        )
    _check_kid(info)
    return private, info


def _normalise(text: str) -> bytes:
    return unicodedata.normalize("NFC", text).encode("utf-8")


def resolve_password(
    password_file: Path | None = None,
    env: str | None = PASSWORD_ENV,
    prompt: bool | Callable[[], str] = True,
    *,
    confirm: bool = False,
) -> bytes:
    """Find the password: ``password_file``, else the ``env`` variable, else a prompt.

    The file's single trailing newline (LF or CRLF) is dropped; text from every source is NFC
    normalised and UTF-8 encoded, so the same password typed or stored gives the same bytes.
    ``prompt`` may be a callable (e.g. a typer prompt); ``True`` uses :func:`getpass.getpass`
    (asking twice when ``confirm``); ``False`` fails with a hint.
    """
    if password_file is not None:
        try:
            raw = Path(password_file).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"password file {password_file} does not exist") from None
        except OSError as exc:
            raise InfrastructureError(
                f"cannot read password file {password_file}: {exc.strerror}"
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"password file {password_file} is not UTF-8 text") from None
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        if not text:
            raise ValidationError(f"password file {password_file} is empty")
        return _check_password(_normalise(text))
    if env is not None:
        value = os.environ.get(env)
        if value:
            return _check_password(_normalise(value))
    if prompt is False:
        raise ValidationError(
            f"no password given: use --password-file or set {env or PASSWORD_ENV}"
        )
    if callable(prompt):
        text = prompt()
    else:
        text = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != text:
            raise ValidationError("the two passwords differ")
    if not text:
        raise ValidationError("password must not be empty")
    return _check_password(_normalise(text))


class Keyring:
    """Encrypted key files in ``<data_dir>/keys/<name>.key.json``."""

    def __init__(self, data_dir: Path | str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        _validate_scrypt(scrypt_n, SCRYPT_R, SCRYPT_P, what="scrypt")
        self.data_dir = Path(data_dir)
        self.keys_dir = self.data_dir / "keys"
        self.scrypt_n = scrypt_n

    def path(self, name: str) -> Path:
        """The file that holds (or would hold) key ``name``."""
        return self.keys_dir / f"{validate_key_name(name)}{KEY_FILE_SUFFIX}"

    def create(
        self, name: str, alg: str, password: bytes, account: str | None = None
    ) -> KeyFileInfo:
        """Generate a new ``alg`` key, store it encrypted as ``name`` and return its info."""
        return self.import_key(name, generate_key(alg), password, account)

    def import_key(
        self, name: str, key: PrivateKey, password: bytes, account: str | None = None
    ) -> KeyFileInfo:
        """Store an existing private key encrypted as ``name``; never overwrites."""
        path = self.path(name)
        if path.exists():
            raise self._exists(name, path)
        data = encrypt_key(key, password, name=name, account=account, n=self.scrypt_n)
        self._write_new(name, path, data)
        return read_key_info(data)

    def list(self) -> builtins.list[KeyFileInfo]:
        """Every key's info, sorted by name; files with invalid names are ignored."""
        if not self.keys_dir.is_dir():
            return []
        names = sorted(
            p.name[: -len(KEY_FILE_SUFFIX)]
            for p in self.keys_dir.iterdir()
            if p.name.endswith(KEY_FILE_SUFFIX)
            and _NAME_RE.fullmatch(p.name[: -len(KEY_FILE_SUFFIX)])
        )
        return [self.get_info(name) for name in names]

    def get_info(self, name: str) -> KeyFileInfo:
        """Public info of key ``name``; ``NotFoundError`` if absent."""
        info = read_key_info(self._read(name))
        self._check_name(name, info)
        return info

    def load(self, name: str, password: bytes) -> PrivateKey:
        """Decrypt key ``name`` with ``password``."""
        key, info = decrypt_key(self._read(name), password)
        self._check_name(name, info)
        return key

    def export_public(self, name: str) -> dict[str, str]:
        """The public record of key ``name``: alg, kid, pub, name and account if set."""
        return self.get_info(name).to_public_dict()

    # -- internals ------------------------------------------------------------------------

    def _exists(self, name: str, path: Path) -> ConflictError:
        return ConflictError(
            f"a key named {name!r} already exists ({path}); choose another name",
            code="key_exists",
        )

    def _check_name(self, name: str, info: KeyFileInfo) -> None:
        if info.name != name:
            raise ValidationError(
                f"key file {self.path(name)} holds a key named {info.name!r}, not {name!r}"
            )

    def _read(self, name: str) -> bytes:
        path = self.path(name)
        try:
            with path.open("rb") as f:
                return f.read(_LIMITS.max_bytes + 1)
        except FileNotFoundError:
            raise NotFoundError(f"no key named {name!r} in {self.keys_dir}") from None
        except OSError as exc:
            raise InfrastructureError(f"cannot read key file {path}: {exc.strerror}") from None

    def _write_new(self, name: str, path: Path, data: bytes) -> None:
        write_new_private_file(
            path, data, exists_error=lambda: self._exists(name, path), tmp_prefix=f".{name}."
        )


# -- helpers shared with other password-encrypted files (crypto/kek.py) ---------------------


def validate_scrypt_params(n: int, r: int = SCRYPT_R, p: int = SCRYPT_P, *, what: str) -> None:
    """Raise :class:`ValidationError` unless ``(n, r, p)`` are scrypt costs a file may use."""
    _validate_scrypt(n, r, p, what=what)


def derive_password_key(
    password: bytes, salt: bytes, *, n: int, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    """The 32-byte AES-256-GCM key ``scrypt(password, salt, n, r, p)`` of an encrypted file."""
    return _derive(password, salt, n, r, p)


def check_password(password: object, *, allow_empty: bool = False) -> bytes:
    """Return ``password`` if usable: bytes, without NUL, non-empty unless ``allow_empty``."""
    return _check_password(password, allow_empty=allow_empty)


def parse_fields(
    value: object, fields: frozenset[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, object]:
    """``value`` as a dict with exactly ``fields`` (minus absent ``optional`` ones)."""
    return _obj(value, fields, what, optional)


def parse_str(obj: Mapping[str, object], key: str, what: str) -> str:
    """``obj[key]``, which must be a string."""
    return _str(obj, key, what)


def parse_int(obj: Mapping[str, object], key: str, what: str) -> int:
    """``obj[key]``, which must be an integer (not a bool)."""
    return _int(obj, key, what)


def parse_const(obj: Mapping[str, object], key: str, want: object, what: str) -> None:
    """Raise :class:`ValidationError` unless ``obj[key] == want``."""
    _const(obj, key, want, what)


def write_new_private_file(
    path: Path,
    data: bytes,
    *,
    exists_error: Callable[[], Exception],
    tmp_prefix: str | None = None,
) -> None:
    """Create ``path`` holding ``data``: mode 0600, parent directory 0700, atomically, durably.

    The bytes go to a temp file in the same directory (fsynced), which is then hard-linked to
    ``path`` (atomic and never clobbers; ``exists_error()`` is raised if ``path`` exists) or,
    without hard links, checked and ``os.replace``d; the directory is fsynced. No temp file is
    left behind. OS failures raise :class:`InfrastructureError`.
    """
    parent = path.parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if parent.stat().st_mode & 0o777 != 0o700:
            os.chmod(parent, 0o700)
        fd, tmp_name = tempfile.mkstemp(
            prefix=tmp_prefix or f".{path.name}.", suffix=".tmp", dir=parent
        )
    except OSError as exc:
        raise InfrastructureError(f"cannot create key directory {parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish_no_clobber(tmp, path, exists_error)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise InfrastructureError(f"cannot write key file {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _publish_no_clobber(tmp: Path, path: Path, exists_error: Callable[[], Exception]) -> None:
    """Make ``tmp`` visible as ``path`` atomically, refusing to replace an existing file."""
    try:
        os.link(tmp, path)  # atomic and never clobbers
        return
    except FileExistsError:
        raise exists_error() from None
    except OSError:
        pass  # the file system has no hard links: fall back to check + replace
    if path.exists():
        raise exists_error()
    os.replace(tmp, path)
