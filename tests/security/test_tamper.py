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
from carechain.crypto.signatures import generate_key
from carechain.errors import ChainVerificationError, ProofError
from carechain.ledger.genesis import Genesis
from carechain.ledger.keys import SigCheck, run_sig_checks
from carechain.ledger.verify import verify_chain
from carechain.merkle import Checkpoint, consistency_proof, open_checkpoint, verify_consistency
from carechain.node.chaindir import ChainPaths, init_chain, open_node, read_genesis
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
