"""Proofs from one batched node read (issue 8) equal the per-node proofs and the RFC 9162
reference, on a dict-backed reader and on the SQLite store; a missing node is named.

Negative controls: a reader that corrupts one node makes the batched proof fail to verify,
and the plan for a size the store has not reached raises ``NotFoundError``.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from carechain.errors import NotFoundError, ProofError
from carechain.merkle import (
    CompactTree,
    MemoryNodes,
    consistency_proof_and_roots,
    inclusion_proof,
    inclusion_proof_and_root,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from carechain.merkle.rfc6962 import (
    reference_consistency_proof,
    reference_inclusion_proof,
    reference_root,
)
from carechain.merkle.tree import inclusion_plan
from carechain.storage import BlockCommit, StoredBlock
from carechain.storage.sqlite import SQLiteStore

SETTINGS = settings(max_examples=40, deadline=None, database=None)
SIZE = 77


def _leaves(n: int) -> list[bytes]:
    return [b"leaf %d" % i for i in range(n)]


def _memory(n: int) -> MemoryNodes:
    nodes = MemoryNodes()
    nodes.put_all(CompactTree().append([leaf_hash(d) for d in _leaves(n)]))
    return nodes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SQLiteStore:
    path: pathlib.Path = tmp_path_factory.mktemp("batched") / "ledger.db"
    s = SQLiteStore(path)
    tree = CompactTree()
    leaves = _leaves(SIZE)
    for height, (lo, hi) in enumerate([(0, 30), (30, 31), (31, SIZE)]):
        envs = tuple(leaves[lo:hi])
        s.commit_block(
            BlockCommit(
                block=StoredBlock(
                    height=height, header=b"h%d" % height, signature=b"",
                    envelopes=envs, receipts=tuple(b"{}" for _ in envs),
                ),
                header_hash=bytes([height]) * 32,
                tx_ids=tuple(leaf_hash(e) for e in envs),
                first_log_index=lo,
                merkle_nodes=tuple(tree.append([leaf_hash(e) for e in envs])),
                state_writes=(),
            )
        )  # fmt: skip
    return s


@SETTINGS
@given(st.data())
def test_batched_inclusion_equals_reference(store: SQLiteStore, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, SIZE))
    index = data.draw(st.integers(0, size - 1))
    leaves = _leaves(size)
    want = (reference_inclusion_proof(leaves, index), reference_root(leaves))
    for reader in (store, _memory(SIZE)):  # batched read, and one read per node
        proof, root = inclusion_proof_and_root(reader, index, size)
        assert (proof, root) == want
        verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)


@SETTINGS
@given(st.data())
def test_batched_consistency_equals_reference(store: SQLiteStore, data: st.DataObject) -> None:
    size2 = data.draw(st.integers(1, SIZE))
    size1 = data.draw(st.integers(1, size2))
    leaves = _leaves(size2)
    want = (
        reference_consistency_proof(leaves, size1),
        reference_root(leaves[:size1]),
        reference_root(leaves),
    )
    for reader in (store, _memory(SIZE)):
        got = consistency_proof_and_roots(reader, size1, size2)
        assert got == want
        verify_consistency(size1, size2, *got)


def test_get_merkle_nodes_matches_single_reads_and_names_a_missing_node(
    store: SQLiteStore,
) -> None:
    coords = [(0, 5), (3, 2), (0, 5), (6, 0), (1, 37)]  # a repeat, a cached level
    assert store.get_merkle_nodes(coords) == [store.get_merkle_node(*c) for c in coords]
    assert store.get_merkle_nodes([]) == []
    with pytest.raises(NotFoundError, match="level 0, index 77"):
        store.get_merkle_nodes([(0, 1), (0, SIZE)])  # negative control: beyond the log


def test_find_tx_envelope_matches_find_tx_and_find_envelope(store: SQLiteStore) -> None:
    tx_id = leaf_hash(b"leaf 40")
    loc = store.find_tx(tx_id)
    assert loc is not None
    assert store.find_tx_envelope(tx_id) == (loc, store.find_envelope(loc.log_index))
    assert store.find_tx_envelope(b"\x00" * 32) is None


@given(st.integers(0, SIZE - 1))
@example(SIZE - 1)  # even, the last leaf: its sibling is past the tree
@example(SIZE - 2)
@SETTINGS
def test_a_known_sibling_leaf_is_used_and_not_read(index: int) -> None:
    """What ``prove_inclusion`` passes (the sibling leaf read with the transaction) gives the
    reference proof; a wrong known node is used as given (negative control: the proof then
    fails to verify), so the known value is really the one in the proof."""
    nodes, leaves = _memory(SIZE), _leaves(SIZE)
    if index ^ 1 >= SIZE:  # the sibling is past the tree: a known value for it is not used
        junk = {(0, index ^ 1): bytes(32)}
        assert inclusion_proof(nodes, index, SIZE, junk) == reference_inclusion_proof(
            leaves, index
        )
        return
    known = {(0, index ^ 1): nodes.get_merkle_node(0, index ^ 1)}
    proof, root = inclusion_proof_and_root(nodes, index, SIZE, known)
    assert proof == reference_inclusion_proof(leaves, index)
    assert proof == inclusion_proof(nodes, index, SIZE, known)
    verify_inclusion(leaf_hash(leaves[index]), index, SIZE, proof, root)
    wrong = {(0, index ^ 1): bytes(32)}
    bad, _ = inclusion_proof_and_root(nodes, index, SIZE, wrong)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[index]), index, SIZE, bad, root)


class _Corrupting:
    """A batched reader that flips one bit of one node (negative control)."""

    def __init__(self, inner: SQLiteStore, victim: tuple[int, int]) -> None:
        self.inner, self.victim = inner, victim

    def get_merkle_node(self, level: int, index: int) -> bytes:
        return self.get_merkle_nodes([(level, index)])[0]

    def get_merkle_nodes(self, coords: list[tuple[int, int]]) -> list[bytes]:
        out = self.inner.get_merkle_nodes(coords)
        return [
            bytes([h[0] ^ 1]) + h[1:] if c == self.victim else h
            for c, h in zip(coords, out, strict=True)
        ]


def test_a_corrupted_node_makes_the_batched_proof_fail(store: SQLiteStore) -> None:
    _, root = inclusion_proof_and_root(store, 3, SIZE)
    proof, _ = inclusion_proof_and_root(_Corrupting(store, (1, 0)), 3, SIZE)  # 3's sibling pair
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"leaf 3"), 3, SIZE, proof, root)


def test_a_size_beyond_the_store_is_not_found(store: SQLiteStore) -> None:
    with pytest.raises(NotFoundError):
        inclusion_proof_and_root(store, 0, SIZE + 3)


def _one_block_store(path: pathlib.Path) -> SQLiteStore:
    """A SQLite store holding the SIZE leaves in one block."""
    s = SQLiteStore(path)
    envs = tuple(_leaves(SIZE))
    s.commit_block(
        BlockCommit(
            block=StoredBlock(height=0, header=b"h", signature=b"", envelopes=envs,
                              receipts=tuple(b"{}" for _ in envs)),
            header_hash=b"\x01" * 32, tx_ids=tuple(leaf_hash(e) for e in envs),
            first_log_index=0,
            merkle_nodes=tuple(CompactTree().append([leaf_hash(e) for e in envs])),
            state_writes=(),
        )
    )  # fmt: skip
    return s


def test_the_upper_levels_are_held_within_the_byte_budget(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carechain.storage import sqlite as sqlite_mod

    # SIZE leaves: level 4 has 4 nodes, 5 has 2, 6 has 1: a budget of 3 nodes holds 5 and 6
    monkeypatch.setattr(sqlite_mod, "_MERKLE_CACHE_BYTES", 3 * 32)
    s = _one_block_store(tmp_path / "ledger.db")
    try:
        assert not s._merkle.loaded  # single reads (roots, the frontier) never load it
        s.get_merkle_node(0, 0)
        assert not s._merkle.loaded
        s.get_merkle_nodes([(0, 0)])
        assert s._merkle.lowest == 5 and s._merkle.nbytes == 3 * 32  # level 4 did not fit
        assert s._merkle.get(5, 1) == s._rows(
            "SELECT hash FROM merkle_nodes WHERE level = 5 AND idx = 1"
        )[0][0]
        assert s._merkle.get(4, 0) is None and s._merkle.get(5, 2) is None
        proof, root = inclusion_proof_and_root(s, 40, SIZE)  # and proofs are unchanged
        assert (proof, root) == (reference_inclusion_proof(_leaves(SIZE), 40),
                                 reference_root(_leaves(SIZE)))  # fmt: skip
    finally:
        s.close()


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.data())
def test_held_levels_grow_with_commits_and_proofs_stay_right(
    tmp_path_factory: pytest.TempPathFactory, blocks: list[int], data: st.DataObject
) -> None:
    """Blocks committed after the first proof loaded the upper levels: later proofs extend
    the held arrays from the store (never serve a stale or missing node) and still equal the
    RFC 9162 reference, with a budget small enough that levels are dropped on the way."""
    from carechain.storage import sqlite as sqlite_mod

    old = sqlite_mod._MERKLE_CACHE_BYTES
    sqlite_mod._MERKLE_CACHE_BYTES = 8 * 32  # a handful of nodes: drops levels as it grows
    try:
        s = SQLiteStore(tmp_path_factory.mktemp("grow") / "ledger.db")
    finally:
        sqlite_mod._MERKLE_CACHE_BYTES = old
    try:
        tree, size = CompactTree(), 0
        for height, n in enumerate(blocks):
            envs = tuple(b"leaf %d" % i for i in range(size, size + n))
            s.commit_block(
                BlockCommit(
                    block=StoredBlock(height=height, header=b"h", signature=b"", envelopes=envs,
                                      receipts=tuple(b"{}" for _ in envs)),
                    header_hash=bytes([height]) * 32,
                    tx_ids=tuple(leaf_hash(b"id" + e) for e in envs), first_log_index=size,
                    merkle_nodes=tuple(tree.append([leaf_hash(e) for e in envs])),
                    state_writes=(),
                )
            )  # fmt: skip
            size += n
            index = data.draw(st.integers(0, size - 1))
            proof, root = inclusion_proof_and_root(s, index, size)
            assert (proof, root) == (reference_inclusion_proof(_leaves(size), index),
                                     reference_root(_leaves(size)))  # fmt: skip
            assert s._merkle.nbytes <= 8 * 32
            # the proof's nodes at held levels are held now (extended, not read past)
            lowest = s._merkle.lowest
            assert lowest is not None
            for group in inclusion_plan(index, size):
                for level, idx in group:
                    if level >= lowest:
                        assert s._merkle.get(level, idx) == s.get_merkle_node(level, idx)
    finally:
        s.close()


def test_a_gap_or_a_malformed_row_ends_a_held_level(tmp_path: pathlib.Path) -> None:
    """The store hands NodeArrays only the gapless run from index 0 of each level: a node
    deleted (or a hash of the wrong size) ends it, and the nodes after it are read from the
    store, so proofs stay right (a store this code wrote has neither)."""
    s = _one_block_store(tmp_path / "ledger.db")
    try:
        full = s._level_prefix(1)
        assert len(full) == (SIZE >> 1) * 32  # complete: one statement and a join
        writer = s._writer
        with writer:
            writer.execute("DELETE FROM merkle_nodes WHERE level = 1 AND idx = 5")
            writer.execute("UPDATE merkle_nodes SET hash = x'00' WHERE level = 2 AND idx = 3")
        assert s._level_prefix(1) == full[: 5 * 32]  # up to the gap
        assert len(s._level_prefix(2)) == 3 * 32  # up to the malformed row
        assert s._level_prefix(3) == b"".join(
            s.get_merkle_node(3, i) for i in range(SIZE >> 3)
        )
        s.get_merkle_nodes([(0, 0)])
        assert s._merkle.get(1, 4) is not None and s._merkle.get(1, 6) is None
    finally:
        s.close()
