"""Encrypted key files and the keyring: round trips, tampering, permissions, names, parsing."""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carechain.crypto.keystore import (
    KeyFileInfo,
    Keyring,
    decrypt_key,
    encrypt_key,
    read_key_info,
    resolve_password,
    validate_key_name,
)
from carechain.crypto.signatures import (
    ALGORITHMS,
    PrivateKey,
    check_signature,
    generate_key,
    key_id,
)
from carechain.encoding import b64u_decode, b64u_encode, canonical_bytes
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    LedgerError,
    NotFoundError,
    ValidationError,
)

N = 2**10  # small scrypt cost for tests
PASSWORD = b"correct horse battery staple"


@pytest.fixture(scope="module", params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return generate_key(request.param)


@pytest.fixture(scope="module")
def ed_key() -> PrivateKey:
    return generate_key("ed25519")


@pytest.fixture(scope="module")
def ed_file(ed_key: PrivateKey) -> bytes:
    return encrypt_key(ed_key, PASSWORD, name="alice", account="acct-1", n=N)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "data", scrypt_n=N)


def _load(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def _dump(doc: dict[str, Any]) -> bytes:
    return canonical_bytes(doc)


def _reference_encrypt(header: dict[str, Any], seed: bytes, password: bytes) -> bytes:
    """An independent implementation of the format, from its description in the module doc."""
    kdf = header["kdf"]
    key = Scrypt(
        salt=b64u_decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]
    ).derive(password)
    nonce = b64u_decode(header["aead"]["nonce"])
    ct = AESGCM(key).encrypt(nonce, seed, canonical_bytes(header))
    return canonical_bytes({**header, "ct": b64u_encode(ct)})


def _header(data: bytes) -> dict[str, Any]:
    doc = _load(data)
    del doc["ct"]
    return doc


# -- round trips ------------------------------------------------------------------------------


def test_round_trip(key: PrivateKey) -> None:
    data = encrypt_key(key, PASSWORD, name="k1", account="acct-9", n=N)
    decrypted, info = decrypt_key(data, PASSWORD)
    assert decrypted == key
    assert info == KeyFileInfo(
        name="k1", alg=key.alg, kid=key.kid, public=key.public, account="acct-9"
    )
    assert read_key_info(data) == info
    signature = decrypted.sign(b"msg")
    assert check_signature(key.alg, info.public, b"msg", signature)


def test_round_trip_without_account(key: PrivateKey) -> None:
    data = encrypt_key(key, PASSWORD, name="k2", n=N)
    assert "account" not in _load(data)
    decrypted, info = decrypt_key(data, PASSWORD)
    assert decrypted == key and info.account is None


def test_file_format(ed_key: PrivateKey, ed_file: bytes) -> None:
    doc = _load(ed_file)
    assert canonical_bytes(doc) == ed_file  # stored canonically
    assert set(doc) == {"v", "type", "name", "account", "alg", "kid", "pub", "kdf", "aead", "ct"}
    assert doc["v"] == 1 and doc["type"] == "carechain-key"
    assert doc["name"] == "alice" and doc["account"] == "acct-1"
    assert doc["alg"] == "ed25519" and doc["kid"] == ed_key.kid
    assert b64u_decode(doc["pub"]) == ed_key.public
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == N
    assert doc["kdf"]["r"] == 8 and doc["kdf"]["p"] == 1
    assert len(b64u_decode(doc["kdf"]["salt"])) == 16
    assert doc["aead"]["name"] == "aes-256-gcm"
    assert len(b64u_decode(doc["aead"]["nonce"])) == 12
    assert len(b64u_decode(doc["ct"])) == len(ed_key.private) + 16
    assert ed_key.private.hex().encode() not in ed_file
    assert b64u_encode(ed_key.private).encode() not in ed_file


def test_default_cost_is_2_pow_15(ed_key: PrivateKey) -> None:
    data = encrypt_key(ed_key, PASSWORD, name="slow")
    assert _load(data)["kdf"]["n"] == 2**15
    assert decrypt_key(data, PASSWORD)[0] == ed_key


def test_matches_independent_reference(ed_key: PrivateKey, ed_file: bytes) -> None:
    """Re-encrypting the header with the reference gives the file back (GCM is deterministic
    for a fixed key and nonce): the AAD is exactly the canonical header."""
    assert _reference_encrypt(_header(ed_file), ed_key.private, PASSWORD) == ed_file


