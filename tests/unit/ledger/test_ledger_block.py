"""Block headers and seals: canonical round trip, strict parsing, hashing and sealing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carechain.crypto.hashing import Hash32
from carechain.crypto.signatures import check_signature, generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ValidationError
from carechain.ledger.block import (
    BlockHeader,
    Seal,
    header_hash,
    parse_header,
    parse_seal,
    seal_signing_bytes,
    sign_header,
)

hashes = st.binary(min_size=32, max_size=32).map(Hash32)
naturals = st.integers(0, 2**53 - 1)
seals = st.dictionaries(
    st.text(max_size=6),
    st.one_of(st.text(max_size=8), st.integers(0, 10**9), st.booleans()),
    max_size=4,
)


@st.composite
def headers(draw: st.DrawFn) -> BlockHeader:
    return BlockHeader(
        chain=draw(st.text(max_size=20)),
        height=draw(naturals),
        prev=draw(hashes),
        time=draw(naturals),
        txs=draw(naturals),
        tx_root=draw(hashes),
        receipt_root=draw(hashes),
        log_size=draw(naturals),
        log_root=draw(hashes),
        state_root=draw(hashes),
        proposer=draw(st.text(max_size=40)),
        seal=draw(seals),
    )


@given(headers())
def test_header_round_trip(header: BlockHeader) -> None:
    data = header.to_bytes()
    assert parse_header(data) == header
    assert parse_header(data).to_bytes() == data


@given(headers(), headers())
def test_different_headers_have_different_bytes_and_hashes(a: BlockHeader, b: BlockHeader) -> None:
    if a != b:
        assert a.to_bytes() != b.to_bytes()
        assert header_hash(a.to_bytes()) != header_hash(b.to_bytes())


def _header_obj(**over: Any) -> dict[str, Any]:
    z = b64u_encode(b"\x00" * 32)
    obj: dict[str, Any] = {
        "chain": "c", "height": 1, "prev": z, "time": 5, "txs": 0, "tx_root": z,
        "receipt_root": z, "log_size": 0, "log_root": z, "state_root": z,
        "proposer": "p", "seal": {"kind": "solo"},
    }  # fmt: skip
    obj.update(over)
    return {k: v for k, v in obj.items() if v is not None}


_FIELDS = list(_header_obj())
_BAD_HEADERS = {
    **{f"missing-{f}": _header_obj(**{f: None}) for f in _FIELDS},
    "extra-field": _header_obj(extra=1),
    "extra-signature": _header_obj(sig="AA"),
    **{f"{f}-31-bytes": _header_obj(**{f: b64u_encode(b"\x00" * 31)}) for f in
       ("prev", "tx_root", "receipt_root", "log_root", "state_root")},
    "prev-33-bytes": _header_obj(prev=b64u_encode(b"\x00" * 33)),
    "prev-hex": _header_obj(prev="00" * 32),
    "prev-padded": _header_obj(prev=b64u_encode(b"\x00" * 32) + "="),
    "prev-not-string": _header_obj(prev=0),
    **{f"{f}-negative": _header_obj(**{f: -1}) for f in ("height", "time", "txs", "log_size")},
    **{f"{f}-bool": _header_obj(**{f: True}) for f in ("height", "time", "txs", "log_size")},
    **{f"{f}-string": _header_obj(**{f: "1"}) for f in ("height", "time", "txs", "log_size")},
    "chain-not-string": _header_obj(chain=1),
    "proposer-not-string": _header_obj(proposer=["p"]),
    "seal-not-object": _header_obj(seal="solo"),
    "seal-array": _header_obj(seal=[]),
}  # fmt: skip


@pytest.mark.parametrize("obj", list(_BAD_HEADERS.values()), ids=list(_BAD_HEADERS))
def test_parse_header_rejects(obj: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_header(canonical_bytes(obj))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(canonical_bytes(_header_obj()) + b" ", id="trailing-space"),
        pytest.param(canonical_bytes(_header_obj()).replace(b":", b": ", 1), id="space"),
        pytest.param(canonical_bytes(_header_obj()).replace(b'"height":1', b'"height":1.0'),
                     id="float-height"),
        pytest.param(canonical_bytes(_header_obj()).replace(b'"height":1', b'"height":null'),
                     id="null-height"),
        pytest.param(canonical_bytes(_header_obj()).replace(b'"height":1', b'"height":%d' % 2**53),
                     id="height-2^53"),
        pytest.param(b"[" + canonical_bytes(_header_obj()) + b"]", id="array"),
        pytest.param(b"{}", id="empty"),
        pytest.param(b"\x00" * 20_000, id="oversize"),
    ],
)  # fmt: skip
def test_parse_header_rejects_non_canonical_or_malformed_bytes(data: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_header(data)


def test_the_header_table_has_a_valid_twin() -> None:
    """Negative control: the base object of the tables parses."""
    h = parse_header(canonical_bytes(_header_obj()))
    assert h.height == 1 and h.seal == {"kind": "solo"}


def test_header_hash_is_domain_separated() -> None:
    data = canonical_bytes(_header_obj())
    assert header_hash(data) != hashlib.sha256(data).digest()
    assert len(header_hash(data)) == 32


@pytest.mark.parametrize("alg", ["ed25519", "ml-dsa-65"])
def test_seal_round_trip_and_verification(alg: str) -> None:
    key = generate_key(alg)
    data = canonical_bytes(_header_obj())
    seal = sign_header(data, key)
    assert seal.kid == key.kid and seal.alg == alg
    assert parse_seal(seal.to_bytes()) == seal
    assert check_signature(alg, key.public, seal_signing_bytes(header_hash(data)), seal.sig)
    # negative control: the seal does not verify for another header
    other = canonical_bytes(_header_obj(height=2))
    assert not check_signature(alg, key.public, seal_signing_bytes(header_hash(other)), seal.sig)
    # a seal is not a signature over the raw header hash (domain separation)
    assert not check_signature(alg, key.public, header_hash(data), seal.sig)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(canonical_bytes({"alg": "ed25519", "kid": "k"}), id="missing-sig"),
        pytest.param(canonical_bytes({"alg": "ed", "kid": "k", "sig": "AA", "x": 1}), id="extra"),
        pytest.param(canonical_bytes({"alg": 1, "kid": "k", "sig": "AA"}), id="alg-int"),
        pytest.param(canonical_bytes({"alg": "ed25519", "kid": ["k"], "sig": "AA"}), id="kid-list"),
        pytest.param(canonical_bytes({"alg": "ed25519", "kid": "k", "sig": "AA=="}), id="padded"),
        pytest.param(b'{"alg":"ed25519","kid":"k","sig":"AA"} ', id="non-canonical"),
    ],
)  # fmt: skip
def test_parse_seal_rejects(data: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_seal(data)
    assert parse_seal(Seal(alg="ed25519", kid="k", sig=b"\x00").to_bytes()).sig == b"\x00"
