"""An append-only RFC 9162 Merkle tree backed by stored complete-subtree nodes.

Node ``(level, index)`` is the hash of the *complete* subtree over leaves
``[index * 2^level, (index + 1) * 2^level)``; level 0 nodes are leaf hashes.

Invariants:

* A node is stored once its subtree is complete and never changes afterwards: the tree is
  append-only, so every node of a tree of size ``n`` is also a node of every larger tree.
  :class:`MemoryNodes` refuses to overwrite a node with a different hash.
* ``CompactTree`` holds the size ``n`` and its frontier: the hashes of the complete
  subtrees along the right edge, one per set bit of ``n``, largest (leftmost) first. That is
  all the state needed to append and to compute the root (RFC 9162 §2.1.1 splits at the
  largest power of two below ``n``, which is exactly the frontier's first subtree).
* ``CompactTree.append`` returns every node that became complete, level 0 included, in
  the order they were formed; persisting them all keeps the store in step with the tree.
* The free functions read O(log n) stored nodes and never rebuild the tree: a subtree
  ``D[a:b]`` that is not complete (only ever on the right edge) is combined from the
  complete nodes that tile it, one per set bit of ``b - a``.
* Nodes of a tree larger than the store are absent, so asking for a root or a proof of a
  size the store has not reached raises :class:`~carechain.errors.NotFoundError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from carechain.errors import ConflictError, NotFoundError, ValidationError
from carechain.merkle.proof import MAX_TREE_SIZE
from carechain.merkle.rfc6962 import EMPTY_ROOT, HASH_SIZE, largest_power_of_two_below

__all__ = [
    "CompactTree",
    "MemoryNodes",
    "NodeReader",
    "consistency_proof",
    "consistency_proof_and_roots",
    "inclusion_proof",
    "inclusion_proof_and_root",
    "read_nodes",
    "root_at",
]

_NODE_SEED = hashlib.sha256(b"\x01")  # RFC 9162 §2.1.1 interior-node prefix, pre-absorbed


class NodeReader(Protocol):
    """Read access to stored complete-subtree hashes (storage implements this)."""

    def get_merkle_node(self, level: int, index: int) -> bytes:
        """Hash of node ``(level, index)``; raises ``NotFoundError`` if it is not stored."""
        ...


class MemoryNodes:
    """A dict-backed :class:`NodeReader` (tests, caches, light clients)."""

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def get_merkle_node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise NotFoundError(
                f"merkle node (level {level}, index {index}) is not stored"
            ) from None

    def put(self, level: int, index: int, hash: bytes) -> None:
        """Store a node; a node is immutable once stored (append-only tree)."""
        old = self._nodes.setdefault((level, index), hash)
        if old != hash:
            raise ConflictError(
                f"merkle node (level {level}, index {index}): got {hash.hex()}, "
                f"want the stored {old.hex()}"
            )

    def put_all(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store every ``(level, index, hash)`` of ``nodes`` (e.g. from ``append``)."""
        for level, index, hash in nodes:
            self.put(level, index, hash)


