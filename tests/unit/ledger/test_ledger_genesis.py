"""The genesis document: strict parsing, block 0, and the trust root it commits to."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.contracts import default_contracts
from carechain.crypto.hashing import tagged_hash
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ValidationError
from carechain.ledger.block import header_hash, parse_header
from carechain.ledger.genesis import GENESIS_TAG, genesis_hash, load_genesis
from carechain.ledger.params import ChainParams

ADMIN, NODE = generate_key(), generate_key()
SHORT_KEY = {"alg": "ed25519", "pub": "AA"}


def _pub(key: Any) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def org(
    org_id: str = "seoul-general", *, node: bool = True, admin: Any = ADMIN, **over: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "admins": [{"account": f"{org_id}.admin", "keys": [_pub(admin)]}],
        "id": org_id, "name": "Seoul General", "roles": ["hospital"],
    }  # fmt: skip
    if node:
        obj["nodes"] = [{"name": "n1", **_pub(NODE)}]
    obj.update(over)
    return obj


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "chain": "test-chain",
        "orgs": [org()],
        "params": {},
        "time": 1_700_000_000_000,
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def load(d: dict[str, Any]) -> Any:
    return load_genesis(canonical_bytes(d), default_contracts())


def test_block_zero_is_computed_from_the_document() -> None:
    raw = canonical_bytes(doc())
    g = load_genesis(raw, default_contracts())
    assert g.chain == "test-chain" and g.origin == "carechain.local/test-chain"
    assert g.params == ChainParams()
    assert g.header.height == 0 and g.header.txs == 0 and g.header.log_size == 0
    assert g.header.prev == genesis_hash(raw) == tagged_hash(GENESIS_TAG, raw)
    assert g.hash == header_hash(g.header_bytes) and parse_header(g.header_bytes) == g.header
    keys = dict(g.writes)
    assert f"node/{NODE.kid}" in keys and f"key/{ADMIN.kid}" in keys and "org/seoul-general" in keys
    # deterministic: anyone holding the document recomputes block 0 exactly
    assert load_genesis(raw, default_contracts()).header_bytes == g.header_bytes


def test_any_change_to_the_document_changes_block_zero() -> None:
    base = load(doc())
    for other in (doc(time=1_700_000_000_001), doc(chain="test-chain2"),
                  doc(params={"tx_window_ms": 1000}), doc(origin="example.org/log")):  # fmt: skip
        g = load(other)
        assert g.hash != base.hash and g.header.prev != base.header.prev


_BAD = {
    "not-object": [doc()],
    "unknown-field": doc(extra=1),
    "missing-chain": doc(chain=None),
    "chain-uppercase": doc(chain="Test"),
    "chain-trailing-newline": doc(chain="test-chain\n"),
    "chain-too-long": doc(chain="a" * 65),
    "chain-not-string": doc(chain=1),
    "origin-empty": doc(origin=""),
    "origin-two-lines": doc(origin="a\nb"),
    "origin-control": doc(origin="a\x07b"),
    "missing-time": doc(time=None),
    "time-negative": doc(time=-1),
    "time-bool": doc(time=True),
    "params-unknown": doc(params={"block_gas": 1}),
    "params-zero": doc(params={"tx_window_ms": 0}),
    "params-bool": doc(params={"tx_window_ms": True}),
    "params-not-object": doc(params=[]),
    "no-orgs": doc(orgs=[]),
    "orgs-missing": doc(orgs=None),
    "no-node-key": doc(orgs=[org(node=False)]),
    "duplicate-org": doc(orgs=[org(), org(node=False, admin=generate_key())]),
    "duplicate-admin-key": doc(orgs=[org(), org("hanbit-pharmacy", node=False)]),
    "duplicate-node-key": doc(orgs=[org(), org("hanbit-pharmacy", admin=generate_key())]),
    "bad-role": doc(orgs=[org(roles=["casino"])]),
    "no-admin": doc(orgs=[org(admins=[])]),
    "org-unknown-field": doc(orgs=[org(website="x")]),
    "bad-admin-key": doc(orgs=[org(admins=[{"account": "a.admin", "keys": [SHORT_KEY]}])]),
}  # fmt: skip


@pytest.mark.parametrize("d", list(_BAD.values()), ids=list(_BAD))
def test_load_genesis_rejects(d: Any) -> None:
    with pytest.raises(ValidationError):
        load(d)


def test_load_genesis_rejects_non_canonical_bytes() -> None:
    raw = canonical_bytes(doc())
    for bad in (raw + b"\n", raw.replace(b":", b": ", 1), b" " + raw):
        with pytest.raises(ValidationError):
            load_genesis(bad, default_contracts())


def test_the_genesis_table_has_a_valid_twin() -> None:
    """Negative control: two organisations, an explicit origin and params load."""
    g = load(doc(orgs=[org(), org("hanbit-pharmacy", node=False, admin=generate_key())],
                 origin="carechain.example/ledger", params={"tx_window_ms": 1000}))  # fmt: skip
    assert g.params.tx_window_ms == 1000 and g.origin == "carechain.example/ledger"
