"""The append-only tree against the naive RFC 9162 reference, plus large-size behaviour."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.errors import ConflictError, NotFoundError, ValidationError
from carechain.merkle import (
    EMPTY_ROOT,
    CompactTree,
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from carechain.merkle.rfc6962 import (
    reference_consistency_proof,
    reference_inclusion_proof,
    reference_root,
)

SETTINGS = settings(max_examples=60, deadline=None, database=None)


def _leaves(n: int) -> list[bytes]:
    return [b"leaf %d" % i for i in range(n)]


def _build(leaves: list[bytes], batches: list[int]) -> tuple[CompactTree, MemoryNodes]:
    """Append ``leaves`` in the given batch sizes (the rest in one batch)."""
    tree, nodes = CompactTree(), MemoryNodes()
    hashes = [leaf_hash(d) for d in leaves]
    pos = 0
    for size in [*batches, len(hashes)]:
        nodes.put_all(tree.append(hashes[pos : pos + size]))
        pos = min(pos + size, len(hashes))
    return tree, nodes


@st.composite
def _tree_case(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    n = draw(st.integers(0, 300))
    leaves = draw(st.lists(st.binary(max_size=8), min_size=n, max_size=n))
    batches = draw(st.lists(st.integers(0, 40), max_size=8))
    return leaves, batches


class CountingReader:
    """A NodeReader that counts reads (the O(log n) bound is part of the contract)."""

    def __init__(self, inner: MemoryNodes | UniformTree) -> None:
        self.inner = inner
        self.reads = 0

    def get_merkle_node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.inner.get_merkle_node(level, index)


class UniformTree:
    """A stored tree of ``size`` identical leaves: node (level, i) depends only on level.

    It stands in for a store of up to 2^64 - 1 leaves without materialising them; it still
    refuses nodes that are not complete at ``size``, like a real store.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    @staticmethod
    @cache
    def level_hash(level: int) -> bytes:
        if level == 0:
            return leaf_hash(b"same")
        below = UniformTree.level_hash(level - 1)
        return node_hash(below, below)

    def get_merkle_node(self, level: int, index: int) -> bytes:
        if (index + 1) << level > self.size:
            raise NotFoundError(f"node ({level}, {index}) not complete at size {self.size}")
        return self.level_hash(level)

    def root(self, size: int) -> bytes:
        """Root by the RFC recursion, using that complete subtrees hash per level."""
        if size == 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0:
            return self.level_hash(size.bit_length() - 1)
        k = 1 << ((size - 1).bit_length() - 1)
        return node_hash(self.level_hash(k.bit_length() - 1), self.root(size - k))


