"""The layer rules hold, and the checker that enforces them can fail (negative control)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src" / "carechain", tree / "src" / "carechain")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_layers_are_kept(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_clock_in_the_core_is_caught(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    target = tree / "src" / "carechain" / "ledger" / "state.py"
    target.write_text(target.read_text() + "\nimport time  # injected\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "carechain.ledger.state -> time" in result.stdout


def test_upward_import_is_caught(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    target = tree / "src" / "carechain" / "merkle" / "rfc6962.py"
    target.write_text(target.read_text() + "\nimport carechain.node.node  # injected\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "Layers point down only BROKEN" in result.stdout
