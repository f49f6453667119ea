"""Node submission: every rejection with its error class and code, and nothing changes after it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import (
    DuplicateTransactionError,
    LedgerError,
    SignatureError,
    UnavailableError,
    ValidationError,
)
from carechain.ledger.tx import encode_envelope, make_tx, signing_bytes
from carechain.node.chaindir import InitResult, load_node_key, read_genesis
from carechain.node.mempool import Mempool
from carechain.node.node import Node, now_ms
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain, pub


def forge(c: Chain, signer_key: PrivateKey, *, alg: str | None = None, kid: str | None = None,
          sign_with: PrivateKey | None = None, **body: Any) -> bytes:  # fmt: skip
    """An envelope whose body names (alg, kid) and whose signature is by ``sign_with``."""
    obj: dict[str, Any] = {
        "args": {"account": "seoul-general.x", "keys": [pub(generate_key())],
                 "org": "seoul-general", "role": "nurse"},
        "chain": c.node.genesis.chain, "created": now_ms(),
        "kind": "identity.register_member@1", "nonce": b64u_encode(os.urandom(16)),
        "sender": "seoul-general.admin",
        "signers": [{"alg": alg or signer_key.alg, "kid": kid or signer_key.kid}],
    }  # fmt: skip
    obj.update(body)
    body_bytes = canonical_bytes(obj)
    return encode_envelope(body_bytes, [(sign_with or signer_key).sign(signing_bytes(body_bytes))])


def _good(chain: Chain) -> bytes:
    return forge(chain, chain.key("seoul-general-admin"))


def _flip_sig(chain: Chain) -> bytes:
    tx = chain.register_member("seoul-general", "seoul-general.x", generate_key())
    sig = bytearray(tx.sigs[0])
    sig[10] ^= 1
    return encode_envelope(tx.body_bytes, [bytes(sig)])


def _ml_dsa_claim_for_ed25519_kid(chain: Chain) -> bytes:
    admin = chain.key("seoul-general-admin")
    return forge(chain, admin, alg="ml-dsa-65")


def _patient_sig_by_another_key(chain: Chain) -> bytes:
    k = generate_key()
    return forge(
        chain, k, sign_with=generate_key(), sender=patient_account_id(k.kid),
        kind="identity.register_patient@1", args={"keys": [pub(k)]},
    )  # fmt: skip


Case = Callable[[Chain], list[bytes]]
REJECTIONS: dict[str, tuple[Case, type[LedgerError], str]] = {
    "empty-batch": (lambda c: [], ValidationError, "invalid"),
    "not-json": (lambda c: [b"hello"], ValidationError, "malformed_json"),
    "non-canonical": (lambda c: [_good(c) + b" "], ValidationError, "non_canonical"),
    "wrong-chain": (lambda c: [forge(c, c.key("seoul-general-admin"), chain="carechain-prod")],
                    ValidationError, "wrong_chain"),
    "unknown-kind": (lambda c: [forge(c, c.key("seoul-general-admin"), kind="records.put@1")],
                     ValidationError, "unknown_kind"),
    "kind-version-unknown": (
        lambda c: [forge(c, c.key("seoul-general-admin"), kind="identity.register_member@2")],
        ValidationError, "unknown_kind"),
    "created-an-hour-ago": (
        lambda c: [forge(c, c.key("seoul-general-admin"), created=now_ms() - 3_600_000)],
        ValidationError, "outside_window"),
    "unknown-key": (lambda c: [forge(c, generate_key())], ValidationError, "unknown_key"),
    "algorithm-mismatch": (lambda c: [_ml_dsa_claim_for_ed25519_kid(c)],
                           ValidationError, "algorithm_mismatch"),
    "bad-signature": (lambda c: [_flip_sig(c)], SignatureError, "bad_signature"),
    "signature-by-another-key": (
        lambda c: [forge(c, c.key("seoul-general-admin"), sign_with=c.key("dr-kim"))],
        SignatureError, "bad_signature"),
    "introduced-key-signature-by-another-key": (
        lambda c: [_patient_sig_by_another_key(c)], SignatureError, "bad_signature"),
    "same-envelope-twice": (lambda c: [_good(c)] * 2, DuplicateTransactionError,
                            "duplicate_transaction"),
    "one-bad-in-a-batch": (lambda c: [_good(c), _flip_sig(c), _good(c)], SignatureError,
                           "bad_signature"),
}  # fmt: skip


def _snapshot(chain: Chain) -> tuple[int, int, int, int]:
    node = chain.node
    return chain.height(), node.store.log_size(), len(node.mempool), len(node._inflight)


@pytest.mark.parametrize("case,exc,code", list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_submission_rejections(chain: Chain, case: Case, exc: type[LedgerError], code: str) -> None:
    before = _snapshot(chain)
    raws = case(chain)
    with pytest.raises(exc) as info:
        chain.node.submit(raws)
    assert type(info.value) is exc and info.value.code == code
    assert _snapshot(chain) == before
    assert not chain.node.failed
    # negative control: the node still takes a good transaction afterwards
    ((height, _),) = chain.node.submit_and_wait([_good(chain)])
    assert height == before[0] + 1


def test_the_error_names_the_bad_transaction_of_a_batch(chain: Chain) -> None:
    with pytest.raises(SignatureError, match=r"transactions\[1\]"):
        chain.node.submit([_good(chain), _flip_sig(chain)])
    with pytest.raises(ValidationError, match=r"transactions\[2\]") as info:
        chain.node.submit([_good(chain), _good(chain), forge(chain, generate_key())])
    assert info.value.code == "unknown_key"


def test_replays_are_rejected(chain: Chain) -> None:
    ml = generate_key("ml-dsa-65")  # ML-DSA-65: re-signing gives other bytes, the same id
    nonce, created = os.urandom(16), now_ms()

    def signed() -> bytes:
        return make_tx(
            chain=chain.node.genesis.chain, kind="identity.register_patient@1",
            sender=patient_account_id(ml.kid), args={"keys": [pub(ml)]}, keys=[ml],
            created=created, nonce=nonce,
        ).raw  # fmt: skip

    raw = signed()
    # while pending: the same id is refused (and the first copy still commits once)
    (pending,) = chain.node.submit([raw])
    with pytest.raises(DuplicateTransactionError):
        chain.node.submit([signed()])
    _, index = pending.future.result(10)
    assert b'"status":"ok"' in (chain.node.store.find_receipt(index) or b"")
    before = _snapshot(chain)
    copies = [raw, signed(), signed()]
    assert len(set(copies)) == 3  # the re-signed copies differ byte-wise ...
    for again in copies:
        with pytest.raises(DuplicateTransactionError) as info:
            chain.node.submit([again])
        assert info.value.code == "duplicate_transaction"  # ... but not by id
    assert _snapshot(chain) == before


def test_mempool_full_through_the_node(demo_chain: InitResult) -> None:
    root = demo_chain.paths.root
    store = SQLiteStore(demo_chain.paths.ledger)
    node = Node(store, read_genesis(root), load_node_key(root), mempool=Mempool(max_txs=2))
    try:  # not started: nothing drains the pool
        c = Chain(node, Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N))
        node.submit([_good(c), _good(c)])
        with pytest.raises(UnavailableError) as info:
            node.submit([_good(c)])
        assert info.value.code == "mempool_full" and info.value.retry_after >= 1
        assert len(node.mempool) == 2 and len(node._inflight) == 2
    finally:
        node.stop()
        store.close()


@pytest.fixture
def clocked(demo_chain: InitResult) -> Iterator[Callable[[int], Chain]]:
    """A started node whose clock is ``now + offset`` (no demo_node on the same store)."""
    made: list[Node] = []

    def make(offset: int) -> Chain:
        root = demo_chain.paths.root
        store = SQLiteStore(demo_chain.paths.ledger)
        node = Node(store, read_genesis(root), load_node_key(root), clock=lambda: now_ms() + offset)
        node.start()
        made.append(node)
        return Chain(node, Keyring(demo_chain.paths.root, scrypt_n=FAST_SCRYPT_N))

    yield make
    for node in made:
        node.stop()
        node.store.close()


def test_outside_window_by_the_nodes_clock(clocked: Callable[[int], Chain]) -> None:
    window = 10 * 60 * 1000
    chain = clocked(window + 5_000)  # the node's clock runs ahead of the client's
    assert chain.node.params.tx_window_ms == window
    before = _snapshot(chain)
    with pytest.raises(ValidationError) as info:
        chain.node.submit([_good(chain)])
    assert info.value.code == "outside_window"
    assert _snapshot(chain) == before
    # negative control: a client whose clock agrees with the node's is inside the window
    t = chain.node.clock()
    fine = forge(chain, chain.key("seoul-general-admin"), created=t - window + 60_000)
    with pytest.raises(ValidationError):  # too old for the node ...
        chain.node.submit([forge(chain, chain.key("seoul-general-admin"), created=t - window - 1)])
    (pending,) = chain.node.submit([fine])  # ... this one is not (and the block accepts it)
    _, index = pending.future.result(10)
    assert b'"status":"ok"' in (chain.node.store.find_receipt(index) or b"")


def test_node_clock_behind(clocked: Callable[[int], Chain]) -> None:
    chain = clocked(-(10 * 60 * 1000 + 5_000))
    with pytest.raises(ValidationError) as info:
        chain.node.submit([_good(chain)])
    assert info.value.code == "outside_window"


def test_a_copy_checked_just_before_the_original_commits_is_still_a_replay(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: check_envelopes ran before the commit, the enqueue happens after it."""
    raw = _good(chain)
    stale = chain.node.check_envelopes([raw])  # passes: nothing committed yet
    ((height, _),) = chain.node.submit_and_wait([raw])
    monkeypatch.setattr(chain.node, "check_envelopes", lambda raws: stale)
    with pytest.raises(DuplicateTransactionError):
        chain.node.submit([raw])
    assert len(chain.node.mempool) == 0 and not chain.node._inflight
    assert chain.height() == height


def test_replay_is_reported_as_replay_even_after_its_key_was_revoked(chain: Chain) -> None:
    """Step 3 (replay) comes before step 4 (keys): a replayed tx is a replay, whatever its key."""
    from carechain.crypto.signatures import generate_key
    from carechain.errors import DuplicateTransactionError

    member_key = generate_key()
    assert chain.run1(chain.register_member("seoul-general", "seoul-general.temp", member_key)).ok
    own = chain.tx(
        "identity.revoke_key@1",
        "seoul-general.temp",
        {"kid": member_key.kid, "reason": "leaving"},
        [member_key],
    )
    assert chain.run1(own).ok
    with pytest.raises(DuplicateTransactionError):
        chain.node.submit([own.raw])