class CompactTree:
    """Size plus right-edge frontier of an append-only Merkle tree (O(log n) state)."""

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._frontier: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Complete right-edge subtree hashes, largest first (one per set bit of size)."""
        return tuple(self._frontier)

    def copy(self) -> CompactTree:
        """An independent copy (appending to it leaves this tree unchanged)."""
        other = CompactTree()
        other._size = self._size
        other._frontier = self._frontier[:]
        return other

    @classmethod
    def from_reader(cls, reader: NodeReader, size: int) -> CompactTree:
        """Rebuild the tree of ``size`` from stored nodes, reading popcount(size) nodes."""
        _check_size("tree size", size)
        tree = cls()
        tree._frontier = _tiling(reader, 0, size)
        tree._size = size
        return tree

    def append(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append leaf hashes; return the new complete nodes ``(level, index, hash)``.

        All-or-nothing: a leaf hash of the wrong length raises ``ValidationError`` and
        leaves the tree unchanged.
        """
        size = self._size
        if size + len(leaf_hashes) > MAX_TREE_SIZE:
            raise ValidationError(f"tree size: got {size + len(leaf_hashes)}, want <= 2^64-1")
        frontier = self._frontier[:]
        pop, push = frontier.pop, frontier.append
        new_nodes: list[tuple[int, int, bytes]] = []
        emit = new_nodes.append
        seed = _NODE_SEED.copy
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValidationError(f"leaf hash {size} length: got {len(h)}, want {HASH_SIZE}")
            emit((0, size, h))
            index, level = size, 0
            while index & 1:  # a complete left sibling waits on the frontier: merge
                hasher = seed()
                hasher.update(pop())
                hasher.update(h)
                h = hasher.digest()  # HASH(0x01 || left || right), RFC 9162 §2.1.1
                index >>= 1
                level += 1
                emit((level, index, h))
            push(h)
            size += 1
        self._frontier = frontier
        self._size = size
        return new_nodes

    def root(self) -> bytes:
        """MTH of the current leaves (RFC 9162 §2.1.1)."""
        return _fold(self._frontier)


def root_at(reader: NodeReader, size: int) -> bytes:
    """MTH(D[size]) from stored nodes, reading popcount(size) nodes."""
    _check_size("tree size", size)
    return _fold(_tiling(reader, 0, size))


def inclusion_proof(
    reader: NodeReader, index: int, size: int, known: Mapping[Coord, bytes] | None = None
) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1) from O(log size) stored nodes; ``known``
    nodes (e.g. the sibling leaf read with the transaction) are not read again."""
    plan = inclusion_plan(index, size)
    return _assemble(plan, read_nodes(reader, [c for group in plan for c in group], known))


def consistency_proof(reader: NodeReader, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from O(log size2) stored nodes.

    Requires ``0 < size1 <= size2``; the proof for equal sizes is empty.
    """
    plan = consistency_plan(size1, size2)
    return _assemble(plan, read_nodes(reader, [c for group in plan for c in group]))


def inclusion_proof_and_root(
    reader: NodeReader, index: int, size: int, known: Mapping[Coord, bytes] | None = None
) -> tuple[list[bytes], bytes]:
    """``(PATH(index, D[size]), MTH(D[size]))`` from one batched node read (``known``: as
    for :func:`inclusion_proof`)."""
    plan = inclusion_plan(index, size)
    root_tiles = _tiles(0, size)
    hashes = read_nodes(reader, [c for group in plan for c in group] + root_tiles, known)
    split = len(hashes) - len(root_tiles)
    return _assemble(plan, hashes[:split]), _fold(hashes[split:])


def consistency_proof_and_roots(
    reader: NodeReader, size1: int, size2: int
) -> tuple[list[bytes], bytes, bytes]:
    """``(PROOF(size1, D[size2]), MTH(D[size1]), MTH(D[size2]))`` from one batched read."""
    plan = consistency_plan(size1, size2)
    tiles1, tiles2 = _tiles(0, size1), _tiles(0, size2)
    hashes = read_nodes(reader, [c for group in plan for c in group] + tiles1 + tiles2)
    n2 = len(hashes) - len(tiles2)
    n1 = n2 - len(tiles1)
    return _assemble(plan, hashes[:n1]), _fold(hashes[n1:n2]), _fold(hashes[n2:])


Coord = tuple[int, int]
"""``(level, index)`` of a stored complete-subtree node."""


