"""Verification of RFC 9162 inclusion and consistency proofs.

A port of transparency-dev/merkle ``proof/verify.go`` (Apache-2.0), which computes the
same result as the RFC 9162 §2.1.3.2 and §2.1.4.2 bit-shifting loops by splitting a proof
into an *inner* part (below the point where the path to the leaf leaves the tree's right
border) and a *border* part (left siblings along the right border).

Invariants:

* Every failure raises :class:`~carechain.errors.ProofError` whose message says
  "got X, want Y"; a function that returns has verified the whole proof.
* Sizes and indexes are integers in ``[0, 2^64)`` (the uint64 range of the RFC's
  ``tree_size``); every hash (leaf, root, proof element) is exactly 32 bytes.
* A proof must have exactly the length the (index, size) or (size1, size2) pair implies:
  no missing, extra, leading or trailing elements are tolerated.
* Consistency needs ``0 < size1 <= size2``: a proof from the empty tree proves nothing
  (any tree extends it), so callers treat ``size1 == 0`` as trivially consistent without
  calling :func:`verify_consistency`. When ``size1 == size2`` the proof must be empty and
  the roots equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from carechain.errors import ProofError
from carechain.merkle.rfc6962 import HASH_SIZE

__all__ = ["MAX_TREE_SIZE", "root_from_inclusion", "verify_consistency", "verify_inclusion"]

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size accepted (RFC 9162 sizes are uint64)."""

_sha256 = hashlib.sha256


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises :class:`ProofError` unless the proof verifies (RFC 9162 §2.1.3.2).
    """
    _check_hash("root", root)
    calculated = root_from_inclusion(leaf_hash, index, size, proof)
    if calculated != root:  # RFC 9162 §2.1.3.2 step 5: compare r against root_hash
        raise ProofError(f"inclusion proof: calculated root {calculated.hex()}, want {root.hex()}")


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof for ``leaf_hash`` at ``index`` in ``size``.

    Raises :class:`ProofError` if the inputs are malformed or the proof has the wrong length.
    """
    if not 0 <= index < size <= MAX_TREE_SIZE:  # RFC 9162 §2.1.3.2 step 1
        raise ProofError(f"leaf index: got {index}, want 0 <= index < size {size} <= 2^64-1")
    _check_hash("leaf hash", leaf_hash)
    inner, border = _decomp_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof length for index {index} in size {size}: "
            f"got {len(proof)}, want {inner + border}"
        )
    _check_proof_hashes(proof)
    result = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(result, proof[inner:])


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the one of ``size1``/``root1``.

    Raises :class:`ProofError` unless the proof verifies (RFC 9162 §2.1.4.2).
    Requires ``0 < size1 <= size2``.
    """
    if not 0 <= size1 <= size2 <= MAX_TREE_SIZE:
        raise ProofError(f"tree sizes: got size1 {size1}, size2 {size2}, want size1 <= size2")
    if size1 == 0:
        raise ProofError("size1: got 0, want > 0 (a proof from the empty tree is meaningless)")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    if size1 == size2:
        if proof:
            raise ProofError(f"proof length for size1 == size2: got {len(proof)}, want 0")
        if root1 != root2:
            raise ProofError(f"root2 for size1 == size2: got {root2.hex()}, want {root1.hex()}")
        return
    if not proof:  # RFC 9162 §2.1.4.2 step 1: an empty consistency_path fails
        raise ProofError(f"proof length for sizes {size1} -> {size2}: got 0, want > 0")

    inner, border = _decomp_inclusion(size1 - 1, size2)
    # RFC 9162 §2.1.4.2 step 4: skip the levels where fn = size1 - 1 has trailing ones.
    shift = _trailing_zeros(size1)
    inner -= shift  # shift < inner because size1 < size2
    # RFC 9162 §2.1.4.2 step 2: if size1 is a power of two, root1 is the seed.
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof length for sizes {size1} -> {size2}: "
            f"got {len(proof)}, want {start + inner + border}"
        )
    _check_proof_hashes(proof)
    rest = proof[start:]
    mask = (size1 - 1) >> shift  # chaining starts at level `shift`
    # RFC 9162 §2.1.4.2 steps 5-6 (fr) and step 7: fr must equal first_hash.
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise ProofError(f"consistency proof: calculated root1 {hash1.hex()}, want {root1.hex()}")
    # RFC 9162 §2.1.4.2 steps 5-6 (sr) and step 7: sr must equal second_hash.
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise ProofError(f"consistency proof: calculated root2 {hash2.hex()}, want {root2.hex()}")


def _decomp_inclusion(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof for ``index`` in ``size`` into (inner, border) lengths.

    ``inner`` counts levels below the point where the paths to ``index`` and ``size - 1``
    diverge; ``border`` counts the left siblings above it, one per set bit.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash up from ``seed`` at ``index``; bit i of ``index`` says which side proof[i] is.

    RFC 9162 §2.1.3.2 step 4b: a set LSB(fn) puts the sibling on the left.
    """
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = _sha256(b"\x01" + h + seed).digest()
        else:
            seed = _sha256(b"\x01" + seed + h).digest()
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like :func:`_chain_inner` but only folds in left siblings: the older subtree's hash.

    RFC 9162 §2.1.4.2 step 6b: only ``fr`` absorbs siblings where LSB(fn) is set.
    """
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = _sha256(b"\x01" + h + seed).digest()
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Fold left siblings along the right border (RFC 9162 §2.1.3.2 step 4b, fn == sn)."""
    for h in proof:
        seed = _sha256(b"\x01" + h + seed).digest()
    return seed


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{what} length: got {got}, want {HASH_SIZE} bytes")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for h in proof:  # the common case without building a name per element
        if type(h) is not bytes or len(h) != HASH_SIZE:
            break
    else:
        return
    for i, h in enumerate(proof):
        _check_hash(f"proof[{i}]", h)
