"""Vectors for the FHIR edge tests: tests/vectors/fhir only (never ../shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "fhir"
R5_DIR = VECTORS / "r5"
R4_DIR = VECTORS / "r4"


def example_files(folder: Path, prefix: str = "") -> list[Path]:
    return sorted(p for p in folder.glob(f"{prefix}*.json"))


def load(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value
