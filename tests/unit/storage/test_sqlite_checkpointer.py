"""The SQLite store checkpoints its WAL on a background thread, not inside a block's COMMIT.

Checks: past the threshold the checkpointer runs and the database file receives the committed
pages (a fresh reader of the file alone sees them after the WAL is gone); the commit path no
longer checkpoints (negative control: with SQLite's own autocheckpoint the WAL is reset by the
commit itself); a checkpoint I/O error marks the store failed and the next commit is refused.
"""

from __future__ import annotations

import pathlib
import time

import apsw
import pytest

from carechain.errors import InfrastructureError
from carechain.storage import sqlite as sqlite_mod
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.store_conformance import make_block_commit


def _fill(store: SQLiteStore, blocks: int, start: int = 0, log: int = 0) -> tuple[int, int]:
    for h in range(start, start + blocks):
        store.commit_block(make_block_commit(h, log, 40, tag="x" * 2000))
        log += 40
    return start + blocks, log


def _wait(pred: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_checkpoints_run_off_the_commit_path(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        _fill(store, 60)
        assert _wait(lambda: store._checkpointer.runs >= 1)
        assert store._checkpointer._thread is not None
        assert store._checkpointer._thread.name == "sqlite-checkpointer"
        size = store.log_size()
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "ledger.db")  # everything committed is there
    try:
        assert reopened.log_size() == size
        assert reopened.integrity_check() == "ok"
    finally:
        reopened.close()


def test_the_commit_itself_no_longer_checkpoints(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_mod._Checkpointer, "_run", lambda self: None)  # thread does nothing
    store = SQLiteStore(tmp_path / "ledger.db")
    wal = tmp_path / "ledger.db-wal"
    try:
        _fill(store, 60)
        grown = wal.stat().st_size
        assert grown > 1000 * 4096  # never reset by a commit: nothing checkpointed it
        store._writer.set_wal_hook(None)  # negative control: SQLite's autocheckpoint is back
        store._writer.execute("PRAGMA wal_autocheckpoint=1000")
        _fill(store, 40, start=60, log=60 * 40)
        frames = store._writer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        assert frames[0] < grown // 4096  # the WAL restarted: commits checkpointed it
    finally:
        store.close()


class _FailingConn:
    def __init__(self, inner: apsw.Connection) -> None:
        self.inner = inner

    def wal_checkpoint(self, mode: int) -> tuple[int, int]:
        raise apsw.IOError("disk I/O error (injected)")

    def close(self) -> None:
        self.inner.close()


def test_a_checkpoint_io_error_stops_further_commits(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    real_connect = store._connect
    store._connect = lambda: _FailingConn(real_connect())  # type: ignore[assignment,method-assign,return-value]
    height = log = 0
    try:
        while store._failed is None and height < 400:  # commit until the checkpoint has failed
            try:
                store.commit_block(make_block_commit(height, log, 40, tag="x" * 2000))
            except InfrastructureError:
                break  # the failure landed between the loop test and this commit
            height, log = height + 1, log + 40
            if height >= 60:
                _wait(lambda: store._failed is not None, timeout=0.5)
        assert "WAL checkpoint failed" in str(store._failed)
        with pytest.raises(InfrastructureError, match="refused a commit after an earlier failure"):
            store.commit_block(make_block_commit(height, log, 1))
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "ledger.db")  # what was committed is all there
    try:
        assert reopened.log_size() == log and reopened.integrity_check() == "ok"
    finally:
        reopened.close()
