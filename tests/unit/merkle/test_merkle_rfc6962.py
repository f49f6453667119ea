"""RFC 9162 hashing and the naive reference algorithms against published values.

The leaves, roots and proofs are the RFC 6962 test data used by transparency-dev/merkle
(``proof/verify_test.go``) and the Certificate Transparency reference code.
"""

from __future__ import annotations

import hashlib

import pytest

from carechain.errors import ValidationError
from carechain.merkle.rfc6962 import (
    EMPTY_ROOT,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    reference_consistency_proof,
    reference_inclusion_proof,
    reference_root,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

ROOTS = [  # MTH(D[n]) for n = 1..8
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

INCLUSION = [  # (index, size, path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

CONSISTENCY = [  # (size1, size2, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_hash_domains() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    want = hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert node_hash(b"a" * 32, b"b" * 32) == want
    # Negative control: a leaf never equals the interior node over the same bytes.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


def test_reference_root_matches_published_roots() -> None:
    assert reference_root([]) == EMPTY_ROOT
    for n, want in enumerate(ROOTS, start=1):
        assert reference_root(LEAVES[:n]).hex() == want


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_proof(index: int, size: int, path: list[str]) -> None:
    assert [h.hex() for h in reference_inclusion_proof(LEAVES[:size], index)] == path


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_reference_consistency_proof(size1: int, size2: int, proof: list[str]) -> None:
    assert [h.hex() for h in reference_consistency_proof(LEAVES[:size2], size1)] == proof


def test_reference_rejects_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="got 3, want 0 <= index < 3"):
        reference_inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValidationError, match="got 0, want 0 < size1 <= 3"):
        reference_consistency_proof(LEAVES[:3], 0)
    with pytest.raises(ValidationError, match="got 4, want 0 < size1 <= 3"):
        reference_consistency_proof(LEAVES[:3], 4)


@pytest.mark.parametrize(
    ("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (2**40, 2**39)]
)
def test_largest_power_of_two_below(n: int, k: int) -> None:
    assert largest_power_of_two_below(n) == k
    with pytest.raises(ValueError, match="got n=1, want n > 1"):
        largest_power_of_two_below(1)
