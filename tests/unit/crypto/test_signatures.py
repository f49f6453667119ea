"""Signature registry: both schemes, strictness, key ids and RFC 8032 vectors."""

from __future__ import annotations

import pytest

from carechain.crypto.signatures import (
    ALGORITHMS,
    PrivateKey,
    PublicKeyRecord,
    check_signature,
    generate_key,
    get_scheme,
    key_id,
    verify_signature,
)
from carechain.errors import SignatureError, ValidationError

MESSAGE = b"carechain test message \x00\xff"

# RFC 8032 §7.1 "Test Vectors for Ed25519", TEST 1 and TEST 2
# (https://www.rfc-editor.org/rfc/rfc8032#section-7.1): secret key (seed), public key, message,
# signature, all hex.
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="rfc8032-test1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="rfc8032-test2",
    ),
]

# Order of the Ed25519 base point, RFC 8032 §5.1.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture(scope="module", params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return generate_key(request.param)


def test_registry_lists_both_algorithms() -> None:
    assert ALGORITHMS == ("ed25519", "ml-dsa-65")


def test_sign_verify_round_trip(key: PrivateKey) -> None:
    scheme = get_scheme(key.alg)
    signature = key.sign(MESSAGE)
    assert len(signature) == scheme.signature_size
    assert len(key.public) == scheme.public_key_size
    assert check_signature(key.alg, key.public, MESSAGE, signature)
    verify_signature(key.alg, key.public, MESSAGE, signature)  # does not raise


def test_wrong_message_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    for other in (b"", MESSAGE + b"\x00", MESSAGE[:-1], MESSAGE.upper()):
        assert not check_signature(key.alg, key.public, other, signature)
    with pytest.raises(SignatureError, match=key.kid):
        verify_signature(key.alg, key.public, b"other", signature)


def test_wrong_key_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    other = generate_key(key.alg)
    assert check_signature(key.alg, key.public, MESSAGE, signature)  # negative control
    assert not check_signature(key.alg, other.public, MESSAGE, signature)
    with pytest.raises(SignatureError):
        verify_signature(key.alg, other.public, MESSAGE, signature)


