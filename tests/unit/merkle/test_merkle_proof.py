"""Proof verification: negative controls showing every checker can fail.

Leaves are distinct here: with equal sibling leaves, swapping their order changes nothing,
so an index corruption could not be detected by any verifier.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.errors import ProofError
from carechain.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)
from carechain.merkle.rfc6962 import (
    reference_consistency_proof,
    reference_inclusion_proof,
    reference_root,
)

SETTINGS = settings(max_examples=40, deadline=None, database=None)


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [b"%d:" % i + salt for i in range(n)]


def _flips(value: bytes) -> list[bytes]:
    """Every single-bit flip of ``value``."""
    out = []
    for bit in range(len(value) * 8):
        flipped = bytearray(value)
        flipped[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(flipped))
    return out


@st.composite
def _inclusion_case(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(1, 300))
    return _leaves(n, draw(st.binary(max_size=4))), draw(st.integers(0, n - 1))


@st.composite
def _consistency_case(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(2, 300))
    return _leaves(n, draw(st.binary(max_size=4))), draw(st.integers(1, n - 1))


@SETTINGS
@given(_inclusion_case())
def test_inclusion_rejects_every_single_corruption(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    n = len(leaves)
    root, leaf = reference_root(leaves), leaf_hash(leaves[index])
    proof = reference_inclusion_proof(leaves, index)
    verify_inclusion(leaf, index, n, proof, root)  # the positive control
    assert root_from_inclusion(leaf, index, n, proof) == root

    def rejected(leaf_: bytes, index_: int, size: int, proof_: list[bytes], root_: bytes) -> None:
        with pytest.raises(ProofError):
            verify_inclusion(leaf_, index_, size, proof_, root_)

    for i, element in enumerate(proof):
        for flipped in _flips(element):
            rejected(leaf, index, n, [*proof[:i], flipped, *proof[i + 1 :]], root)
    for flipped in _flips(root):
        rejected(leaf, index, n, proof, flipped)
    for flipped in _flips(leaf):
        rejected(flipped, index, n, proof, root)
    rejected(leaf, index - 1, n, proof, root)
    rejected(leaf, index + 1, n, proof, root)
    # A size off by one is caught against that size's root. (Against the *same* root it can
    # pass when both sizes give the path the same shape: binding a size to its root is the
    # signed checkpoint's job, as in RFC 9162 §2.1.3.2.)
    rejected(leaf, index, n - 1, proof, reference_root(leaves[:-1]))
    rejected(leaf, index, n + 1, proof, reference_root([*leaves, b"next"]))
    rejected(leaf, index, n, [*proof, root], root)
    rejected(leaf, index, n, [root, *proof], root)
    if proof:
        rejected(leaf, index, n, proof[:-1], root)


@SETTINGS
@given(_consistency_case())
def test_consistency_rejects_every_single_corruption(case: tuple[list[bytes], int]) -> None:
    leaves, m = case
    n = len(leaves)
    root1, root2 = reference_root(leaves[:m]), reference_root(leaves)
    proof = reference_consistency_proof(leaves, m)
    verify_consistency(m, n, proof, root1, root2)  # the positive control

    def rejected(size1: int, size2: int, proof_: list[bytes], r1: bytes, r2: bytes) -> None:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof_, r1, r2)

    for i, element in enumerate(proof):
        for flipped in _flips(element):
            rejected(m, n, [*proof[:i], flipped, *proof[i + 1 :]], root1, root2)
    for flipped in _flips(root1):
        rejected(m, n, proof, flipped, root2)
    for flipped in _flips(root2):
        rejected(m, n, proof, root1, flipped)
    if m > 1:
        rejected(m - 1, n, proof, reference_root(leaves[: m - 1]), root2)
        rejected(m - 1, n, proof, root1, root2)
    rejected(m + 1, n, proof, reference_root(leaves[: m + 1]), root2)
    rejected(m + 1, n, proof, root1, root2)
    rejected(m, n - 1, proof, root1, reference_root(leaves[:-1]))
    rejected(m, n + 1, proof, root1, reference_root([*leaves, b"next"]))
    rejected(m, n, proof, root2, root1)
    rejected(m, n, [], root1, root2)
    rejected(m, n, proof[:-1], root1, root2)
    rejected(m, n, [*proof, root2], root1, root2)
    rejected(m, n, [root1, *proof], root1, root2)


H = leaf_hash(b"x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((H, 0, 0, [], EMPTY_ROOT), "got 0, want 0 <= index < size 0"),
        ((H, 1, 1, [], H), "got 1, want 0 <= index < size 1"),
        ((H, -1, 1, [], H), "got -1, want 0 <= index"),
        ((H, 0, 2**64, [H] * 64, H), r"index < size 18446744073709551616 <= 2\^64-1"),
        ((H[:31], 0, 1, [], H), "leaf hash length: got 31, want 32"),
        ((H, 0, 1, [], H + b"\x00"), "root length: got 33, want 32"),
        ((H, 0, 2, [], H), "inclusion proof length for index 0 in size 2: got 0, want 1"),
        ((H, 0, 2, [H, H], H), "got 2, want 1"),
        ((H, 0, 2, [b""], H), r"proof\[0\] length: got 0, want 32"),
        ((H, 0, 1, [], EMPTY_ROOT), f"calculated root {H.hex()}, want {EMPTY_ROOT.hex()}"),
    ],
)
def test_inclusion_errors_say_got_and_want(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, 1, [], H, H), "got size1 2, size2 1, want size1 <= size2"),
        ((-1, 1, [], H, H), "got size1 -1"),
        ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), "size1: got 0, want > 0"),
        ((0, 5, [], EMPTY_ROOT, H), "size1: got 0, want > 0"),
        ((1, 1, [H], H, H), "proof length for size1 == size2: got 1, want 0"),
        ((1, 1, [], H, EMPTY_ROOT), f"root2 for size1 == size2: got {EMPTY_ROOT.hex()}"),
        ((1, 2, [], H, H), r"proof length for sizes 1 -> 2: got 0, want > 0"),
        ((1, 2, [H, H], H, H), r"consistency proof length for sizes 1 -> 2: got 2, want 1"),
        ((3, 4, [H, H, H[:5]], H, H), r"proof\[2\] length: got 5, want 32"),
        ((1, 2, [H], H[:12], H), "root1 length: got 12, want 32"),
        ((1, 2, [H], H, "x" * 32), "root2 length: got str, want 32"),
        ((1, 2, [H], H, H), f"calculated root2 [0-9a-f]{{64}}, want {H.hex()}"),
        ((3, 4, [H, H, H], H, H), f"calculated root1 [0-9a-f]{{64}}, want {H.hex()}"),
    ],
)
def test_consistency_errors_say_got_and_want(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*args)  # type: ignore[arg-type]


def test_equal_sizes_need_equal_roots_and_no_proof() -> None:
    verify_consistency(7, 7, [], H, H)
    with pytest.raises(ProofError):
        verify_consistency(7, 7, [], H, leaf_hash(b"y"))
