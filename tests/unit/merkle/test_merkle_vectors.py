"""transparency-dev/merkle proof vectors (tests/vectors/merkle, see PROVENANCE.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from carechain.errors import ProofError
from carechain.merkle import root_from_inclusion, verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "merkle"

# Vectors where carechain is deliberately stricter than upstream, with the reason.
STRICTER = {
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        "12-byte roots: carechain rejects every root that is not 32 bytes"
    ),
}


def _load(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no vectors under {VECTORS / kind}"
    return [pytest.param(f, id=str(f.relative_to(VECTORS))) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(data: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in data["proof"] or []]


def _want_error(path: Path, data: dict[str, Any]) -> bool:
    return bool(data["wantErr"]) or str(path.relative_to(VECTORS)) in STRICTER


@pytest.mark.parametrize("path", _load("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    data = json.loads(path.read_text())
    args = (_b64(data["leafHash"]), data["leafIdx"], data["treeSize"], _proof(data))
    if _want_error(path, data):
        with pytest.raises(ProofError):
            verify_inclusion(*args, _b64(data["root"]))
    else:
        verify_inclusion(*args, _b64(data["root"]))
        assert root_from_inclusion(*args) == _b64(data["root"])


@pytest.mark.parametrize("path", _load("consistency"))
def test_consistency_vector(path: Path) -> None:
    data = json.loads(path.read_text())
    args = (data["size1"], data["size2"], _proof(data), _b64(data["root1"]), _b64(data["root2"]))
    if _want_error(path, data):
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_set_is_complete() -> None:
    inclusion = list((VECTORS / "inclusion").rglob("*.json"))
    consistency = list((VECTORS / "consistency").rglob("*.json"))
    assert (len(inclusion), len(consistency)) == (98, 98)
    happy = [p for p in inclusion + consistency if not json.loads(p.read_text())["wantErr"]]
    assert len(happy) == 12
    for name in STRICTER:
        assert (VECTORS / name).is_file()
    assert (VECTORS / "LICENSE-Apache-2.0.txt").is_file()
    assert (VECTORS / "PROVENANCE.md").is_file()


def test_stricter_vector_fails_for_the_documented_reason() -> None:
    data = json.loads((VECTORS / next(iter(STRICTER))).read_text())
    with pytest.raises(ProofError, match="root1 length: got 12, want 32"):
        verify_consistency(
            data["size1"], data["size2"], [], _b64(data["root1"]), _b64(data["root2"])
        )
