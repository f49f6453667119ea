"""Tampering with a stored chain: every changed byte of every hashed record is found and named.

A small demo chain (genesis + 3 blocks, one rejected transaction) is built once. Exhaustive
single-byte flips run in memory on ``StoredBlock`` objects fed to ``verify_chain``; a sample runs
through SQLite (``verify_store``) to show the stored bytes are the ones checked. Rollback (a
truncated tail) is internally consistent and is caught by a client holding a later checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

from carechain.contracts import default_contracts
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import ChainVerificationError, ProofError
from carechain.ledger.block import parse_header, sign_header
from carechain.ledger.build import block_root
from carechain.ledger.genesis import Genesis
from carechain.ledger.keys import SigCheck, run_sig_checks
from carechain.ledger.verify import verify_chain
from carechain.merkle import (
    Checkpoint,
    CompactTree,
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from carechain.node.chaindir import ChainPaths, init_chain, load_node_key, open_node, read_genesis
from carechain.node.verify import note_verifiers, verify_store
from carechain.storage import StoredBlock
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

MASKS = (0x01, 0x02, 0x20, 0x80)
"""The bit(s) flipped at byte i are MASKS[i % 4]: low bits, case, and invalid UTF-8."""


@dataclass
class Built:
    root: Path
    genesis: Genesis
    blocks: list[StoredBlock]
    db: Path
    rollback_db: Path
    """A copy of the store taken before the last block (an older backup)."""


def _copy_db(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("tamper")
    root = base / "chain"
    init_chain(root, demo=True, scrypt_n=FAST_SCRYPT_N)  # block 1: 6 transactions
    keys = Keyring(root, scrypt_n=FAST_SCRYPT_N)
    node = open_node(root)
    chain = Chain(node, keys)
    block2 = chain.run(
        chain.register_member("seoul-general", "seoul-general.dr-yoon", generate_key()),
        chain.register_member(
            "seoul-general", "seoul-general.dr-fake", generate_key(), by="dr-kim"
        ),
    )
    assert [o.code for o in block2] == ["ok", "unauthorized"]
    node.stop()
    node.store.close()
    rollback = _copy_db(ChainPaths(root).ledger, base / "rollback.sqlite")
    node = open_node(root)
    chain = Chain(node, keys)
    block3 = chain.run(
        chain.register_member("hanbit-pharmacy", "hanbit-pharmacy.tech", generate_key()),
        chain.tx("governance.propose@1", "nhis-payer.admin",
                 {"action": "remove_org", "org": "medipharm"}, [chain.key("nhis-payer-admin")]),
    )  # fmt: skip
    assert all(o.ok for o in block3)
    blocks = list(node.store.iter_blocks())
    node.stop()
    node.store.close()
    assert [len(b.envelopes) for b in blocks] == [0, 6, 2, 2]
    return Built(root, read_genesis(root), blocks, ChainPaths(root).ledger, rollback)


class CachingSigRunner:
    """A sig runner that checks each distinct signature once (the untampered prefix repeats)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], bool] = {}

    def __call__(self, batches: Any) -> list[bool]:
        out = []
        for checks in batches:
            key = tuple((c.alg, c.public, c.message, c.signature) for c in checks)
            if key not in self.cache:
                self.cache[key] = run_sig_checks(list[SigCheck](checks))
            out.append(self.cache[key])
        return out


RUNNER = CachingSigRunner()


def _verify(genesis: Genesis, blocks: list[StoredBlock]) -> ChainVerificationError | None:
    try:
        verify_chain(genesis, iter(blocks), default_contracts(), sig_runner=RUNNER)
    except ChainVerificationError as exc:
        return exc
    return None


def _flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= MASKS[i % len(MASKS)]
        yield i, bytes(b)


def _items(
    block: StoredBlock, family: str
) -> list[tuple[str, bytes, Callable[[bytes], StoredBlock]]]:
    """(field name, bytes, rebuild) for every record of ``family`` in ``block``."""
    if family in ("header", "signature"):
        data = getattr(block, family)
        return [(family, data, lambda v: dataclasses.replace(block, **{family: v}))] if data else []
    records = getattr(block, family)
    out = []
    for i, data in enumerate(records):

        def rebuild(v: bytes, i: int = i) -> StoredBlock:
            new = list(records)
            new[i] = v
            return dataclasses.replace(block, **{family: tuple(new)})

        out.append((f"{family}[{i}]", data, rebuild))
    return out


