"""``verify_chain`` on a chain the demo built, with negative controls for each step."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from carechain.contracts import default_contracts
from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ChainVerificationError
from carechain.ledger.block import Seal, header_hash, parse_header, sign_header
from carechain.ledger.genesis import Genesis, load_genesis
from carechain.ledger.tx import parse_envelope
from carechain.ledger.verify import verify_chain
from carechain.merkle import root_at
from carechain.node.chaindir import InitResult, load_node_key, new_tx, open_node, read_genesis
from carechain.node.node import Node, now_ms
from carechain.node.verify import verify_store
from carechain.storage import StoredBlock
from carechain.storage.sqlite import SQLiteStore


@pytest.fixture
def demo_store(demo_chain: InitResult) -> Iterator[SQLiteStore]:
    store = SQLiteStore(demo_chain.paths.ledger)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def genesis(demo_chain: InitResult) -> Genesis:
    return read_genesis(demo_chain.paths.root)


@pytest.fixture
def blocks(demo_store: SQLiteStore) -> list[StoredBlock]:
    return list(demo_store.iter_blocks())


def _verify(genesis: Genesis, blocks: list[StoredBlock]) -> ChainVerificationError:
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(genesis, iter(blocks), default_contracts())
    return info.value


def test_the_demo_chain_verifies(
    genesis: Genesis, demo_store: SQLiteStore, blocks: list[StoredBlock]
) -> None:
    report = verify_chain(genesis, demo_store.iter_blocks(), default_contracts())
    assert report.blocks == len(blocks) == 2
    assert report.txs == 6 == demo_store.log_size()
    assert report.head_hash == header_hash(blocks[-1].header)
    assert report.log_root == root_at(demo_store, demo_store.log_size())
    assert report.log_root == parse_header(blocks[-1].header).log_root
    assert report.state.data == dict(demo_store.iter_state())
    receipts = [b'"status":"ok"' in r for r in blocks[1].receipts]
    assert receipts == [True] * 6


def test_a_changed_receipt_is_named(genesis: Genesis, blocks: list[StoredBlock]) -> None:
    b = blocks[1]
    receipts = list(b.receipts)
    receipts[3] = receipts[3].replace(b'"status":"ok"', b'"status":"no"')
    err = _verify(genesis, [blocks[0], dataclasses.replace(b, receipts=tuple(receipts))])
    assert (err.height, err.field) == (1, "receipts[3]")


def test_reordered_transactions_change_the_tx_root(
    genesis: Genesis, blocks: list[StoredBlock]
) -> None:
    b = blocks[1]
    env, rec = list(b.envelopes), list(b.receipts)
    env[0], env[1] = env[1], env[0]
    rec[0], rec[1] = rec[1], rec[0]
    err = _verify(
        genesis, [blocks[0], dataclasses.replace(b, envelopes=tuple(env), receipts=tuple(rec))]
    )
    assert (err.height, err.field) == (1, "tx_root")


def test_a_dropped_transaction_is_detected(genesis: Genesis, blocks: list[StoredBlock]) -> None:
    b = blocks[1]
    tampered = dataclasses.replace(b, envelopes=b.envelopes[1:], receipts=b.receipts[1:])
    err = _verify(genesis, [blocks[0], tampered])
    assert (err.height, err.field) == (1, "txs")
    err = _verify(genesis, [blocks[0], dataclasses.replace(b, receipts=b.receipts[1:])])
    assert (err.height, err.field) == (1, "receipts")


def test_genesis_block_checks(genesis: Genesis, blocks: list[StoredBlock]) -> None:
    g = blocks[0]
    err = _verify(
        genesis, [dataclasses.replace(g, header=g.header.replace(b'"height":0', b'"height":1'))]
    )
    assert (err.height, err.field) == (0, "header")
    err = _verify(
        genesis,
        [
            dataclasses.replace(
                g, envelopes=blocks[1].envelopes[:1], receipts=blocks[1].receipts[:1]
            )
        ],
    )
    assert (err.height, err.field) == (0, "envelopes")
    err = _verify(genesis, [dataclasses.replace(g, signature=blocks[1].signature)])
    assert (err.height, err.field) == (0, "signature")  # block 0 is never signed
    err = _verify(genesis, [])
    assert (err.height, err.field) == (0, "header")
    err = _verify(genesis, blocks[1:])
    assert (err.height, err.field) == (0, "height")


def test_another_genesis_does_not_verify_this_chain(
    genesis: Genesis, blocks: list[StoredBlock]
) -> None:
    doc = dict(genesis.doc)
    doc["time"] = genesis.header.time + 1
    other = load_genesis(canonical_bytes(doc), default_contracts())
    err = _verify(other, blocks)
    assert (err.height, err.field) == (0, "header")


def test_a_seal_by_an_unregistered_key_is_rejected(
    genesis: Genesis, blocks: list[StoredBlock]
) -> None:
    b = blocks[1]
    intruder = generate_key()
    forged = sign_header(b.header, intruder).to_bytes()
    err = _verify(genesis, [blocks[0], dataclasses.replace(b, signature=forged)])
    assert (err.height, err.field) == (1, "signature")
    # the intruder also claims the proposer's kid: the signature does not verify
    proposer = parse_header(b.header).proposer
    claimed = Seal(alg="ed25519", kid=proposer, sig=sign_header(b.header, intruder).sig).to_bytes()
    err = _verify(genesis, [blocks[0], dataclasses.replace(b, signature=claimed)])
    assert (err.height, err.field) == (1, "signature")
    assert "does not verify" in str(err)
    # and an unsigned block
    err = _verify(genesis, [blocks[0], dataclasses.replace(b, signature=b"")])
    assert (err.height, err.field) == (1, "signature")


def _blocks_after_one_more(root: Path) -> list[StoredBlock]:
    """The chain's blocks after a node committed one more (a patient registration)."""
    node = open_node(root)
    try:
        key = generate_key()
        tx = new_tx(
            node,
            "identity.register_patient@1",
            patient_account_id(key.kid),
            {"keys": [_pub(key)]},
            [key],
        )
        node.submit_and_wait([tx.raw])
        return list(node.store.iter_blocks())
    finally:
        node.stop()
        node.store.close()


