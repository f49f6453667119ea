"""The record key-encryption key: its encrypted file and RFC 3394 wrapping."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carechain.crypto.kek import (
    KEK,
    KEK_FILE_NAME,
    create_kek,
    decrypt_kek,
    encrypt_kek,
    kek_id_of,
    kek_path,
    load_kek,
)
from carechain.crypto.keystore import derive_password_key
from carechain.encoding import b64u_decode, b64u_encode, canonical_bytes
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    LedgerError,
    NotFoundError,
    ValidationError,
    VerificationError,
)

N = 2**10  # small scrypt cost for tests
PASSWORD = b"record kek password"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return kek_path(tmp_path / "chain")


@pytest.fixture
def kek_file(path: Path) -> tuple[Path, KEK]:
    return path, create_kek(path, PASSWORD, scrypt_n=N)


# -- the file ------------------------------------------------------------------------------


def test_path_layout(tmp_path: Path) -> None:
    assert (
        kek_path(tmp_path)
        == tmp_path / "keys" / KEK_FILE_NAME
        == tmp_path / "keys" / ("record-kek.json")
    )


def test_create_then_load_round_trip(kek_file: tuple[Path, KEK]) -> None:
    path, kek = kek_file
    loaded = load_kek(path, PASSWORD)
    assert loaded == kek
    assert loaded.key == kek.key and len(kek.key) == 32
    assert loaded.kek_id == kek_id_of(kek.key)
    assert len(kek.kek_id) == 32 and int(kek.kek_id, 16) >= 0


def test_two_keks_differ(tmp_path: Path) -> None:
    a = create_kek(tmp_path / "a.json", PASSWORD, scrypt_n=N)
    b = create_kek(tmp_path / "b.json", PASSWORD, scrypt_n=N)
    assert a.key != b.key and a.kek_id != b.kek_id


def test_file_is_canonical_and_holds_no_clear_key(kek_file: tuple[Path, KEK]) -> None:
    path, kek = kek_file
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert canonical_bytes(doc) == raw
    assert sorted(doc) == ["aead", "ct", "kdf", "kek_id", "type", "v"]
    assert doc["type"] == "carechain-kek" and doc["v"] == 1 and doc["kek_id"] == kek.kek_id
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == N
    assert doc["aead"]["name"] == "aes-256-gcm"
    assert kek.key not in raw and b64u_encode(kek.key) not in raw.decode()
    assert kek.key.hex() not in raw.decode()


def test_header_is_the_associated_data(kek_file: tuple[Path, KEK]) -> None:
    """Decrypting by hand with the canonical header as AAD works (and only with it)."""
    path, kek = kek_file
    doc = json.loads(path.read_bytes())
    header = canonical_bytes({k: v for k, v in doc.items() if k != "ct"})
    key = derive_password_key(PASSWORD, b64u_decode(doc["kdf"]["salt"]), n=N)
    nonce = b64u_decode(doc["aead"]["nonce"])
    assert AESGCM(key).decrypt(nonce, b64u_decode(doc["ct"]), header) == kek.key


def test_permissions(kek_file: tuple[Path, KEK]) -> None:
    path, _ = kek_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [KEK_FILE_NAME]  # no temp file left


def test_refuses_overwrite(kek_file: tuple[Path, KEK]) -> None:
    path, kek = kek_file
    before = path.read_bytes()
    with pytest.raises(ConflictError) as info:
        create_kek(path, PASSWORD, scrypt_n=N)
    assert info.value.code == "kek_exists"
    assert path.read_bytes() == before
    assert load_kek(path, PASSWORD) == kek


def test_wrong_password(kek_file: tuple[Path, KEK]) -> None:
    path, _ = kek_file
    with pytest.raises(AuthenticationError) as info:
        load_kek(path, b"not the password")
    assert info.value.code == "bad_kek_password"
    with pytest.raises(AuthenticationError):
        load_kek(path, b"")


def test_missing_file(path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_kek(path, PASSWORD)


@pytest.mark.parametrize("password", [b"", b"with\x00nul", "text"])
def test_bad_passwords_refused_at_creation(path: Path, password: object) -> None:
    with pytest.raises(ValidationError):
        create_kek(path, password, scrypt_n=N)  # type: ignore[arg-type]
    assert not path.exists()


@pytest.mark.parametrize("n", [2**9, 3 * 2**10, 2**21])
def test_bad_scrypt_cost_refused(path: Path, n: int) -> None:
    with pytest.raises(ValidationError):
        create_kek(path, PASSWORD, scrypt_n=n)


def test_every_flipped_byte_is_refused(kek_file: tuple[Path, KEK]) -> None:
    path, _ = kek_file
    raw = path.read_bytes()
    for i in range(len(raw)):
        for mask in (0x01, 0x20):
            bad = bytearray(raw)
            bad[i] ^= mask
            with pytest.raises(LedgerError):
                decrypt_kek(bytes(bad), PASSWORD)
    assert decrypt_kek(raw, PASSWORD).key == load_kek(path, PASSWORD).key  # negative control


def _edit(raw: bytes, **changes: object) -> bytes:
    doc = json.loads(raw)
    for dotted, value in changes.items():
        target = doc
        *parents, last = dotted.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    return canonical_bytes(doc)


def test_authenticated_fields(kek_file: tuple[Path, KEK]) -> None:
    """Re-canonicalised edits of header fields fail the AEAD tag, not just the parser."""
    path, _ = kek_file
    raw = path.read_bytes()
    for changes in ({"kek_id": "0" * 32}, {"kdf__n": 2**11}, {"kdf__salt": b64u_encode(b"s" * 16)}):
        with pytest.raises(AuthenticationError):
            decrypt_kek(_edit(raw, **changes), PASSWORD)


def test_structure_errors(kek_file: tuple[Path, KEK]) -> None:
    path, _ = kek_file
    raw = path.read_bytes()
    for changes in (
        {"v": 2},
        {"type": "carechain-key"},
        {"kek_id": "XYZ"},
        {"extra": 1},
        {"kdf__name": "pbkdf2"},
        {"aead__name": "chacha20-poly1305"},
        {"aead__nonce": b64u_encode(b"n" * 8)},
        {"ct": b64u_encode(b"c" * 20)},
    ):
        with pytest.raises(ValidationError):
            decrypt_kek(_edit(raw, **changes), PASSWORD)
    with pytest.raises(ValidationError):
        decrypt_kek(b'{"v": 1}', PASSWORD)  # not canonical
    with pytest.raises(ValidationError):
        decrypt_kek(raw + b" ", PASSWORD)


def test_swapped_ciphertext_from_another_file(tmp_path: Path) -> None:
    a = create_kek(tmp_path / "a.json", PASSWORD, scrypt_n=N)
    create_kek(tmp_path / "b.json", PASSWORD, scrypt_n=N)
    doc_b = json.loads((tmp_path / "b.json").read_bytes())
    with pytest.raises(AuthenticationError):
        decrypt_kek(_edit((tmp_path / "a.json").read_bytes(), ct=doc_b["ct"]), PASSWORD)
    assert load_kek(tmp_path / "a.json", PASSWORD) == a


def test_key_id_must_match_the_key() -> None:
    """A file whose (authenticated) kek_id is not its key's id is refused after decryption."""
    kek = KEK.generate()
    raw = encrypt_kek(kek, PASSWORD, scrypt_n=N)
    doc = json.loads(raw)
    doc["kek_id"] = "ab" * 16
    header = {k: v for k, v in doc.items() if k != "ct"}
    key = derive_password_key(PASSWORD, b64u_decode(doc["kdf"]["salt"]), n=N)
    nonce = b64u_decode(doc["aead"]["nonce"])
    ct = AESGCM(key).encrypt(nonce, kek.key, canonical_bytes(header))
    forged = canonical_bytes({**header, "ct": b64u_encode(ct)})
    with pytest.raises(VerificationError):
        decrypt_kek(forged, PASSWORD)