def _allowed(family: str, name: str, height: int) -> set[str]:
    if family == "header":
        return {"header"} if height == 0 else {"header", "prev", "time", "signature"}
    if family == "envelopes":
        return {name, f"{name}.sigs"}
    return {name}


BLOCK_FAMILIES = [(0, "header")] + [
    (h, f) for h in (1, 2, 3) for f in ("header", "signature", "envelopes", "receipts")
]
CASES = [
    pytest.param(h, f, id=f"block{h}-{f}",
                 marks=[pytest.mark.slow] if (h, f) == (1, "envelopes") else [])  # ~12 s: ML-DSA
    for h, f in BLOCK_FAMILIES
]  # fmt: skip


@pytest.mark.parametrize("height,family", CASES)
def test_every_flipped_byte_is_detected_and_named(built: Built, height: int, family: str) -> None:
    blocks = built.blocks
    misses: list[str] = []
    fields: Counter[str] = Counter()
    flipped = 0
    for name, data, rebuild in _items(blocks[height], family):
        allowed = _allowed(family, name, height)
        for i, tampered in _flips(data):
            flipped += 1
            chain = [*blocks[:height], rebuild(tampered), *blocks[height + 1 :]]
            err = _verify(built.genesis, chain)
            if err is None or err.height != height or err.field not in allowed:
                got = "nothing" if err is None else f"block {err.height} {err.field}"
                misses.append(f"{name} byte {i} ({data[i : i + 1]!r}): {got}")
            else:
                fields[err.field] += 1
    assert flipped > 0
    print(f"TAMPER block{height}-{family}: flipped={flipped} detected={flipped - len(misses)}")
    assert not misses, f"{len(misses)} of {flipped} flips not named right: {misses[:10]}"
    if family == "header" and height > 0:  # the checks behind each field are all reached
        assert {"header", "prev", "signature"} <= set(fields), fields


def test_the_untampered_chain_verifies(built: Built) -> None:
    """Negative control for every tamper test in this module."""
    assert _verify(built.genesis, built.blocks) is None
    store = SQLiteStore(built.db)
    try:
        report = verify_store(store, built.genesis)
        assert report.chain.blocks == 4 and report.chain.txs == 10
    finally:
        store.close()


# -- the same through SQLite ------------------------------------------------------------------


@pytest.fixture
def tamper_db(
    built: Built, tmp_path: Path
) -> Callable[[str, tuple[Any, ...]], ChainVerificationError]:
    count = iter(range(10_000))

    def run(sql: str, bindings: tuple[Any, ...]) -> ChainVerificationError:
        db = _copy_db(built.db, tmp_path / f"t{next(count)}.sqlite")
        conn = apsw.Connection(str(db))
        conn.execute(sql, bindings)
        assert conn.changes() >= 1
        conn.close()
        store = SQLiteStore(db)
        try:
            with pytest.raises(ChainVerificationError) as info:
                verify_store(store, built.genesis)
        finally:
            store.close()
        return info.value

    return run


def _flip_at(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= MASKS[i % len(MASKS)]
    return bytes(b)


SQL_SAMPLES = [
    # (table, column, key column, key, height, field family)
    ("blocks", "header", "height", 0, 0, "header"),
    ("blocks", "header", "height", 2, 2, "header"),
    ("blocks", "header", "height", 3, 3, "header"),
    ("blocks", "signature", "height", 1, 1, "signature"),
    ("blocks", "signature", "height", 3, 3, "signature"),
    ("txs", "envelope", "log_index", 5, 1, "envelopes[5]"),  # the ML-DSA-65 patient
    ("txs", "envelope", "log_index", 7, 2, "envelopes[1]"),  # the rejected one
    ("txs", "receipt", "log_index", 7, 2, "receipts[1]"),
    ("txs", "receipt", "log_index", 9, 3, "receipts[1]"),
]


@pytest.mark.parametrize("table,column,key,value,height,field", SQL_SAMPLES)
def test_flips_in_the_sqlite_file_are_named(
    built: Built, tamper_db: Any, table: str, column: str, key: str, value: int, height: int,
    field: str,
) -> None:  # fmt: skip
    conn = apsw.Connection(str(built.db), flags=apsw.SQLITE_OPEN_READONLY)
    (data,) = conn.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (value,)).fetchone()
    conn.close()
    family = field.split("[")[0]
    for i in sorted({0, 1, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1}):
        err = tamper_db(f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
                        (_flip_at(data, i), value))  # fmt: skip
        allowed = _allowed(family, field, height)
        assert (err.height, err.field in allowed) == (height, True), (i, err)


