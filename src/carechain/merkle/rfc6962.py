"""RFC 9162 §2.1 Merkle Tree Hash, and naive reference algorithms used as test oracles.

Invariants:

* ``leaf_hash(d) = SHA-256(0x00 || d)`` and ``node_hash(l, r) = SHA-256(0x01 || l || r)``
  (RFC 9162 §2.1.1): the one-byte prefixes keep leaf and interior hashes in disjoint
  domains, so no interior node can be passed off as a leaf (second-preimage defence).
* ``EMPTY_ROOT = SHA-256("")`` is the hash of the empty tree, ``MTH({})``.
* Every hash is 32 bytes (``HASH_SIZE``).
* The ``reference_*`` functions take raw leaf *data* and follow the RFC recursions
  literally. They are slow (O(n log n) and more) and exist only to cross-check the fast
  code in ``tree.py`` and ``proof.py``; nothing on a hot path calls them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from carechain.errors import ValidationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "largest_power_of_two_below",
    "leaf_hash",
    "node_hash",
    "reference_consistency_proof",
    "reference_inclusion_proof",
    "reference_root",
]

HASH_SIZE = 32
"""Size in bytes of every RFC 9162 hash (SHA-256)."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) = HASH() (RFC 9162 §2.1.1)."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0)) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (n > 1)."""
    if n < 2:
        raise ValueError(f"largest power of two below n: got n={n}, want n > 1")
    return 1 << ((n - 1).bit_length() - 1)


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf data, by the RFC 9162 §2.1.1 recursion (test oracle)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT  # MTH({}) = HASH()
    if n == 1:
        return leaf_hash(leaves[0])  # MTH({d(0)}) = HASH(0x00 || d(0))
    k = largest_power_of_two_below(n)  # k < n <= 2k
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def reference_inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) over raw leaf data (RFC 9162 §2.1.3.1), literally (test oracle)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValidationError(f"leaf index: got {index}, want 0 <= index < {n}")
    if n == 1:
        return []  # PATH(0, {d(0)}) = {}
    k = largest_power_of_two_below(n)
    if index < k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
        return [*reference_inclusion_proof(leaves[:k], index), reference_root(leaves[k:])]
    # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
    return [*reference_inclusion_proof(leaves[k:], index - k), reference_root(leaves[:k])]


def reference_consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1), literally (oracle).

    Defined for 0 < m <= n; for m == n the proof is empty.
    """
    n = len(leaves)
    if not 0 < m <= n:
        raise ValidationError(f"consistency proof size1: got {m}, want 0 < size1 <= {n}")
    return _subproof(leaves, m, True)


def _subproof(leaves: Sequence[bytes], m: int, b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
        return [] if b else [reference_root(leaves)]
    k = largest_power_of_two_below(n)
    if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        return [*_subproof(leaves[:k], m, b), reference_root(leaves[k:])]
    # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    return [*_subproof(leaves[k:], m - k, False), reference_root(leaves[:k])]