# -- wrapping ------------------------------------------------------------------------------


def test_rfc3394_vector() -> None:
    """RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK."""
    kek = KEK(bytes(range(32)))
    data = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    wrapped = bytes.fromhex(
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    )
    assert kek.wrap(data) == wrapped
    assert kek.unwrap(wrapped) == data


def test_wrap_round_trip_and_repr() -> None:
    kek = KEK.generate()
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = kek.wrap(data_key)
    assert len(wrapped) == 40 and data_key not in wrapped
    assert kek.unwrap(wrapped) == data_key
    assert kek.key.hex() not in repr(kek) and repr(kek.key) not in repr(kek)
    assert kek.kek_id in repr(kek)


def test_wrong_kek_cannot_unwrap() -> None:
    wrapped = KEK.generate().wrap(b"k" * 32)
    with pytest.raises(VerificationError) as info:
        KEK.generate().unwrap(wrapped)
    assert info.value.code == "bad_wrapped_key"


def test_every_tampered_wrapped_key_is_refused() -> None:
    kek = KEK.generate()
    wrapped = kek.wrap(b"k" * 32)
    for i in range(len(wrapped)):
        bad = bytearray(wrapped)
        bad[i] ^= 0x80
        with pytest.raises(VerificationError):
            kek.unwrap(bytes(bad))
    for bad_len in (b"", wrapped[:-8], wrapped + b"\x00" * 8, wrapped[:39]):
        with pytest.raises(VerificationError):
            kek.unwrap(bad_len)


@pytest.mark.parametrize("data_key", [b"", b"k" * 16, b"k" * 31, b"k" * 33, "k" * 32])
def test_wrap_takes_only_32_byte_keys(data_key: object) -> None:
    with pytest.raises(ValidationError):
        KEK.generate().wrap(data_key)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 33])
def test_kek_size(key: bytes) -> None:
    with pytest.raises(ValidationError):
        KEK(key)