def inclusion_plan(index: int, size: int) -> list[list[Coord]]:
    """The stored nodes PATH(index, D[size]) needs, bottom-up: one group of tiles per
    proof element, folded (largest first) into that element.

    Closed form of the RFC 9162 §2.1.3.1 recursion (the decomposition of
    :func:`carechain.merkle.proof._decomp_inclusion`): below level ``inner`` (where the
    paths to ``index`` and ``size - 1`` part) every sibling is a complete subtree except
    the highest, which covers ``[start, size)`` and is tiled; above it, along the right
    border, the left sibling of each set bit of ``index >> inner``.
    """
    _check_size("tree size", size)
    if not 0 <= index < size:
        raise ValidationError(f"leaf index: got {index}, want 0 <= index < size {size}")
    inner = (index ^ (size - 1)).bit_length()
    plan = [[(level, (index >> level) ^ 1)] for level in range(inner - 1)]
    if inner:
        top = inner - 1
        plan.append(_tiles(((index >> top) ^ 1) << top, size))
    level, rest = inner, index >> inner
    while rest:
        if rest & 1:
            plan.append([(level, (index >> level) ^ 1)])
        rest >>= 1
        level += 1
    return plan


def consistency_plan(size1: int, size2: int) -> list[list[Coord]]:
    """The stored nodes PROOF(size1, D[size2]) needs (see :func:`inclusion_plan`)."""
    _check_size("size2", size2)
    if not 0 < size1 <= size2:
        raise ValidationError(f"size1: got {size1}, want 0 < size1 <= size2 {size2}")
    plan: list[list[Coord]] = []  # collected top-down, returned bottom-up
    lo, n, m, b = 0, size2, size1, True  # SUBPROOF(m, D[lo:lo+n], b)
    while m != n:
        k = largest_power_of_two_below(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            plan.append(_tiles(lo + k, lo + n))
            n = k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            plan.append(_tiles(lo, lo + k))
            lo, n, m, b = lo + k, n - k, m - k, False
    if not b:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}; D[m] is complete here
        plan.append(_tiles(lo, lo + m))
    plan.reverse()
    return plan


def read_nodes(
    reader: NodeReader, coords: Sequence[Coord], known: Mapping[Coord, bytes] | None = None
) -> list[bytes]:
    """The stored hashes at ``coords``, in order: those in ``known`` as given, the others in
    one batched read when the reader offers ``get_merkle_nodes`` (the SQLite store does),
    else one read per node."""
    if known:
        rest = iter(read_nodes(reader, [c for c in coords if c not in known]))
        return [known[c] if c in known else next(rest) for c in coords]
    batch = getattr(reader, "get_merkle_nodes", None)
    if batch is not None:
        hashes: list[bytes] = batch(coords)
        return hashes
    return [reader.get_merkle_node(level, index) for level, index in coords]


def _assemble(plan: Sequence[Sequence[Coord]], hashes: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    for group in plan:
        n = len(group)
        out.append(hashes[i] if n == 1 else _fold(hashes[i : i + n]))
        i += n
    return out


def _tiles(start: int, end: int) -> list[Coord]:
    """Coordinates of the complete subtrees tiling ``[start, end)``, largest first.

    ``start`` must be a multiple of a power of two >= ``end - start``, which holds for
    every subtree of the RFC 9162 §2.1.1 recursion.
    """
    coords: list[Coord] = []
    width = end - start
    while width:  # one tile per set bit of the width, largest first
        level = width.bit_length() - 1
        coords.append((level, start >> level))
        start += 1 << level
        width ^= 1 << level
    return coords


def _tiling(reader: NodeReader, start: int, end: int) -> list[bytes]:
    """Hashes of the complete subtrees tiling ``[start, end)``, largest first: a few
    single-node reads (a root, the frontier), not the proofs' batched read, which makes a
    store load its upper tree."""
    return [reader.get_merkle_node(level, index) for level, index in _tiles(start, end)]


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Combine right-edge tiles, largest first, into one root (RFC 9162 §2.1.1).

    MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) with k the largest tile, so the
    root folds the tiles from the smallest (rightmost) up.
    """
    if not hashes:
        return EMPTY_ROOT  # MTH({}) = HASH()
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = hashlib.sha256(b"\x01" + h + result).digest()
    return result


def _check_size(what: str, size: int) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValidationError(f"{what}: got {size}, want 0 <= size <= 2^64-1")
