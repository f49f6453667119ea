"""Crash points: SIGKILL at every failpoint of the commit path and at random moments.

The loop (``carechain.testing.crashloop``) forks a real node on a real SQLite data directory
under a concurrent mixed workload (registrations, key rotations, consents, record anchors),
kills it, reopens the directory and checks: every acknowledged transaction is there, no
partial block, ``integrity_check`` ok, ``verify_store`` ok, rotated keys active.
``CARECHAIN_CRASHES`` (default 200; ``make soak``: thousands) scales the loop,
``CARECHAIN_HTTP_CRASHES`` (default 5) the lives of the real ``carechain node`` HTTP server.

Negative controls: a build that acknowledges before the commit loses acknowledged
transactions and the checker says so; a corrupted page fails ``integrity_check``; a changed
envelope byte fails verification.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import apsw
import pytest

from carechain import failpoints
from carechain.node.chaindir import ChainPaths, InitResult, read_genesis
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.crashloop import (
    RANDOM,
    Ack,
    CrashReport,
    check_ledger,
    load_keys,
    run_crash_loop,
    run_life,
)
from carechain.testing.crashloop_http import run_http_crashes

CRASHES = int(os.environ.get("CARECHAIN_CRASHES") or 200)
HTTP_CRASHES = int(os.environ.get("CARECHAIN_HTTP_CRASHES") or 5)


@pytest.fixture
def template(_demo_template: InitResult) -> Path:
    """The session's demo chain (read only: every loop works on copies)."""
    return _demo_template.paths.root


def test_crash_loop_loses_nothing_acknowledged(template: Path, tmp_path: Path) -> None:
    report = run_crash_loop(template, tmp_path, CRASHES, seed=CRASHES)
    print(f"\ncrash loop: {report.summary()}")
    assert report.violations == []
    assert report.crashes == CRASHES
    assert report.by_point[RANDOM] >= CRASHES // 3 - 1
    if 3 * len(failpoints.POINTS) <= CRASHES:
        fired = {p for p in failpoints.POINTS if report.by_point[p] > 0}
        assert fired == set(failpoints.POINTS), report.by_point
    assert report.acked > CRASHES and report.rotations > 0
    assert len(report.restart_ms) == CRASHES


def test_http_node_crashes_lose_nothing_acknowledged(template: Path, tmp_path: Path) -> None:
    report = run_http_crashes(template, tmp_path, HTTP_CRASHES, seed=7)
    print(f"\nhttp node: {report.summary()}")
    assert report.violations == []
    assert report.crashes == HTTP_CRASHES
    assert report.acked > 0
    assert report.by_point[RANDOM] == HTTP_CRASHES // 2


# -- negative controls ------------------------------------------------------------------------


def test_acknowledging_before_the_commit_is_caught(template: Path, tmp_path: Path) -> None:
    """A broken build resolves the futures before storing the block, then dies."""
    root = tmp_path / "chain"
    shutil.copytree(template, root)
    keys = load_keys(template)
    report, acked = CrashReport(), dict[bytes, Ack]()
    how = run_life(root, keys, seed=3, ack_early=True, report=report, acked=acked)
    assert how == "failpoint", report.violations
    assert acked, "the broken build acknowledged nothing before dying"
    found = check_ledger(root, read_genesis(root), list(acked.values()))
    lost = [v for v in found if "is not in the ledger" in v]
    assert lost and len(lost) <= len(acked)


def test_the_checker_passes_a_sound_ledger(template: Path, tmp_path: Path) -> None:
    """The other half of each control: the same life without the broken build checks clean."""
    root = tmp_path / "chain"
    shutil.copytree(template, root)
    report, acked = CrashReport(), dict[bytes, Ack]()
    spec = "storage.commit.before_commit=kill@3"
    assert run_life(root, load_keys(template), spec=spec, report=report, acked=acked) == (
        "failpoint"
    )
    assert acked and check_ledger(root, read_genesis(root), list(acked.values())) == []


def _crashed_copy(template: Path, tmp_path: Path) -> tuple[Path, list[Ack]]:
    root = tmp_path / "chain"
    shutil.copytree(template, root)
    report, acked = CrashReport(), dict[bytes, Ack]()
    run_life(root, load_keys(template), kill_after=0.2, seed=5, report=report, acked=acked)
    assert check_ledger(root, read_genesis(root), list(acked.values())) == []
    conn = apsw.Connection(str(ChainPaths(root).ledger))  # fold the WAL into the file
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    return root, list(acked.values())


def test_a_corrupted_page_is_caught(template: Path, tmp_path: Path) -> None:
    root, acked = _crashed_copy(template, tmp_path)
    db = ChainPaths(root).ledger
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    assert pages > 3
    start = (pages // 2) * page  # a b-tree page in the middle of the file
    data[start : start + page] = bytes([0xA5]) * page
    db.write_bytes(bytes(data))
    found = check_ledger(root, read_genesis(root), acked)
    assert found and any("integrity" in v or "verify" in v or "check failed" in v for v in found)


def test_a_changed_envelope_byte_is_caught(template: Path, tmp_path: Path) -> None:
    root, acked = _crashed_copy(template, tmp_path)
    db = ChainPaths(root).ledger
    store = SQLiteStore(db)
    try:
        size = store.log_size()
        envelope = store.find_envelope(size - 1)
    finally:
        store.close()
    assert envelope is not None
    data = db.read_bytes()
    at = data.find(envelope)
    assert at >= 0
    sig = envelope.rfind(b'"sigs":["') + 12  # inside the base64url signature
    flipped = bytearray(data)
    flipped[at + sig] = ord("A") if data[at + sig] != ord("A") else ord("B")
    db.write_bytes(bytes(flipped))
    found = check_ledger(root, read_genesis(root), acked)
    assert not any("integrity_check" in v for v in found)  # a sound file: only verify can tell
    assert any(v.startswith("verify:") for v in found), found