@SETTINGS
@given(_tree_case())
def test_tree_root_matches_reference(case: tuple[list[bytes], list[int]]) -> None:
    leaves, batches = case
    tree, nodes = _build(leaves, batches)
    want = reference_root(leaves)
    assert tree.size == len(leaves)
    assert tree.root() == want
    assert root_at(nodes, len(leaves)) == want
    assert CompactTree.from_reader(nodes, len(leaves)).root() == want
    assert CompactTree.from_reader(nodes, len(leaves)).frontier == tree.frontier
    # Every historical root is still available from the same nodes.
    for size in {0, min(1, len(leaves)), len(leaves) // 2, max(len(leaves) - 1, 0)}:
        assert root_at(nodes, size) == reference_root(leaves[:size])


@SETTINGS
@given(_tree_case(), st.data())
def test_tree_proofs_match_reference_and_verify(
    case: tuple[list[bytes], list[int]], data: st.DataObject
) -> None:
    leaves, batches = case
    if not leaves:
        return
    _, nodes = _build(leaves, batches)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    size1 = data.draw(st.integers(1, size), label="size1")
    root, root1 = reference_root(leaves[:size]), reference_root(leaves[:size1])

    path = inclusion_proof(nodes, index, size)
    assert path == reference_inclusion_proof(leaves[:size], index)
    verify_inclusion(leaf_hash(leaves[index]), index, size, path, root)

    proof = consistency_proof(nodes, size1, size)
    assert proof == reference_consistency_proof(leaves[:size], size1)
    verify_consistency(size1, size, proof, root1, root)


def test_append_returns_every_new_complete_node() -> None:
    leaves = [leaf_hash(d) for d in _leaves(7)]
    tree = CompactTree()
    assert tree.append([]) == []
    assert tree.root() == EMPTY_ROOT
    first = tree.append(leaves[:3])
    assert [(lv, i) for lv, i, _ in first] == [(0, 0), (0, 1), (1, 0), (0, 2)]
    second = tree.append(leaves[3:])
    assert [(lv, i) for lv, i, _ in second] == [
        (0, 3),
        (1, 1),
        (2, 0),
        (0, 4),
        (0, 5),
        (1, 2),
        (0, 6),
    ]
    nodes = {(lv, i): h for lv, i, h in first + second}
    assert nodes[(2, 0)] == reference_root(_leaves(4))
    assert nodes[(1, 2)] == reference_root(_leaves(6)[4:])
    assert len(tree.frontier) == 3  # 7 = 4 + 2 + 1


def test_append_is_all_or_nothing() -> None:
    tree = CompactTree()
    tree.append([leaf_hash(b"a")])
    before = (tree.size, tree.frontier, tree.root())
    with pytest.raises(ValidationError, match="leaf hash 2 length: got 31, want 32"):
        tree.append([leaf_hash(b"b"), b"x" * 31])
    assert (tree.size, tree.frontier, tree.root()) == before


def test_copy_is_independent() -> None:
    tree = CompactTree()
    tree.append([leaf_hash(d) for d in _leaves(5)])
    clone = tree.copy()
    clone.append([leaf_hash(b"more")])
    assert (tree.size, clone.size) == (5, 6)
    assert tree.root() == reference_root(_leaves(5))
    assert clone.root() == reference_root([*_leaves(5), b"more"])


def test_memory_nodes_are_immutable_and_missing_nodes_raise() -> None:
    nodes = MemoryNodes()
    nodes.put(0, 0, b"a" * 32)
    nodes.put(0, 0, b"a" * 32)  # idempotent
    with pytest.raises(ConflictError, match=r"merkle node \(level 0, index 0\): got 6262"):
        nodes.put(0, 0, b"b" * 32)
    with pytest.raises(NotFoundError, match=r"\(level 3, index 1\) is not stored"):
        nodes.get_merkle_node(3, 1)
    assert len(nodes) == 1


def test_sizes_beyond_the_store_are_not_found() -> None:
    _, nodes = _build(_leaves(5), [])
    with pytest.raises(NotFoundError):
        root_at(nodes, 6)
    with pytest.raises(NotFoundError):
        inclusion_proof(nodes, 0, 6)
    with pytest.raises(NotFoundError):
        consistency_proof(nodes, 3, 6)
    with pytest.raises(NotFoundError):
        CompactTree.from_reader(nodes, 6)


def test_bad_proof_requests_are_validation_errors() -> None:
    _, nodes = _build(_leaves(5), [])
    with pytest.raises(ValidationError, match="got 5, want 0 <= index < size 5"):
        inclusion_proof(nodes, 5, 5)
    with pytest.raises(ValidationError, match="got -1, want 0 <= index"):
        inclusion_proof(nodes, -1, 5)
    with pytest.raises(ValidationError, match="got 0, want 0 < size1 <= size2 5"):
        consistency_proof(nodes, 0, 5)
    with pytest.raises(ValidationError, match="got 4, want 0 < size1 <= size2 3"):
        consistency_proof(nodes, 4, 3)
    with pytest.raises(ValidationError, match="tree size: got -1"):
        root_at(nodes, -1)
    assert consistency_proof(nodes, 5, 5) == []
    assert root_at(nodes, 0) == EMPTY_ROOT


@pytest.mark.parametrize(
    "size",
    [2**40, 2**40 - 1, 2**40 + 12345, 2**40 + 2**39 + 7, 2**63 + 1, 2**64 - 1],
)
def test_large_sizes_read_logarithmically(size: int) -> None:
    store = UniformTree(size)
    reader = CountingReader(store)
    root = root_at(reader, size)
    assert root == store.root(size)
    assert reader.reads == size.bit_count()

    tree = CompactTree.from_reader(store, size)
    assert tree.root() == root
    if size < 2**64 - 1:
        appended = tree.copy()
        appended.append([UniformTree.level_hash(0)])
        assert appended.root() == UniformTree(size + 1).root(size + 1)

    bound = 3 * size.bit_length()
    for index in (0, 1, size // 3, size - 2, size - 1):
        reader.reads = 0
        path = inclusion_proof(reader, index, size)
        assert reader.reads <= bound
        verify_inclusion(UniformTree.level_hash(0), index, size, path, root)
    for size1 in (1, 2**20 + 3, size // 2 + 1, size - 1):
        reader.reads = 0
        proof = consistency_proof(reader, size1, size)
        assert reader.reads <= bound
        verify_consistency(size1, size, proof, store.root(size1), root)


def _recursive_plan(index: int, size: int) -> list[list[tuple[int, int]]]:
    """The RFC 9162 §2.1.3.1 PATH recursion over node coordinates (the previous
    implementation of ``inclusion_plan``), as the reference for the closed form."""
    from carechain.merkle.tree import _tiles

    plan: list[list[tuple[int, int]]] = []
    lo, n, m = 0, size, index
    while n > 1:
        level = (n - 1).bit_length() - 1
        k = 1 << level
        if m < k:
            plan.append(_tiles(lo + k, lo + n))
            n = k
        else:
            plan.append([(level, lo >> level)])
            lo, n, m = lo + k, n - k, m - k
    plan.reverse()
    return plan


def test_closed_form_inclusion_plan_equals_the_rfc_recursion() -> None:
    """Every index of every size up to 300, and spread indexes of sizes up to 2^64 - 1."""
    import random

    from carechain.merkle.tree import inclusion_plan

    for size in range(1, 301):
        for index in range(size):
            assert inclusion_plan(index, size) == _recursive_plan(index, size), (index, size)
    rng = random.Random(6962)
    sizes = [2**40 + 12345, 2**63 - 1, 2**64 - 1, *(rng.randrange(2, 2**64) for _ in range(200))]
    for size in sizes:
        spread = [rng.randrange(size) for _ in range(20)]
        for index in [0, 1, size // 2, size - 2, size - 1, *spread]:
            assert inclusion_plan(index, size) == _recursive_plan(index, size), (index, size)