def test_check_block_sees_each_verified_block_and_never_a_failed_one(
    genesis: Genesis, demo_chain: InitResult
) -> None:
    """The hook ``node.verify`` checks the store's indexes with: block 0 with no
    transactions, then each block with its header hash, first log index and parsed
    transactions, once the block verified."""
    seen: list[tuple[int, bytes, int, list[bytes]]] = []

    def hook(h: int, hash_: bytes, first: int, txs: object) -> None:
        seen.append((h, hash_, first, [t.tx_id for t in txs]))  # type: ignore[attr-defined]

    blocks = _blocks_after_one_more(demo_chain.paths.root)
    assert len(blocks) == 3
    extra = blocks[2]
    verify_chain(genesis, iter(blocks), default_contracts(), check_block=hook)
    want_ids = [[parse_envelope(e).tx_id for e in b.envelopes] for b in (blocks[1], extra)]
    assert seen == [
        (0, genesis.hash, 0, []),
        (1, header_hash(blocks[1].header), 0, want_ids[0]),
        (2, header_hash(extra.header), 6, want_ids[1]),
    ]
    seen.clear()  # negative control: a block that fails its checks never reaches the hook
    receipts = list(blocks[1].receipts)
    receipts[0] = receipts[0].replace(b'"status":"ok"', b'"status":"no"')
    with pytest.raises(ChainVerificationError):
        verify_chain(
            genesis,
            iter([blocks[0], dataclasses.replace(blocks[1], receipts=tuple(receipts))]),
            default_contracts(),
            check_block=hook,
        )
    assert [h for h, *_ in seen] == [0]