def test_truncated_and_extended_signatures_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    for bad in (
        b"",
        signature[:-1],
        signature[1:],
        signature[: len(signature) // 2],
        signature + b"\x00",
        signature + signature,
        b"\x00" + signature,
    ):
        assert not check_signature(key.alg, key.public, MESSAGE, bad)


def test_truncated_and_extended_public_keys_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    for bad in (b"", key.public[:-1], key.public + b"\x00"):
        assert not check_signature(key.alg, bad, MESSAGE, signature)


def _bit_positions(size: int) -> list[tuple[int, int]]:
    """Every bit of small signatures; for large ones every bit of ~100 spread bytes."""
    if size <= 64:
        return [(i, b) for i in range(size) for b in range(8)]
    indices = sorted({*range(0, size, size // 97), size - 1})
    return [(i, b) for i in indices for b in (0, 3, 7)]


def test_bit_flips_in_signature_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    assert check_signature(key.alg, key.public, MESSAGE, signature)  # negative control
    positions = _bit_positions(len(signature))
    assert len(positions) >= 64 * 8 if key.alg == "ed25519" else len(positions) > 250
    for index, bit in positions:
        bad = bytearray(signature)
        bad[index] ^= 1 << bit
        assert not check_signature(key.alg, key.public, MESSAGE, bytes(bad)), (index, bit)


def test_bit_flips_in_public_key_rejected(key: PrivateKey) -> None:
    signature = key.sign(MESSAGE)
    for index, bit in _bit_positions(len(key.public))[::7]:
        bad = bytearray(key.public)
        bad[index] ^= 1 << bit
        assert not check_signature(key.alg, bytes(bad), MESSAGE, signature), (index, bit)


@pytest.mark.parametrize("alg", ["rsa", "", "ED25519", "ml-dsa-44", "hybrid"])
def test_unknown_algorithm_raises_validation_error(alg: str) -> None:
    with pytest.raises(ValidationError, match="unknown signature algorithm"):
        get_scheme(alg)
    with pytest.raises(ValidationError):
        generate_key(alg)
    with pytest.raises(ValidationError):
        verify_signature(alg, b"\x00" * 32, MESSAGE, b"\x00" * 64)
    with pytest.raises(ValidationError):
        PrivateKey(alg, b"\x00" * 32).sign(MESSAGE)
    assert not check_signature(alg, b"\x00" * 32, MESSAGE, b"\x00" * 64)


def test_unhashable_algorithm_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        get_scheme(["ed25519"])  # type: ignore[arg-type]


def test_key_ids_differ_between_algorithms_for_the_same_bytes() -> None:
    for public in (b"\x00" * 32, bytes(range(32)), b"\x07" * 1952):
        ids = {key_id(alg, public) for alg in ALGORITHMS}
        assert len(ids) == len(ALGORITHMS)
        assert ids == {PublicKeyRecord(alg=a, public=public).kid for a in ALGORITHMS}
        for kid in ids:
            assert len(kid) == 32 and kid == kid.lower()
            int(kid, 16)


def test_key_id_is_stable_and_distinct_per_key(key: PrivateKey) -> None:
    assert key.kid == key_id(key.alg, key.public) == key.record.kid
    assert key.kid != generate_key(key.alg).kid


def test_private_key_repr_hides_the_secret(key: PrivateKey) -> None:
    assert key.private.hex() not in repr(key)


def test_ml_dsa_signing_is_hedged() -> None:
    key = generate_key("ml-dsa-65")
    first, second = key.sign(MESSAGE), key.sign(MESSAGE)
    assert first != second
    assert check_signature("ml-dsa-65", key.public, MESSAGE, first)
    assert check_signature("ml-dsa-65", key.public, MESSAGE, second)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
def test_ed25519_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    sk, pk, msg, sig = (bytes.fromhex(x) for x in (secret, public, message, signature))
    key = PrivateKey("ed25519", sk)
    assert key.public == pk
    assert key.sign(msg) == sig  # Ed25519 is deterministic (RFC 8032 §5.1.6)
    assert check_signature("ed25519", pk, msg, sig)
    verify_signature("ed25519", pk, msg, sig)
    assert not check_signature("ed25519", pk, msg + b"\x00", sig)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
def test_ed25519_non_canonical_s_rejected(
    secret: str, public: str, message: str, signature: str
) -> None:
    """RFC 8032 §5.1.7 step 1: S must be < L; S + L is the classic malleated signature."""
    pk, msg, sig = (bytes.fromhex(x) for x in (public, message, signature))
    s = int.from_bytes(sig[32:], "little")
    assert s < ED25519_L
    malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert malleated != sig
    assert check_signature("ed25519", pk, msg, sig)  # negative control
    assert not check_signature("ed25519", pk, msg, malleated)
    with pytest.raises(SignatureError):
        verify_signature("ed25519", pk, msg, malleated)


def test_ed25519_small_order_public_key_rejected() -> None:
    """Identity public key, identity R and S = 0 satisfy the cofactorless equation for any
    message; strict (libsodium) verification refuses small-order keys."""
    identity = (1).to_bytes(32, "little")
    signature = identity + bytes(32)
    for message in (b"", MESSAGE):
        assert not check_signature("ed25519", identity, message, signature)


def test_a_loaded_key_signs_like_a_fresh_one_and_pickles_without_its_handle(
    key: PrivateKey,
) -> None:
    """The signer kept with a PrivateKey (its seed expanded once) is the same key: it signs
    what the stateless scheme signs, equality and hashing ignore it, and pickling sends only
    (alg, seed)."""
    import pickle

    fresh = PrivateKey(key.alg, key.private)
    assert fresh._loaded is None  # nothing loaded before first use
    signature = fresh.sign(MESSAGE)
    assert fresh._loaded is not None and fresh.kid == key_id(key.alg, fresh.public)
    assert check_signature(key.alg, get_scheme(key.alg).public_key(key.private), MESSAGE, signature)
    assert not check_signature(key.alg, generate_key(key.alg).public, MESSAGE, signature)
    if key.alg == "ed25519":  # deterministic: the scheme's one-shot sign gives the same bytes
        assert signature == get_scheme(key.alg).sign(key.private, MESSAGE)
    assert fresh == PrivateKey(key.alg, key.private) and hash(fresh) == hash(key)
    copy = pickle.loads(pickle.dumps(fresh))
    assert copy == fresh and copy._loaded is None
    assert check_signature(key.alg, copy.public, MESSAGE, copy.sign(MESSAGE))
