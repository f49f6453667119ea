"""State overlays, the state commitment, and public-key resolution for signature checks."""

from __future__ import annotations

import os

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ValidationError
from carechain.ledger.keys import (
    introduced_keys,
    key_state_key,
    resolve_sig_checks,
    run_sig_checks,
)
from carechain.ledger.state import EmptyState, Overlay, next_state_root, writes_digest
from carechain.ledger.tx import SignedTx, make_tx, signing_bytes


def test_overlay_reads_through_and_children_merge_only_when_asked() -> None:
    base = Overlay(EmptyState())
    base.put("a", {"x": 1})
    child = base.child()
    assert child.get("a") == {"x": 1}
    child.put("a", {"x": 2})
    child.put("b", True)
    child.delete("c")
    assert base.get("a") == {"x": 1} and base.get("b") is None  # not merged yet
    base.merge(child)
    assert base.get("a") == {"x": 2} and base.get("b") is True
    assert base.writes() == (("a", b'{"x":2}'), ("b", b"true"), ("c", None))
    assert list(base.iter_written("a")) == [("a", b'{"x":2}')]
    with pytest.raises(ValidationError):
        base.put("d", 1.5)  # values are canonical JSON of the model


writes = st.lists(
    st.tuples(st.text(max_size=6), st.one_of(st.none(), st.binary(max_size=8))),
    max_size=6,
    unique_by=lambda kv: kv[0],
).map(lambda ws: tuple(sorted(ws)))


@given(writes, writes)
def test_state_root_commits_to_the_writes(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    prev = b"\x00" * 32
    assert next_state_root(prev, 1, a) == next_state_root(prev, 1, a)
    if a != b:
        assert writes_digest(a) != writes_digest(b)
        assert next_state_root(prev, 1, a) != next_state_root(prev, 1, b)
    assert next_state_root(prev, 1, a) != next_state_root(prev, 2, a)
    assert next_state_root(prev, 1, a) != next_state_root(b"\x01" * 32, 1, a)


def test_a_deletion_differs_from_an_empty_value() -> None:
    assert writes_digest((("k", None),)) != writes_digest((("k", b""),))


class Dict:
    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def find_state(self, key: str) -> bytes | None:
        return self.data.get(key)


def _record(key, account: str = "a1") -> bytes:  # type: ignore[no-untyped-def]
    return canonical_bytes({"account": account, "alg": key.alg, "pub": b64u_encode(key.public),
                            "since": 0, "status": "active"})  # fmt: skip


def _tx(keys, args=None) -> SignedTx:  # type: ignore[no-untyped-def]
    return make_tx(chain="c", kind="identity.rotate_key@1", sender="a1", args=args or {},
                   keys=keys, created=1, nonce=os.urandom(16))  # fmt: skip


def test_resolution_from_state_and_from_introduced_keys() -> None:
    k, new = generate_key(), generate_key("ml-dsa-65")
    state = Dict({key_state_key(k.kid): _record(k)})
    tx = _tx([k, new], {"keys": [{"alg": new.alg, "pub": b64u_encode(new.public)}], "old": k.kid})
    checks = resolve_sig_checks(tx, state)
    assert checks is not None and [c.public for c in checks] == [k.public, new.public]
    assert all(c.message == signing_bytes(tx.body_bytes) for c in checks)
    assert run_sig_checks(checks)
    # an unknown signer: no checks at all
    assert resolve_sig_checks(_tx([generate_key()]), state) is None
    assert resolve_sig_checks(_tx([k, new]), state) is None  # new not introduced this time


def test_resolution_never_substitutes_an_algorithm() -> None:
    k = generate_key()
    state = Dict({key_state_key(k.kid): canonical_bytes(
        {**orjson.loads(_record(k)), "alg": "ml-dsa-65"})})  # fmt: skip
    checks = resolve_sig_checks(_tx([k]), state)
    assert checks is not None and checks[0].public == b"" and not run_sig_checks(checks)


def test_introduced_keys_ignore_malformed_entries() -> None:
    k = generate_key()
    good = {"alg": k.alg, "pub": b64u_encode(k.public)}
    tx = _tx([k], {"keys": [good, {"alg": "ed25519", "pub": "A="}, "x", {"alg": 1, "pub": "AA"}]})
    assert introduced_keys(tx) == {k.kid: (k.alg, k.public)}
    assert introduced_keys(_tx([k], {"keys": "nope"})) == {}