def _pub(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def test_a_chain_sealed_by_an_ml_dsa_node_key_verifies(tmp_path: Path) -> None:
    """Post-quantum node keys: seals of 3309-byte signatures must parse and verify."""
    admin, node_key = generate_key("ed25519"), generate_key("ml-dsa-65")
    org = {
        "admins": [{"account": "org.admin", "keys": [_pub(admin)]}],
        "id": "org",
        "name": "Org",
        "nodes": [{"name": "pq-node", **_pub(node_key)}],
        "roles": ["hospital"],
    }
    doc = {"chain": "pq-chain", "orgs": [org], "params": {}, "time": now_ms()}
    genesis = load_genesis(canonical_bytes(doc), default_contracts())
    store = SQLiteStore(tmp_path / "ledger.sqlite")
    node = Node(store, genesis, node_key)
    node.start()
    try:
        member = generate_key()
        args = {"account": "org.dr", "keys": [_pub(member)], "org": "org", "role": "nurse"}
        tx = new_tx(node, "identity.register_member@1", "org.admin", args, [admin])
        ((height, index),) = node.submit_and_wait([tx.raw])
        assert height == 1 and b'"status":"ok"' in (store.find_receipt(index) or b"")
    finally:
        node.stop()
    try:
        report = verify_store(store, genesis)
        assert report.chain.blocks == 2
    finally:
        store.close()


def test_load_node_key_matches_the_proposer(
    demo_chain: InitResult, blocks: list[StoredBlock]
) -> None:
    key = load_node_key(demo_chain.paths.root)
    assert parse_header(blocks[1].header).proposer == key.kid


# -- signatures checked while the block re-executes (issue 8) ---------------------------------


def _flip_sig(raw: bytes) -> bytes:
    from carechain.ledger.tx import encode_envelope, parse_envelope

    tx = parse_envelope(raw)
    sig = bytearray(tx.sigs[0])
    sig[5] ^= 1
    return encode_envelope(tx.body_bytes, [bytes(sig), *tx.sigs[1:]])


def _submit(batches: object) -> object:
    from carechain.ledger.verify import sequential_sig_runner

    done = sequential_sig_runner(batches)  # type: ignore[arg-type]
    return lambda: done


def test_overlapped_signature_checks_give_the_same_report(
    genesis: Genesis, blocks: list[StoredBlock]
) -> None:
    plain = verify_chain(genesis, iter(blocks), default_contracts())
    overlapped = verify_chain(genesis, iter(blocks), default_contracts(), sig_submit=_submit)  # type: ignore[arg-type]
    assert (overlapped.blocks, overlapped.txs, overlapped.head_hash, overlapped.log_root) == (
        plain.blocks, plain.txs, plain.head_hash, plain.log_root,
    )  # fmt: skip
    assert overlapped.state.data == plain.state.data


@pytest.mark.parametrize("overlap", [False, True])
def test_a_flipped_signature_is_named_in_both_modes(
    genesis: Genesis, blocks: list[StoredBlock], overlap: bool
) -> None:
    b = blocks[1]
    env = list(b.envelopes)
    env[2] = _flip_sig(env[2])
    bad = [blocks[0], dataclasses.replace(b, envelopes=tuple(env))]
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(
            genesis, iter(bad), default_contracts(),
            sig_submit=_submit if overlap else None,  # type: ignore[arg-type]
        )  # fmt: skip
    assert (info.value.height, info.value.field) == (1, "envelopes[2].sigs")


def test_signatures_are_checked_while_the_block_executes(
    genesis: Genesis, blocks: list[StoredBlock]
) -> None:
    """The verdict is awaited after execution started, and before anything is compared."""
    events: list[str] = []
    contracts = default_contracts()

    class Recording:
        def handler(self, kind: str) -> object:
            events.append("execute")
            return contracts.handler(kind)

        def authorize(self, *args: object) -> None:
            contracts.authorize(*args)  # type: ignore[arg-type]

        def __getattr__(self, name: str) -> object:
            return getattr(contracts, name)

    def submit(batches: object) -> object:
        events.append("submit")
        inner = _submit(batches)

        def wait() -> object:
            events.append("wait")
            return inner()  # type: ignore[operator]

        return wait

    verify_chain(genesis, iter(blocks), Recording(), sig_submit=submit)  # type: ignore[arg-type]
    first = events.index("submit")
    assert events[first + 1] == "execute" and events[-1] == "wait"
    assert events.count("submit") == events.count("wait") == 1  # one block with transactions
