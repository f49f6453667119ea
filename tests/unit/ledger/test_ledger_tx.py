"""Transactions: strict parsing of bodies and envelopes, signing bytes and ids."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.crypto.signatures import check_signature, generate_key
from carechain.encoding import b64u_encode, canonical_bytes, pae
from carechain.errors import LimitExceededError, ValidationError
from carechain.ledger.tx import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNERS,
    TX_TAG,
    Signer,
    TxBody,
    compute_tx_id,
    encode_envelope,
    make_tx,
    parse_body,
    parse_envelope,
    sign_tx,
    signing_bytes,
)

ED = generate_key("ed25519")
ED2 = generate_key("ed25519")
ML = generate_key("ml-dsa-65")
NONCE = bytes(range(16))
DROP = object()


def body_obj(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "args": {"x": 1},
        "chain": "test-chain",
        "created": 1_700_000_000_000,
        "kind": "identity.register_member@1",
        "nonce": b64u_encode(NONCE),
        "sender": "seoul-general.admin",
        "signers": [{"alg": ED.alg, "kid": ED.kid}],
    }
    obj.update(over)
    return {k: v for k, v in obj.items() if v is not DROP}


def body_bytes(**over: Any) -> bytes:
    return canonical_bytes(body_obj(**over))


def envelope(body: bytes, sigs: list[bytes] | None = None) -> bytes:
    return encode_envelope(body, [b"\x01" * 64] if sigs is None else sigs)


def test_a_well_formed_body_and_envelope_parse() -> None:
    raw = envelope(body_bytes())
    tx = parse_envelope(raw)
    assert tx.raw == raw
    assert tx.body == TxBody(
        chain="test-chain",
        kind="identity.register_member@1",
        sender="seoul-general.admin",  # type: ignore[arg-type]
        created=1_700_000_000_000,
        nonce=NONCE,
        args={"x": 1},
        signers=(Signer(alg=ED.alg, kid=ED.kid),),
    )
    assert tx.sigs == (b"\x01" * 64,)
    assert tx.tx_id == hashlib.sha256(pae(TX_TAG, tx.body_bytes)).digest()
    assert canonical_bytes(tx.body.to_json()) == tx.body_bytes


# -- body rejections ----------------------------------------------------------------------------

_ED_SIGNER = {"alg": "ed25519", "kid": ED.kid}
_BAD_BODIES = {
    "unknown-field": body_obj(extra=1),
    "unknown-field-fee": body_obj(fee=0),
    **{f"missing-{f}": body_obj(**{f: DROP}) for f in body_obj()},
    "kind-no-version": body_obj(kind="identity.register_member"),
    "kind-no-dot": body_obj(kind="identity@1"),
    "kind-uppercase": body_obj(kind="Identity.register@1"),
    "kind-version-0": body_obj(kind="identity.register@0"),
    "kind-version-leading-0": body_obj(kind="identity.register@01"),
    "kind-version-4-digits": body_obj(kind="identity.register@1000"),
    "kind-three-parts": body_obj(kind="a.b.c@1"),
    "kind-trailing-space": body_obj(kind="identity.register@1 "),
    "kind-trailing-newline": body_obj(kind="identity.register@1\n"),
    "kind-digit-first": body_obj(kind="1identity.register@1"),
    "kind-not-string": body_obj(kind=1),
    "nonce-15": body_obj(nonce=b64u_encode(b"\x00" * 15)),
    "nonce-17": body_obj(nonce=b64u_encode(b"\x00" * 17)),
    "nonce-empty": body_obj(nonce=""),
    "nonce-padded": body_obj(nonce=b64u_encode(NONCE) + "=="),
    "nonce-std-alphabet": body_obj(nonce="+" * 22),
    "nonce-not-string": body_obj(nonce=16),
    "created-negative": body_obj(created=-1),
    "created-bool": body_obj(created=True),
    "created-string": body_obj(created="1700000000000"),
    "signers-zero": body_obj(signers=[]),
    "signers-too-many": body_obj(
        signers=[{"alg": "ed25519", "kid": generate_key().kid} for _ in range(MAX_SIGNERS + 1)]
    ),
    "signers-duplicate": body_obj(signers=[_ED_SIGNER, _ED_SIGNER]),
    "signers-duplicate-kid-other-alg": body_obj(
        signers=[_ED_SIGNER, {"alg": "ml-dsa-65", "kid": ED.kid}]
    ),
    "signers-not-list": body_obj(signers=_ED_SIGNER),
    "signer-not-object": body_obj(signers=[ED.kid]),
    "signer-extra-field": body_obj(signers=[{**_ED_SIGNER, "pub": "AA"}]),
    "signer-missing-kid": body_obj(signers=[{"alg": "ed25519"}]),
    "alg-unknown": body_obj(signers=[{"alg": "rsa-2048", "kid": ED.kid}]),
    "alg-uppercase": body_obj(signers=[{"alg": "Ed25519", "kid": ED.kid}]),
    "alg-none": body_obj(signers=[{"alg": "none", "kid": ED.kid}]),
    "alg-not-string": body_obj(signers=[{"alg": 1, "kid": ED.kid}]),
    "kid-uppercase": body_obj(signers=[{"alg": "ed25519", "kid": ED.kid.upper()}]),
    "kid-31": body_obj(signers=[{"alg": "ed25519", "kid": ED.kid[:31]}]),
    "kid-33": body_obj(signers=[{"alg": "ed25519", "kid": ED.kid + "0"}]),
    "kid-trailing-newline": body_obj(signers=[{"alg": "ed25519", "kid": ED.kid + "\n"}]),
    "kid-not-hex": body_obj(signers=[{"alg": "ed25519", "kid": "g" * 32}]),
    "kid-not-string": body_obj(signers=[{"alg": "ed25519", "kid": 1}]),
    "sender-uppercase": body_obj(sender="Alice"),
    "sender-one-char": body_obj(sender="a"),
    "sender-leading-dash": body_obj(sender="-alice"),
    "sender-too-long": body_obj(sender="a" * 65),
    "sender-trailing-newline": body_obj(sender="alice\n"),
    "sender-slash": body_obj(sender="a/b"),
    "sender-not-string": body_obj(sender=7),
    "args-array": body_obj(args=[]),
    "args-string": body_obj(args="{}"),
    "chain-not-string": body_obj(chain=1),
}


@pytest.mark.parametrize("obj", list(_BAD_BODIES.values()), ids=list(_BAD_BODIES))
def test_parse_body_rejects(obj: dict[str, Any]) -> None:
    data = canonical_bytes(obj)
    with pytest.raises(ValidationError):
        parse_body(data)
    # ...and an envelope carrying it is rejected just the same
    with pytest.raises(ValidationError):
        parse_envelope(envelope(data, [b"\x01" * 64] * max(1, len(obj.get("signers", [])))))


def test_parse_body_accepts_the_boundaries() -> None:
    """Negative control for the table above: the edges of every rule are accepted."""
    keys = [generate_key() for _ in range(MAX_SIGNERS)]
    ok = [
        body_obj(kind="a.b@999"),
        body_obj(kind="records.put_v2@12"),
        body_obj(created=0),
        body_obj(sender="ab"),
        body_obj(sender="a" * 64),
        body_obj(sender="pt-0123456789abcdef0123"),
        body_obj(args={}),
        body_obj(signers=[{"alg": k.alg, "kid": k.kid} for k in keys]),
        body_obj(signers=[{"alg": "ml-dsa-65", "kid": ML.kid}]),
        body_obj(chain=""),  # the chain id is compared with the node's, not parsed
    ]
    for obj in ok:
        assert parse_body(canonical_bytes(obj)).kind == obj["kind"]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b + b" ", id="trailing-space"),
        pytest.param(lambda b: b.replace(b'":', b'": ', 1), id="space-after-colon"),
        pytest.param(lambda b: b.replace(b'{"args":{"x":1},', b"{") + b"", id="missing-args"),
        pytest.param(
            lambda b: b.replace(
                b'"args":{"x":1},"chain":"test-chain"', b'"chain":"test-chain","args":{"x":1}'
            ),
            id="unsorted",
        ),
        pytest.param(lambda b: b.replace(b'"x":1', b'"x":1,"x":1'), id="duplicate-key"),
        pytest.param(lambda b: b.replace(b"test-chain", b"test\\u002dchain"), id="escape"),
        pytest.param(lambda b: b"[" + b + b"]", id="array"),
    ],
)
def test_parse_body_rejects_non_canonical_bytes(mangle: Any) -> None:
    good = body_bytes()
    bad = mangle(good)
    assert bad != good
    with pytest.raises(ValidationError):
        parse_body(bad)
    with pytest.raises(ValidationError):
        parse_envelope(envelope(bad))


# -- envelope rejections --------------------------------------------------------------------------


def _env(obj: dict[str, Any]) -> bytes:
    return canonical_bytes(obj)


_BODY_B64 = b64u_encode(body_bytes())
_SIG_B64 = b64u_encode(b"\x01" * 64)
_BAD_ENVELOPES = {
    "sigs-none": _env({"body": _BODY_B64, "sigs": []}),
    "sigs-too-many": _env({"body": _BODY_B64, "sigs": [_SIG_B64, _SIG_B64]}),
    "sigs-missing": _env({"body": _BODY_B64}),
    "body-missing": _env({"sigs": [_SIG_B64]}),
    "unknown-field": _env({"alg": "ed25519", "body": _BODY_B64, "sigs": [_SIG_B64]}),
    "body-padded": _env({"body": b64u_encode(body_bytes()) + "=", "sigs": [_SIG_B64]}),
    "body-not-string": _env({"body": body_obj(), "sigs": [_SIG_B64]}),
    "sigs-not-list": _env({"body": _BODY_B64, "sigs": _SIG_B64}),
    "sig-not-string": _env({"body": _BODY_B64, "sigs": [1]}),
    "sig-std-alphabet": _env({"body": _BODY_B64, "sigs": ["+/" * 43]}),
    "sig-too-long": _env({"body": _BODY_B64, "sigs": [b64u_encode(b"\x00" * 8193)]}),
    "array": _env([_BODY_B64, [_SIG_B64]]),  # type: ignore[arg-type]
    "not-canonical-space": b'{"body": "'
    + _BODY_B64.encode()
    + b'","sigs":["'
    + _SIG_B64.encode()
    + b'"]}',
    "not-canonical-order": b'{"sigs":["'
    + _SIG_B64.encode()
    + b'"],"body":"'
    + _BODY_B64.encode()
    + b'"}',
    "trailing-newline": _env({"body": _BODY_B64, "sigs": [_SIG_B64]}) + b"\n",
}


@pytest.mark.parametrize("raw", list(_BAD_ENVELOPES.values()), ids=list(_BAD_ENVELOPES))
def test_parse_envelope_rejects(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_envelope(raw)


def test_the_envelope_table_has_a_valid_twin() -> None:
    """Negative control: the same fields, well formed, parse."""
    assert parse_envelope(_env({"body": _BODY_B64, "sigs": [_SIG_B64]})).sigs == (b"\x01" * 64,)


def test_sig_count_must_match_signers_both_ways() -> None:
    two = body_bytes(signers=[_ED_SIGNER, {"alg": "ed25519", "kid": ED2.kid}])
    assert len(parse_envelope(envelope(two, [b"a", b"b"])).sigs) == 2
    for sigs in ([], [b"a"], [b"a", b"b", b"c"]):
        with pytest.raises(ValidationError, match="signatures"):
            parse_envelope(envelope(two, sigs))


def test_oversize_envelope_is_rejected_before_parsing() -> None:
    raw = b" " * (MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(LimitExceededError):
        parse_envelope(raw)
    big = body_bytes(args={"blob": "a" * (MAX_ENVELOPE_BYTES // 2)})
    with pytest.raises(ValidationError):  # the string limit of a body or the envelope size
        parse_envelope(envelope(big))


# -- signing and ids -----------------------------------------------------------------------------


def _body(keys: list[Any], nonce: bytes = NONCE, **over: Any) -> TxBody:
    fields: dict[str, Any] = {
        "chain": "test-chain",
        "kind": "identity.register_member@1",
        "sender": "seoul-general.admin",
        "created": 1_700_000_000_000,
        "nonce": nonce,
        "args": {"x": 1},
        "signers": tuple(Signer(alg=k.alg, kid=k.kid) for k in keys),
    }
    fields.update(over)
    return TxBody(**fields)


def test_same_body_re_signed_with_ml_dsa_has_one_id_and_two_signatures() -> None:
    body = _body([ML])
    a, b = sign_tx(body, [ML]), sign_tx(body, [ML])
    assert a.sigs != b.sigs and a.raw != b.raw  # ML-DSA-65 signing is hedged (randomised)
    assert a.body_bytes == b.body_bytes
    assert a.tx_id == b.tx_id == compute_tx_id(a.body_bytes)
    for tx in (a, b):
        assert check_signature(ML.alg, ML.public, signing_bytes(tx.body_bytes), tx.sigs[0])
    # negative control: another nonce is another transaction
    c = sign_tx(_body([ML], nonce=b"\xff" * 16), [ML])
    assert c.tx_id != a.tx_id


def test_ed25519_re_signing_gives_identical_bytes() -> None:
    body = _body([ED])
    assert sign_tx(body, [ED]).raw == sign_tx(body, [ED]).raw


def test_the_signers_alg_and_kid_are_inside_the_signed_bytes() -> None:
    tx = sign_tx(_body([ED]), [ED])
    assert ED.kid.encode() in tx.body_bytes and b'"alg":"ed25519"' in tx.body_bytes
    swapped = canonical_bytes(
        {**tx.body.to_json(), "signers": [{"alg": "ml-dsa-65", "kid": ED.kid}]}
    )
    assert compute_tx_id(swapped) != tx.tx_id
    assert not check_signature(ED.alg, ED.public, signing_bytes(swapped), tx.sigs[0])


def test_signing_bytes_are_pae_framed() -> None:
    tx = sign_tx(_body([ED]), [ED])
    assert signing_bytes(tx.body_bytes) == b"CCv1 14 carechain/tx@1 %d %s" % (
        len(tx.body_bytes),
        tx.body_bytes,
    )
    # the tx id is not the plain hash of the body nor of the envelope
    assert tx.tx_id not in (hashlib.sha256(tx.body_bytes).digest(), hashlib.sha256(tx.raw).digest())


def test_sign_tx_refuses_keys_that_do_not_match_the_signers() -> None:
    with pytest.raises(ValidationError):
        sign_tx(_body([ED]), [ED2])
    with pytest.raises(ValidationError):
        sign_tx(_body([ED, ED2]), [ED2, ED])  # order matters
    with pytest.raises(ValidationError):
        sign_tx(_body([ED, ED2]), [ED])


def test_make_tx_signs_every_key_in_order() -> None:
    tx = make_tx(
        chain="c", kind="identity.rotate_key@1", sender="pt-aaaa", args={}, keys=[ED, ML],
        created=5, nonce=NONCE,
    )  # fmt: skip
    assert [s.kid for s in tx.body.signers] == [ED.kid, ML.kid]
    msg = signing_bytes(tx.body_bytes)
    assert check_signature(ED.alg, ED.public, msg, tx.sigs[0])
    assert check_signature(ML.alg, ML.public, msg, tx.sigs[1])
    with pytest.raises(ValidationError):
        make_tx(chain="c", kind="a.b@1", sender="Bad", args={}, keys=[ED], created=5, nonce=NONCE)


_arg_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=50)
@given(
    args=st.dictionaries(st.text(max_size=6), _arg_values, max_size=4),
    created=st.integers(0, 2**53 - 1),
    nonce=st.binary(min_size=16, max_size=16),
    kind=st.from_regex(r"\A[a-z][a-z0-9_]{0,5}\.[a-z][a-z0-9_]{0,5}@[1-9][0-9]{0,2}\Z"),
    sender=st.from_regex(r"\A[a-z0-9][a-z0-9._:-]{1,20}\Z"),
)
def test_sign_then_parse_round_trips(
    args: dict[str, Any], created: int, nonce: bytes, kind: str, sender: str
) -> None:
    body = _body([ED], nonce=nonce, args=args, created=created, kind=kind, sender=sender)
    tx = sign_tx(body, [ED])
    again = parse_envelope(tx.raw)
    assert again == tx
    assert again.body == body