def test_fresh_salt_and_nonce_each_time(ed_key: PrivateKey) -> None:
    a = _load(encrypt_key(ed_key, PASSWORD, name="a", n=N))
    b = _load(encrypt_key(ed_key, PASSWORD, name="a", n=N))
    assert a["kdf"]["salt"] != b["kdf"]["salt"]
    assert a["aead"]["nonce"] != b["aead"]["nonce"]
    assert a["ct"] != b["ct"]


# -- passwords and tampering ------------------------------------------------------------------


@pytest.mark.parametrize("password", [b"", b"correct horse battery stapl", PASSWORD + b"e"])
def test_wrong_password(ed_file: bytes, password: bytes) -> None:
    with pytest.raises(AuthenticationError, match="wrong password or corrupted key file 'alice'"):
        decrypt_key(ed_file, password)


def test_empty_password_refused_on_encrypt(ed_key: PrivateKey) -> None:
    with pytest.raises(ValidationError, match="password must not be empty"):
        encrypt_key(ed_key, b"", name="a", n=N)


def test_nul_in_password_refused(ed_key: PrivateKey, ed_file: bytes) -> None:
    """PBKDF2-HMAC zero-pads short keys, so b"pw" and b"pw\\x00" derive the same key: refuse NUL."""
    with pytest.raises(ValidationError, match="NUL"):
        encrypt_key(ed_key, b"pw\x00x", name="a", n=N)
    with pytest.raises(ValidationError, match="NUL"):
        decrypt_key(ed_file, PASSWORD + b"\x00")
    assert decrypt_key(ed_file, PASSWORD)[0] == ed_key


def test_untampered_file_decrypts(ed_key: PrivateKey, ed_file: bytes) -> None:
    """Negative control for the tampering tests: re-encoding the parsed file changes nothing."""
    assert _dump(_load(ed_file)) == ed_file
    assert decrypt_key(_dump(_load(ed_file)), PASSWORD)[0] == ed_key


def _with_bytes_flipped(data: bytes, path: tuple[str, ...]) -> list[bytes]:
    """Every variant of ``data`` with one byte of the base64url field at ``path`` changed."""
    doc = _load(data)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    raw = b64u_decode(parent[path[-1]])
    out = []
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01 if i % 2 else 0x80
        parent[path[-1]] = b64u_encode(bytes(changed))
        out.append(_dump(doc))
    return out


@pytest.mark.parametrize(
    "path", [("ct",), ("aead", "nonce"), ("kdf", "salt"), ("pub",)], ids="/".join
)
def test_every_byte_of_binary_fields_tampered(ed_file: bytes, path: tuple[str, ...]) -> None:
    variants = _with_bytes_flipped(ed_file, path)
    assert len(variants) >= 12
    for variant in variants:
        assert variant != ed_file
        with pytest.raises(AuthenticationError, match="wrong password or corrupted"):
            decrypt_key(variant, PASSWORD)


def _with_chars_changed(data: bytes, field: str, alphabet: str) -> list[bytes]:
    doc = _load(data)
    text = doc[field]
    out = []
    for i, c in enumerate(text):
        replacement = next(a for a in alphabet if a != c)
        doc[field] = text[:i] + replacement + text[i + 1 :]
        out.append(_dump(doc))
    return out


def test_every_character_of_kid_tampered(ed_file: bytes) -> None:
    variants = _with_chars_changed(ed_file, "kid", "0123456789abcdef")
    assert len(variants) == 32
    for variant in variants:
        with pytest.raises(AuthenticationError):
            decrypt_key(variant, PASSWORD)
        with pytest.raises(ValidationError, match="is not the id of its public key"):
            read_key_info(variant)


def test_every_character_of_alg_tampered(ed_file: bytes) -> None:
    variants = _with_chars_changed(ed_file, "alg", "abcdefghijklmnopqrstuvwxyz0123456789-")
    assert len(variants) == len("ed25519")
    for variant in variants:
        with pytest.raises(ValidationError, match="unknown signature algorithm"):
            decrypt_key(variant, PASSWORD)


def test_algorithm_substitution_rejected(ed_file: bytes) -> None:
    doc = _load(ed_file)
    doc["alg"] = "ml-dsa-65"
    with pytest.raises(ValidationError, match="pub: got 32 bytes, want 1952"):
        decrypt_key(_dump(doc), PASSWORD)


