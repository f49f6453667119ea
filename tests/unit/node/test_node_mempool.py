"""The mempool: bounded, deduplicating, all-or-nothing, first in first out."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.crypto.signatures import generate_key
from carechain.errors import DuplicateTransactionError, UnavailableError
from carechain.ledger.tx import SignedTx, make_tx
from carechain.node.mempool import Mempool

KEY = generate_key()


def tx(pad: int = 0) -> SignedTx:
    return make_tx(
        chain="c", kind="identity.revoke_key@1", sender="someone", args={"pad": "x" * pad},
        keys=[KEY], created=1, nonce=os.urandom(16),
    )  # fmt: skip


def test_full_by_count_is_back_pressure_and_changes_nothing() -> None:
    pool = Mempool(max_txs=3)
    first = pool.add_many([tx(), tx()])
    with pytest.raises(UnavailableError) as info:
        pool.add_many([tx(), tx()])
    assert info.value.code == "mempool_full" and info.value.retry_after >= 1
    assert len(pool) == 2  # all or nothing
    pool.add_many([tx()])  # exactly full is fine
    with pytest.raises(UnavailableError):
        pool.add_many([tx()])
    assert [p.tx for p in pool.take(10, 1 << 20)][:2] == [p.tx for p in first]
    assert len(pool) == 0 and not pool.nonempty.is_set()
    pool.add_many([tx(), tx(), tx()])  # space is freed by take


def test_full_by_bytes() -> None:
    a = tx(100)
    pool = Mempool(max_bytes=len(a.raw) * 2 + 10)
    pool.add_many([a, tx(100)])
    with pytest.raises(UnavailableError) as info:
        pool.add_many([tx(100)])
    assert info.value.code == "mempool_full"
    pool.take(1, 1 << 20)
    pool.add_many([tx(100)])
    assert len(pool) == 2


def test_dedup_across_and_within_calls() -> None:
    pool = Mempool()
    a, b = tx(), tx()
    pool.add_many([a])
    assert pool.contains(a.tx_id) and not pool.contains(b.tx_id)
    with pytest.raises(DuplicateTransactionError):
        pool.add_many([b, a])
    assert len(pool) == 1 and not pool.contains(b.tx_id)  # b was not added either
    with pytest.raises(DuplicateTransactionError):
        pool.add_many([b, b])
    assert len(pool) == 1


def test_the_same_body_re_signed_is_a_duplicate() -> None:
    ml = generate_key("ml-dsa-65")
    nonce = os.urandom(16)
    one, two = (
        make_tx(chain="c", kind="a.b@1", sender="ab", args={}, keys=[ml], created=1, nonce=nonce)
        for _ in range(2)
    )
    assert one.raw != two.raw and one.tx_id == two.tx_id
    pool = Mempool()
    pool.add_many([one])
    with pytest.raises(DuplicateTransactionError):
        pool.add_many([two])


def test_take_respects_count_and_bytes_but_always_makes_progress() -> None:
    big, small = tx(5000), tx()
    pool = Mempool()
    pool.add_many([big, small, tx(), tx()])
    out = pool.take(10, 100)  # the first transaction alone is over the byte budget
    assert [p.tx for p in out] == [big]
    out = pool.take(2, 1 << 20)
    assert len(out) == 2 and out[0].tx == small
    assert len(pool) == 1 and pool.nonempty.is_set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "take", "dup"]), st.integers(1, 4)), max_size=25))
def test_mempool_matches_a_model(ops: list[tuple[str, int]]) -> None:
    cap = 6
    pool, model = Mempool(max_txs=cap), []  # type: ignore[var-annotated]
    for op, n in ops:
        if op == "add":
            batch = [tx() for _ in range(n)]
            if len(model) + n > cap:
                with pytest.raises(UnavailableError):
                    pool.add_many(batch)
            else:
                pool.add_many(batch)
                model.extend(batch)
        elif op == "dup" and model:
            with pytest.raises((DuplicateTransactionError, UnavailableError)):
                pool.add_many([model[0]])
        elif op == "take":
            got = [p.tx for p in pool.take(n, 1 << 30)]
            assert got == model[:n]
            del model[:n]
        assert len(pool) == len(model)
        assert pool.nonempty.is_set() == bool(model)
