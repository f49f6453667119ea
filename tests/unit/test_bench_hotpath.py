"""The fast submission path (issue 8): parsing and verification in the worker pool, the node's
key hints, the order in which a batch's errors are reported, and the store's Merkle cache.

Every checker has a negative control: a flipped signature, a key that is neither registered
nor introduced, an algorithm substitution, bytes that do not parse.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import NotFoundError, SignatureError, ValidationError
from carechain.ledger.keys import resolve_sig_checks
from carechain.ledger.tx import encode_envelope, make_tx, parse_envelope
from carechain.merkle import CompactTree, leaf_hash
from carechain.node.node import now_ms
from carechain.node.sigpool import (
    BAD_SIGNATURE,
    INLINE_BELOW,
    OK,
    UNPARSABLE,
    UNRESOLVED,
    SignatureVerifier,
    parse_and_verify_one,
)
from carechain.storage import BlockCommit, StoredBlock
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import Chain, pub

CHAIN = "bench-chain"


def _patient(key: PrivateKey | None = None) -> bytes:
    key = key or generate_key()
    return make_tx(
        chain=CHAIN, kind="identity.register_patient@1", sender=patient_account_id(key.kid),
        args={"keys": [pub(key)]}, keys=[key], created=1, nonce=os.urandom(16),
    ).raw  # fmt: skip


def _signed_by(key: PrivateKey, sender: str = "seoul-general.admin") -> bytes:
    return make_tx(
        chain=CHAIN, kind="identity.register_member@1", sender=sender,
        args={"account": "seoul-general.x", "keys": [pub(generate_key())],
              "org": "seoul-general", "role": "nurse"},
        keys=[key], created=1, nonce=os.urandom(16),
    ).raw  # fmt: skip


def _flip(raw: bytes) -> bytes:
    tx = parse_envelope(raw)
    sig = bytearray(tx.sigs[0])
    sig[7] ^= 1
    return encode_envelope(tx.body_bytes, [bytes(sig)])


def test_introduced_key_verifies_and_a_flipped_signature_does_not() -> None:
    raw = _patient()
    status, tx = parse_and_verify_one(raw, {})
    assert status == OK and tx is not None and tx == parse_envelope(raw)
    assert parse_and_verify_one(_flip(raw), {})[0] == BAD_SIGNATURE  # negative control


def test_registered_key_comes_from_the_hints() -> None:
    admin = generate_key()
    raw = _signed_by(admin)
    assert parse_and_verify_one(raw, {})[0] == UNRESOLVED  # neither hinted nor introduced
    hints = {admin.kid: (admin.alg, admin.public)}
    assert parse_and_verify_one(raw, hints)[0] == OK
    other = generate_key()  # the hint names another public key: the signature fails
    assert parse_and_verify_one(raw, {admin.kid: (other.alg, other.public)})[0] == BAD_SIGNATURE


def test_algorithm_substitution_fails() -> None:
    admin = generate_key()
    raw = _signed_by(admin)
    assert parse_and_verify_one(raw, {admin.kid: ("ml-dsa-65", admin.public)})[0] == BAD_SIGNATURE


@pytest.mark.parametrize("raw", [b"junk", b"{}", _patient() + b" "])
def test_unparsable_bytes(raw: bytes) -> None:
    assert parse_and_verify_one(raw, {}) == (UNPARSABLE, None)


def test_the_pool_gives_what_the_inline_path_gives() -> None:
    admin = generate_key()
    hints = {admin.kid: (admin.alg, admin.public)}
    raws = [_patient() for _ in range(INLINE_BELOW)]
    raws += [_flip(_patient()), b"junk", _signed_by(admin), _signed_by(generate_key())]
    items = [(raw, hints) for raw in raws]
    inline = SignatureVerifier(workers=1).parse_and_verify(items)
    pool = SignatureVerifier(workers=2)
    try:
        parallel = pool.parse_and_verify(items)
    finally:
        pool.close()
    assert parallel == inline
    assert [s for s, _ in inline[-4:]] == [BAD_SIGNATURE, UNPARSABLE, OK, UNRESOLVED]


def test_verify_async_gives_what_verify_gives() -> None:
    """The overlapped checks ``verify`` uses (``sig_submit``), in the pool and inline."""
    txs = [parse_envelope(_patient()) for _ in range(INLINE_BELOW + 3)]
    txs[7] = parse_envelope(_flip(_patient()))  # negative control: one bad signature
    batches = [resolve_sig_checks(tx, _NoState()) or [] for tx in txs]
    want = [i != 7 for i in range(len(txs))]
    for workers in (1, 2):
        verifier = SignatureVerifier(workers=workers)
        try:
            assert verifier.verify(batches) == want
            assert verifier.verify_async(batches)() == want
            assert verifier.verify_async(batches[:3])() == want[:3]  # below INLINE_BELOW
        finally:
            verifier.close()


class _NoState:
    """No registered keys: a patient registration introduces its own."""

    def find_state(self, key: str) -> bytes | None:
        return None


# -- through the node, with batches large enough for the pool ---------------------------------


def _batch(chain: Chain, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        key = generate_key()
        out.append(chain.tx("identity.register_patient@1", patient_account_id(key.kid),
                            {"keys": [pub(key)]}, [key]).raw)  # fmt: skip
    return out


def test_a_large_batch_commits_through_the_pool(chain: Chain) -> None:
    raws = _batch(chain, 100)  # > INLINE_BELOW: through the pool
    results = chain.node.submit_and_wait(raws)
    assert len({h for h, _ in results}) >= 1
    assert chain.node.store.has_tx_ids([parse_envelope(r).tx_id for r in raws]) == [True] * 100


def test_a_bad_signature_in_a_large_batch_rejects_it_whole(chain: Chain) -> None:
    raws = _batch(chain, 100)
    raws[70] = _flip(raws[70])
    with pytest.raises(SignatureError, match=r"transactions\[70\]"):
        chain.node.submit(raws)
    assert len(chain.node.mempool) == 0 and not chain.node._inflight
    assert not any(chain.node.store.has_tx_ids([parse_envelope(r).tx_id for r in raws]))


def test_errors_of_a_large_batch_come_in_step_order(chain: Chain) -> None:
    raws = _batch(chain, 100)
    raws[30] = _flip(raws[30])  # step 5
    stranger = generate_key()  # step 4: neither registered nor introduced
    raws[40] = chain.tx("identity.revoke_key@1", "seoul-general.admin",
                        {"kid": stranger.kid}, [stranger]).raw  # fmt: skip
    with pytest.raises(ValidationError) as info:
        chain.node.submit(raws)
    assert info.value.code == "unknown_key" and "transactions[40]" in info.value.message
    raws[80] = b"{not json"  # step 1 beats both
    with pytest.raises(ValidationError) as info:
        chain.node.submit(raws)
    assert info.value.code == "malformed_json" and "transactions[80]" in info.value.message


def test_a_key_registered_in_an_earlier_block_signs_through_the_pool(chain: Chain) -> None:
    keys = [generate_key() for _ in range(INLINE_BELOW + 6)]
    regs = [chain.tx("identity.register_patient@1", patient_account_id(k.kid),
                     {"keys": [pub(k)]}, [k]).raw for k in keys]  # fmt: skip
    chain.node.submit_and_wait(regs)
    now = now_ms()
    grants = [
        chain.tx("consent.grant@1", patient_account_id(k.kid), {
            "actions": ["read"], "decision": "permit",
            "grantee": {"account": "seoul-general.dr-kim"},
            "period": {"end": now + 86_400_000, "start": now - 3_600_000},
            "purposes": ["TREAT"], "scope": {},
        }, [k]).raw
        for k in keys
    ]  # fmt: skip
    assert len(chain.node.submit_and_wait(grants)) == len(grants)
    forged = [chain.tx("consent.revoke@1", patient_account_id(k.kid), {"id": "0" * 16},
                       [k]).raw for k in keys]  # fmt: skip
    forged[-1] = _flip(forged[-1])
    with pytest.raises(SignatureError):  # negative control: the state's key, a wrong signature
        chain.node.submit(forged)


# -- the store's Merkle node cache ----------------------------------------------------------


def _commit_leaves(store: SQLiteStore, height: int, first: int, n: int, tree: CompactTree) -> None:
    envelopes = tuple(b"leaf %d" % i for i in range(first, first + n))
    nodes = tree.append([leaf_hash(e) for e in envelopes])
    store.commit_block(
        BlockCommit(
            block=StoredBlock(height=height, header=b"h%d" % height, signature=b"",
                              envelopes=envelopes, receipts=tuple(b"{}" for _ in envelopes)),
            header_hash=bytes([height]) * 32,
            tx_ids=tuple(leaf_hash(b"id" + e) for e in envelopes),
            first_log_index=first, merkle_nodes=tuple(nodes), state_writes=(),
        )
    )  # fmt: skip


def test_merkle_cache_returns_stored_nodes_and_never_caches_a_miss(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.sqlite")
    try:
        tree = CompactTree()
        _commit_leaves(store, 0, 0, 48, tree)
        first = [store.get_merkle_node(4, i) for i in range(3)]
        assert [store.get_merkle_node(4, i) for i in range(3)] == first  # from the cache
        with pytest.raises(NotFoundError):  # negative control: not stored yet
            store.get_merkle_node(4, 3)
        _commit_leaves(store, 1, 48, 16, tree)
        assert store.get_merkle_node(4, 3)  # committed since: found, the miss was not cached
        assert store.get_merkle_node(6, 0) == tree.root()
    finally:
        store.close()