def _mutations() -> list[Any]:
    def setter(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(doc: dict[str, Any]) -> None:
            target = doc
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value

        return apply

    def drop_account(doc: dict[str, Any]) -> None:
        del doc["account"]

    return [
        pytest.param(setter(("name",), "mallory"), id="name"),
        pytest.param(setter(("account",), "acct-2"), id="account"),
        pytest.param(drop_account, id="account-removed"),
        pytest.param(setter(("kdf", "n"), 2**11), id="kdf.n"),
        pytest.param(setter(("kdf", "r"), 9), id="kdf.r"),
        pytest.param(setter(("kdf", "p"), 2), id="kdf.p"),
        pytest.param(setter(("pub",), b64u_encode(generate_key().public)), id="pub-swapped"),
    ]


@pytest.mark.parametrize("mutate", _mutations())
def test_header_changes_fail_authentication(
    ed_file: bytes, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = _load(ed_file)
    mutate(doc)
    with pytest.raises(AuthenticationError):
        decrypt_key(_dump(doc), PASSWORD)


def test_consistent_kid_and_pub_swap_fails_authentication(ed_file: bytes) -> None:
    """An attacker replacing pub *and* kid consistently still breaks the AEAD tag."""
    other = generate_key("ed25519")
    doc = _load(ed_file)
    doc["pub"], doc["kid"] = b64u_encode(other.public), other.kid
    assert read_key_info(_dump(doc)).kid == other.kid  # structurally fine
    with pytest.raises(AuthenticationError):
        decrypt_key(_dump(doc), PASSWORD)


def test_every_byte_of_the_file_flipped(ed_key: PrivateKey, ed_file: bytes) -> None:
    """No single-byte change anywhere in the file yields a key (fails as invalid or unauthentic)."""
    assert decrypt_key(ed_file, PASSWORD)[0] == ed_key  # negative control
    kinds: set[type[LedgerError]] = set()
    for i in range(len(ed_file)):
        variant = bytearray(ed_file)
        variant[i] ^= 0x01
        with pytest.raises((ValidationError, AuthenticationError)) as info:
            decrypt_key(bytes(variant), PASSWORD)
        kinds.add(type(info.value))
    assert AuthenticationError in kinds and any(issubclass(k, ValidationError) for k in kinds)


def test_seed_that_does_not_derive_pub_is_rejected(ed_key: PrivateKey, ed_file: bytes) -> None:
    """A file authentic under the password but whose seed belongs to another key."""
    header = _header(ed_file)
    other = generate_key("ed25519")
    assert decrypt_key(_reference_encrypt(header, ed_key.private, PASSWORD), PASSWORD)[0] == ed_key
    forged = _reference_encrypt(header, other.private, PASSWORD)
    with pytest.raises(ValidationError, match="does not match its 'pub' field"):
        decrypt_key(forged, PASSWORD)


def test_seed_of_wrong_length_is_rejected(ed_file: bytes) -> None:
    forged = _reference_encrypt(_header(ed_file), b"\x01" * 31, PASSWORD)
    with pytest.raises(ValidationError, match="not a valid ed25519 key"):
        decrypt_key(forged, PASSWORD)


def test_authentic_but_inconsistent_kid_is_rejected(ed_key: PrivateKey, ed_file: bytes) -> None:
    header = _header(ed_file)
    header["kid"] = "0" * 32
    forged = _reference_encrypt(header, ed_key.private, PASSWORD)
    with pytest.raises(ValidationError, match="is not the id of its public key"):
        decrypt_key(forged, PASSWORD)


# -- malformed files --------------------------------------------------------------------------


_DELETE = object()


def _malformed(ed_file: bytes) -> list[Any]:
    doc = _load(ed_file)

    def variant(**changes: Any) -> bytes:
        new = json.loads(json.dumps(doc))
        for dotted, value in changes.items():
            target = new
            parts = dotted.split("__")
            for part in parts[:-1]:
                target = target[part]
            if value is _DELETE:
                del target[parts[-1]]
            else:
                target[parts[-1]] = value
        return _dump(new)

    pretty = json.dumps(doc, indent=2).encode()
    return [
        pytest.param(b"", "malformed JSON", id="empty"),
        pytest.param(b"not json", "malformed JSON", id="not-json"),
        pytest.param(ed_file[:-1], "malformed JSON", id="truncated"),
        pytest.param(b"[]", "expected an object", id="array"),
        pytest.param(b'"key"', "expected an object", id="string"),
        pytest.param(pretty, "canonical form", id="pretty-printed"),
        pytest.param(ed_file + b"\n", "canonical form", id="trailing-newline"),
        pytest.param(
            ed_file.replace(b'{"account"', b'{"account":"x","account"', 1),
            "canonical form",
            id="duplicate-key",
        ),
        pytest.param(b"x" * 70_000, "exceeds the limit", id="too-large"),
        pytest.param(variant(extra="1"), "unknown field", id="unknown-field"),
        pytest.param(variant(kdf__extra=1), "unknown field", id="unknown-kdf-field"),
        pytest.param(variant(ct=_DELETE), "missing field", id="missing-ct"),
        pytest.param(variant(kdf__salt=_DELETE), "missing field", id="missing-salt"),
        pytest.param(variant(v=2), "key file.v: got 2, want 1", id="version"),
        pytest.param(variant(v=True), "key file.v", id="version-bool"),
        pytest.param(variant(type="other"), "key file.type", id="type"),
        pytest.param(variant(name="../etc"), "invalid key name", id="name"),
        pytest.param(variant(account=""), "invalid account", id="empty-account"),
        pytest.param(variant(alg=7), "expected a string", id="alg-int"),
        pytest.param(variant(kid="ABC"), "32 lowercase hex", id="kid-format"),
        pytest.param(variant(pub="***"), "not unpadded base64url", id="pub-b64"),
        pytest.param(variant(pub=doc["pub"] + "="), "not unpadded base64url", id="pub-padding"),
        pytest.param(variant(pub="AAAA"), "got 3 bytes, want 32", id="pub-length"),
        pytest.param(variant(kdf__name="pbkdf2"), "kdf.name", id="kdf-name"),
        pytest.param(variant(kdf__n=1000), "not a power of two", id="n-not-pow2"),
        pytest.param(variant(kdf__n=2**4), "not a power of two", id="n-too-small"),
        pytest.param(variant(kdf__n=2**30), "not a power of two", id="n-too-large"),
        pytest.param(variant(kdf__n="1024"), "expected an integer", id="n-string"),
        pytest.param(variant(kdf__r=0), "kdf.r", id="r-zero"),
        pytest.param(variant(kdf__r=32, kdf__n=2**20), r"limit 2\^30", id="memory"),
        pytest.param(variant(kdf__p=100), "kdf.p", id="p-large"),
        pytest.param(variant(kdf__salt="AAAA"), "want 16 to 64", id="salt-short"),
        pytest.param(variant(aead__name="chacha20"), "aead.name", id="aead-name"),
        pytest.param(variant(aead__nonce="AAAA"), "want 12", id="nonce-length"),
        pytest.param(variant(aead="x"), "expected an object", id="aead-string"),
        pytest.param(variant(ct="AAAA"), "key file.ct", id="ct-short"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    _malformed(encrypt_key(generate_key(), PASSWORD, name="alice", account="acct-1", n=N)),
)
def test_malformed_files_raise_validation_error(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        decrypt_key(data, PASSWORD)
    with pytest.raises(ValidationError, match=message):
        read_key_info(data)


def test_non_bytes_input_rejected() -> None:
    with pytest.raises(ValidationError, match="expected bytes"):
        read_key_info("{}")  # type: ignore[arg-type]


def test_invalid_encrypt_arguments(ed_key: PrivateKey) -> None:
    with pytest.raises(ValidationError, match="invalid key name"):
        encrypt_key(ed_key, PASSWORD, name="bad name", n=N)
    with pytest.raises(ValidationError, match="invalid account"):
        encrypt_key(ed_key, PASSWORD, name="a", account="", n=N)
    with pytest.raises(ValidationError, match="power of two"):
        encrypt_key(ed_key, PASSWORD, name="a", n=1000)
    with pytest.raises(ValidationError, match="unknown signature algorithm"):
        encrypt_key(PrivateKey("rsa", b"\x00" * 32), PASSWORD, name="a", n=N)


# -- names ------------------------------------------------------------------------------------

INVALID_NAMES = [
    "",
    ".hidden",
    "-dash",
    "_under",
    "a/b",
    "../x",
    "..",
    "a b",
    "a\\b",
    "abc\n",
    "\nabc",
    "é",
    "a" * 65,
    "a:b",
    "a*",
]
VALID_NAMES = ["a", "A", "0", "alice", "dr.jones", "key_1-2", "a" * 64, "x..y"]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name: str, keyring: Keyring) -> None:
    with pytest.raises(ValidationError, match="invalid key name"):
        validate_key_name(name)
    with pytest.raises(ValidationError, match="invalid key name"):
        keyring.create(name, "ed25519", PASSWORD)
    with pytest.raises(ValidationError, match="invalid key name"):
        keyring.get_info(name)
    with pytest.raises(ValidationError, match="invalid key name"):
        keyring.load(name, PASSWORD)
    assert not keyring.keys_dir.exists() or list(keyring.keys_dir.iterdir()) == []


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert validate_key_name(name) == name


# -- keyring ----------------------------------------------------------------------------------


def test_keyring_create_list_load_export(keyring: Keyring) -> None:
    assert keyring.list() == []
    alice = keyring.create("alice", "ed25519", PASSWORD, account="acct-1")
    bob = keyring.create("bob", "ml-dsa-65", PASSWORD)
    assert keyring.list() == [alice, bob]
    assert keyring.get_info("bob") == bob
    key = keyring.load("alice", PASSWORD)
    assert key.alg == "ed25519" and key.kid == alice.kid and key.public == alice.public
    assert keyring.load("bob", PASSWORD).kid == bob.kid
    assert keyring.export_public("alice") == {
        "alg": "ed25519",
        "kid": alice.kid,
        "pub": b64u_encode(alice.public),
        "name": "alice",
        "account": "acct-1",
    }
    assert "account" not in keyring.export_public("bob")
    assert key_id(bob.alg, b64u_decode(keyring.export_public("bob")["pub"])) == bob.kid


def test_keyring_wrong_password(keyring: Keyring) -> None:
    keyring.create("alice", "ed25519", PASSWORD)
    with pytest.raises(AuthenticationError, match="wrong password"):
        keyring.load("alice", b"nope")


def test_keyring_import_key(keyring: Keyring, key: PrivateKey) -> None:
    info = keyring.import_key("imported", key, PASSWORD, account="acct-3")
    assert info.kid == key.kid and info.account == "acct-3"
    assert keyring.load("imported", PASSWORD) == key


def test_keyring_unknown_algorithm(keyring: Keyring) -> None:
    with pytest.raises(ValidationError, match="unknown signature algorithm"):
        keyring.create("alice", "rsa", PASSWORD)
    assert not keyring.path("alice").exists()


def test_file_and_directory_permissions(keyring: Keyring) -> None:
    old = os.umask(0)  # the most permissive umask must not leak into the key file
    try:
        keyring.create("alice", "ed25519", PASSWORD)
    finally:
        os.umask(old)
    assert stat.S_IMODE(keyring.path("alice").stat().st_mode) == 0o600
    assert stat.S_IMODE(keyring.keys_dir.stat().st_mode) == 0o700


def test_existing_loose_directory_is_tightened(keyring: Keyring) -> None:
    keyring.keys_dir.mkdir(parents=True, mode=0o755)
    os.chmod(keyring.keys_dir, 0o755)
    keyring.create("alice", "ed25519", PASSWORD)
    assert stat.S_IMODE(keyring.keys_dir.stat().st_mode) == 0o700


def test_refuse_overwrite(keyring: Keyring) -> None:
    first = keyring.create("alice", "ed25519", PASSWORD)
    before = keyring.path("alice").read_bytes()
    with pytest.raises(ConflictError, match="already exists"):
        keyring.create("alice", "ed25519", PASSWORD)
    with pytest.raises(ConflictError, match="already exists"):
        keyring.import_key("alice", generate_key(), PASSWORD)
    assert keyring.path("alice").read_bytes() == before
    assert keyring.get_info("alice") == first
    assert sorted(p.name for p in keyring.keys_dir.iterdir()) == ["alice.key.json"]


def test_refuse_overwrite_at_publish_time(keyring: Keyring, ed_key: PrivateKey) -> None:
    """The race window: the name appears after the existence check; the link refuses it."""
    keyring.create("alice", "ed25519", PASSWORD)
    before = keyring.path("alice").read_bytes()
    data = encrypt_key(ed_key, PASSWORD, name="alice", n=N)
    with pytest.raises(ConflictError):
        keyring._write_new("alice", keyring.path("alice"), data)
    assert keyring.path("alice").read_bytes() == before
    assert sorted(p.name for p in keyring.keys_dir.iterdir()) == ["alice.key.json"]


def test_no_temporary_files_left(keyring: Keyring) -> None:
    keyring.create("a", "ed25519", PASSWORD)
    keyring.create("b", "ed25519", PASSWORD)
    assert sorted(p.name for p in keyring.keys_dir.iterdir()) == ["a.key.json", "b.key.json"]


def test_not_found(keyring: Keyring) -> None:
    with pytest.raises(NotFoundError, match="no key named 'ghost'"):
        keyring.get_info("ghost")
    with pytest.raises(NotFoundError):
        keyring.load("ghost", PASSWORD)
    with pytest.raises(NotFoundError):
        keyring.export_public("ghost")


def test_list_ignores_other_files(keyring: Keyring) -> None:
    keyring.create("alice", "ed25519", PASSWORD)
    (keyring.keys_dir / ".alice.abc.tmp").write_bytes(b"partial")
    (keyring.keys_dir / "notes.txt").write_text("hello")
    (keyring.keys_dir / ".hidden.key.json").write_text("{}")
    assert [i.name for i in keyring.list()] == ["alice"]


def test_list_reports_corrupted_file(keyring: Keyring) -> None:
    keyring.create("alice", "ed25519", PASSWORD)
    keyring.path("alice").write_bytes(b"{broken")
    with pytest.raises(ValidationError, match="malformed JSON"):
        keyring.list()


def test_renamed_file_is_detected(keyring: Keyring) -> None:
    keyring.create("alice", "ed25519", PASSWORD)
    keyring.path("alice").rename(keyring.path("mallory"))
    with pytest.raises(ValidationError, match="holds a key named 'alice', not 'mallory'"):
        keyring.get_info("mallory")
    with pytest.raises(ValidationError, match="holds a key named 'alice'"):
        keyring.load("mallory", PASSWORD)


def test_keyring_rejects_bad_cost(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Keyring(tmp_path, scrypt_n=3)


# -- password sources -------------------------------------------------------------------------


def _no_prompt() -> str:
    raise AssertionError("must not prompt")


def test_password_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARECHAIN_PASSWORD", "from-env")
    f = tmp_path / "pw"
    f.write_bytes(b"from-file\n")
    assert resolve_password(f, prompt=_no_prompt) == b"from-file"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"secret", b"secret"),
        (b"secret\n", b"secret"),
        (b"secret\r\n", b"secret"),
        (b"secret\n\n", b"secret\n"),
        (b"secret\r", b"secret\r"),
        (b" spaced secret ", b" spaced secret "),
    ],
)
def test_password_file_trailing_newline(tmp_path: Path, content: bytes, expected: bytes) -> None:
    f = tmp_path / "pw"
    f.write_bytes(content)
    assert resolve_password(f, prompt=_no_prompt) == expected


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe"])
def test_bad_password_file(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "pw"
    f.write_bytes(content)
    with pytest.raises(ValidationError, match="password file"):
        resolve_password(f, prompt=_no_prompt)


def test_missing_password_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        resolve_password(tmp_path / "nope", prompt=_no_prompt)


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARECHAIN_PASSWORD", "from-env")
    assert resolve_password(None, prompt=_no_prompt) == b"from-env"
    monkeypatch.setenv("OTHER_PW", "other")
    assert resolve_password(None, env="OTHER_PW", prompt=_no_prompt) == b"other"


def test_password_from_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)
    assert resolve_password(None, prompt=lambda: "typed") == b"typed"
    monkeypatch.setenv("CARECHAIN_PASSWORD", "")  # empty counts as unset
    assert resolve_password(None, prompt=lambda: "typed") == b"typed"
    with pytest.raises(ValidationError, match="must not be empty"):
        resolve_password(None, prompt=lambda: "")


def test_password_getpass_with_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(ValidationError, match="differ"):
        resolve_password(None, confirm=True)
    answers = iter(["same", "same"])
    assert resolve_password(None, confirm=True) == b"same"


def test_no_password_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARECHAIN_PASSWORD", raising=False)
    with pytest.raises(ValidationError, match="CARECHAIN_PASSWORD"):
        resolve_password(None, prompt=False)


def test_password_is_nfc_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decomposed = unicodedata.normalize("NFD", "pässwörd")
    composed = unicodedata.normalize("NFC", "pässwörd")
    assert decomposed != composed
    f = tmp_path / "pw"
    f.write_text(decomposed, encoding="utf-8")
    monkeypatch.setenv("CARECHAIN_PASSWORD", composed)
    assert resolve_password(f) == resolve_password(None) == composed.encode("utf-8")