def _one(db: Path, sql: str) -> tuple[Any, ...]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return tuple(conn.execute(sql).fetchone())
    finally:
        conn.close()


def test_derived_data_is_checked_too(built: Built, tamper_db: Any) -> None:
    head = len(built.blocks) - 1
    key, value = _one(built.db, "SELECT key, value FROM state WHERE key LIKE 'acct/%' LIMIT 1")
    level, idx, node = _one(
        built.db, "SELECT level, idx, hash FROM merkle_nodes ORDER BY level DESC"
    )
    changed = value.replace(b"active", b"activ3")
    cases = [
        ("UPDATE state SET value = ? WHERE key = ?", (changed, key), "state"),
        ("DELETE FROM state WHERE key = ?", (key,), "state"),
        ("INSERT INTO state (key, value) VALUES (?, ?)", ("acct/x", b'{"id":"x"}'), "state"),
        ("UPDATE merkle_nodes SET hash = ? WHERE level = ? AND idx = ?",
         (_flip_at(node, 3), level, idx), "merkle_nodes"),
        ("DELETE FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx), "merkle_nodes"),
        ("UPDATE checkpoints SET checkpoint = ? WHERE height = ?", (b"not a note", head),
         "checkpoint"),
    ]  # fmt: skip
    for sql, bindings, field in cases:
        err = tamper_db(sql, bindings)
        assert (err.height, err.field) == (head, field), (sql, err)


def test_the_checkpoint_must_be_signed_by_a_node_key(built: Built, tamper_db: Any) -> None:
    from carechain.merkle import sign_checkpoint

    (note,) = _one(built.db, "SELECT checkpoint FROM checkpoints ORDER BY height DESC")
    origin = built.genesis.origin
    cp = open_checkpoint(note, note_verifiers(_state(built.db), origin), origin)
    forged = sign_checkpoint(cp, origin, generate_key())
    err = tamper_db("UPDATE checkpoints SET checkpoint = ? WHERE height = ?", (forged, 3))
    assert (err.height, err.field) == (3, "checkpoint")


def test_bytes_added_to_the_unsigned_genesis_block_are_detected(tamper_db: Any) -> None:
    err = tamper_db("UPDATE blocks SET signature = ? WHERE height = 0", (b"\x00",))
    assert (err.height, err.field) == (0, "signature")


def test_tampered_indexes_are_detected(built: Built, tamper_db: Any) -> None:
    """The tx-id index (replay protection) and the header-hash index are derived data too."""
    err = tamper_db("UPDATE txs SET tx_id = ? WHERE log_index = 3", (b"\x00" * 32,))
    assert (err.height, err.field) == (1, "tx_index")
    err = tamper_db("UPDATE blocks SET header_hash = ? WHERE height = 2", (b"\x01" * 32,))
    assert (err.height, err.field) == (2, "block_index")


def _state(db: Path) -> dict[str, bytes]:
    store = SQLiteStore(db)
    try:
        return dict(store.iter_state())
    finally:
        store.close()


# -- structural tampering ----------------------------------------------------------------------


def _relabel(blocks: list[StoredBlock]) -> list[StoredBlock]:
    return [dataclasses.replace(b, height=i) for i, b in enumerate(blocks)]


def test_block_deletion(built: Built) -> None:
    b = built.blocks
    err = _verify(built.genesis, [b[0], b[1], b[3]])
    assert err is not None and (err.height, err.field) == (2, "height")
    err = _verify(built.genesis, _relabel([b[0], b[1], b[3]]))  # heights rewritten to look dense
    assert err is not None and (err.height, err.field) == (2, "header")
    err = _verify(built.genesis, _relabel([b[0], b[2], b[3]]))
    assert err is not None and (err.height, err.field) == (1, "header")


def test_two_blocks_swapped(built: Built) -> None:
    b = built.blocks
    err = _verify(built.genesis, [b[0], b[1], b[3], b[2]])
    assert err is not None and (err.height, err.field) == (2, "height")
    err = _verify(built.genesis, _relabel([b[0], b[1], b[3], b[2]]))
    assert err is not None and (err.height, err.field) == (2, "header")


def _splice(block: StoredBlock, env: bytes, rec: bytes, at: int | None = None) -> StoredBlock:
    envs, recs = list(block.envelopes), list(block.receipts)
    pos = len(envs) if at is None else at
    envs.insert(pos, env)
    recs.insert(pos, rec)
    return dataclasses.replace(block, envelopes=tuple(envs), receipts=tuple(recs))


def test_a_valid_transaction_spliced_into_another_block(built: Built) -> None:
    b = built.blocks
    # copied from block 1 into block 3: a replay
    spliced = _splice(b[3], b[1].envelopes[0], b[1].receipts[0], at=1)
    err = _verify(built.genesis, [b[0], b[1], b[2], spliced])
    assert err is not None and (err.height, err.field) == (3, "envelopes[1]")
    assert "replay" in str(err)
    # moved from block 3 (signed by a founding admin's key) into block 2
    moved = _splice(b[2], b[3].envelopes[0], b[3].receipts[0])
    rest = dataclasses.replace(b[3], envelopes=b[3].envelopes[1:], receipts=b[3].receipts[1:])
    err = _verify(built.genesis, [b[0], b[1], moved, rest])
    assert err is not None and (err.height, err.field) == (2, "txs")
    # a duplicate within one block
    err = _verify(built.genesis, [b[0], b[1], _splice(b[2], b[2].envelopes[0], b[2].receipts[0])])
    assert err is not None and (err.height, err.field) == (2, "envelopes[2]")


def _client_check(held: Checkpoint, store: SQLiteStore, genesis: Genesis) -> Checkpoint:
    """What a client holding ``held`` does with the server's newest checkpoint."""
    note = store.find_checkpoint()
    assert note is not None
    state = dict(store.iter_state("node/"))
    latest = open_checkpoint(note, note_verifiers(state, genesis.origin), genesis.origin)
    proof = consistency_proof(store, held.size, latest.size) if latest.size >= held.size else []
    verify_consistency(held.size, latest.size, proof, held.root, latest.root)
    return latest


def test_a_truncated_tail_is_caught_by_a_client_holding_the_later_checkpoint(built: Built) -> None:
    full, old = SQLiteStore(built.db), SQLiteStore(built.rollback_db)
    try:
        genesis = built.genesis
        state = dict(full.iter_state("node/"))
        trusted = note_verifiers(state, genesis.origin)
        held = open_checkpoint(full.find_checkpoint() or b"", trusted, genesis.origin)
        earlier = open_checkpoint(old.find_checkpoint() or b"", trusted, genesis.origin)
        assert (held.size, earlier.size) == (10, 8)
        # the rolled-back store is a perfectly valid, shorter chain: verify alone cannot tell ...
        assert verify_store(old, genesis).chain.blocks == 3
        assert _verify(genesis, built.blocks[:-1]) is None
        # ... the client that saw size 10 can: the log went backwards
        with pytest.raises(ProofError):
            _client_check(held, old, genesis)
        # negative control: a client holding the earlier checkpoint accepts the real extension
        assert _client_check(earlier, full, genesis).size == 10
        assert _client_check(held, full, genesis).size == 10
        # and a forked history of the same size is refused as well
        forked = dataclasses.replace(held, root=bytes(32))
        with pytest.raises(ProofError):
            _client_check(forked, full, genesis)
    finally:
        full.close()
        old.close()


# -- forged tails, re-hashed end to end ---------------------------------------------------------
#
# A forger who rewrites the newest block(s) and recomputes every hash (tx_root, receipt_root,
# log root, header hash, even the seal) is still caught: without a node key the seal does not
# verify; with the node key (a malicious node) any content the contracts would not produce
# fails re-execution; and a *valid* alternative history (a malicious node re-sealing a
# different block) is caught by a client holding a checkpoint of the genuine history.


@dataclass
class Forked:
    blocks: list[StoredBlock]
    """[b0, b1, b2, f3]: a different, valid block 3 sealed by the genuine node key."""
    db: Path


@pytest.fixture(scope="module")
def forked(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Forked:
    """A malicious node's alternative history: from the older copy, another block 3."""
    root = tmp_path_factory.mktemp("forked") / "chain"
    shutil.copytree(built.root, root)
    ledger = ChainPaths(root).ledger
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    _copy_db(built.rollback_db, ledger)
    node = open_node(root)
    try:
        chain = Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
        out = chain.run(
            chain.register_member("medipharm", "medipharm.qa", generate_key()),
            chain.register_member("nhis-payer", "nhis-payer.clerk", generate_key()),
        )
        assert all(o.ok for o in out)
        blocks = list(node.store.iter_blocks())
    finally:
        node.stop()
        node.store.close()
    assert len(blocks) == 4 and blocks[3].header != built.blocks[3].header
    return Forked(blocks=blocks, db=ledger)


def _reseal(block: StoredBlock, key: PrivateKey, **changes: Any) -> StoredBlock:
    """Rewrite header fields, re-hash and re-seal with ``key`` (a forger's full recompute)."""
    header = dataclasses.replace(parse_header(block.header), **changes)
    raw = header.to_bytes()
    return dataclasses.replace(block, header=raw, signature=sign_header(raw, key).to_bytes())


def test_a_valid_alternative_tail_verifies_alone(built: Built, forked: Forked) -> None:
    """Negative control: the forged history is internally valid, so only a checkpoint held
    from the genuine history can expose it (below)."""
    assert _verify(built.genesis, forked.blocks) is None
    assert parse_header(forked.blocks[3].header).log_size == 10


def test_a_rehashed_tail_sealed_by_a_forger_key_is_refused(built: Built, forked: Forked) -> None:
    b, f3 = built.blocks, forked.blocks[3]
    forger = generate_key()
    # the forger's own key, named as proposer: not a node key of this chain
    err = _verify(built.genesis, [*b[:3], _reseal(f3, forger, proposer=forger.kid)])
    assert err is not None and (err.height, err.field) in {(3, "signature"), (3, "proposer")}
    # the forger keeps the genuine proposer and signs anyway
    err = _verify(built.genesis, [*b[:3], _reseal(f3, forger)])
    assert err is not None and (err.height, err.field) == (3, "signature"), err
    # the genuine block's seal spliced onto the forged header
    err = _verify(built.genesis, [*b[:3], dataclasses.replace(f3, signature=b[3].signature)])
    assert err is not None and (err.height, err.field) == (3, "signature"), err


def test_a_rehashed_tail_with_forged_receipts_fails_reexecution(built: Built) -> None:
    """Even a node-key holder cannot turn a rejected transaction into an accepted one: the
    receipt, receipt_root and header are recomputed and re-sealed, re-execution disagrees."""
    b = built.blocks
    key = load_node_key(built.root)
    tail = b[2]  # receipts[1] is the `unauthorized` rejection
    assert b'"rejected"' in tail.receipts[1]
    forged = tail.receipts[1].replace(b'"unauthorized"', b'"ok"').replace(b'"rejected"', b'"ok"')
    receipts = (tail.receipts[0], forged)
    resealed = _reseal(
        dataclasses.replace(tail, receipts=receipts), key, receipt_root=block_root(receipts)
    )
    assert _verify(built.genesis, [*b[:2], _reseal(tail, key)]) is None  # control: reseal alone
    err = _verify(built.genesis, [*b[:2], resealed])
    assert err is not None and err.height == 2, err
    assert err.field in {"receipts[1]", "receipt_root", "header"}, err


def test_a_forked_tail_is_caught_by_a_client_holding_a_later_checkpoint(
    built: Built, forked: Forked
) -> None:
    genuine, fork = SQLiteStore(built.db), SQLiteStore(forked.db)
    try:
        genesis = built.genesis
        trusted = note_verifiers(dict(genuine.iter_state("node/")), genesis.origin)
        held = open_checkpoint(genuine.find_checkpoint() or b"", trusted, genesis.origin)
        assert verify_store(fork, genesis).chain.blocks == 4  # valid on its own
        with pytest.raises(ProofError):  # same size 10, another root: a fork
            _client_check(held, fork, genesis)
        # negative control: the same client accepts the genuine store
        assert _client_check(held, genuine, genesis).root == held.root
    finally:
        genuine.close()
        fork.close()


# -- a duplicated last leaf --------------------------------------------------------------------


def test_a_duplicated_last_leaf_is_detected(built: Built) -> None:
    b = built.blocks
    dup = _splice(b[3], b[3].envelopes[-1], b[3].receipts[-1])
    err = _verify(built.genesis, [*b[:3], dup])
    assert err is not None and (err.height, err.field) == (3, "envelopes[2]"), err
    # re-hashed and re-sealed by the node key itself: still a replay
    envs = dup.envelopes
    log = CompactTree()
    log.append([leaf_hash(e) for blk in b[:3] for e in blk.envelopes])
    log.append([leaf_hash(e) for e in envs])
    resealed = _reseal(
        dup, load_node_key(built.root), txs=3, tx_root=block_root(envs),
        receipt_root=block_root(dup.receipts), log_size=log.size, log_root=log.root(),
    )  # fmt: skip
    err = _verify(built.genesis, [*b[:3], resealed])
    assert err is not None and (err.height, err.field) == (3, "envelopes[2]"), err
    assert "replay" in str(err)


@pytest.mark.parametrize("n", range(1, 33))
def test_rfc9162_roots_have_no_duplicated_leaf_ambiguity(n: int) -> None:
    """CVE-2012-2459 (Bitcoin duplicates an odd last node): RFC 9162 never does, so the log
    of ``n`` leaves and the log with its last leaf repeated have different roots, and an
    inclusion proof for the last leaf does not carry over to a phantom index ``n``.

    Found while writing this: for even ``n`` the path of leaf ``n-1`` in the tree of size ``n``
    also "verifies" leaf index ``n`` of a claimed size ``n+1`` against the size-``n`` root,
    because ``verify_inclusion`` trusts the size it is given. The root of size ``n+1`` is never
    that root (first assertion), so the SDK must take the size from the signed checkpoint and
    refuse any other: ``test_hostile_server.py::test_proof_larger_than_the_checkpoint``.
    """
    leaves = [bytes([i]) * 8 for i in range(n)]
    root_n = block_root(leaves)
    assert root_n != block_root([*leaves, leaves[-1]])
    nodes = MemoryNodes()
    tree = CompactTree()
    nodes.put_all(tree.append([leaf_hash(x) for x in leaves]))
    proof = inclusion_proof(nodes, n - 1, n)
    verify_inclusion(leaf_hash(leaves[-1]), n - 1, n, proof, root_n)  # control
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[-1]), n, n, proof, root_n)


def test_a_duplicated_last_row_in_sqlite_is_detected(built: Built, tamper_db: Any) -> None:
    envelope_, receipt = _one(built.db, "SELECT envelope, receipt FROM txs WHERE log_index = 9")
    # the unique tx-id index refuses a verbatim duplicate row outright
    conn = apsw.Connection(str(_copy_db(built.db, built.db.parent / "dup-check.sqlite")))
    try:
        with pytest.raises(apsw.ConstraintError):
            conn.execute("INSERT INTO txs SELECT 10, tx_id, height, 2, envelope, receipt "
                         "FROM txs WHERE log_index = 9")  # fmt: skip
    finally:
        conn.close()
    # a row under another id, with the block's count bumped: verify names the duplicate
    err = tamper_db(
        "INSERT INTO txs (log_index, tx_id, height, position, envelope, receipt) "
        "VALUES (10, ?, 3, 2, ?, ?); UPDATE blocks SET tx_count = 3 WHERE height = 3",
        (b"\x07" * 32, envelope_, receipt),
    )
    assert (err.height, err.field) == (3, "envelopes[2]"), err
