"""SQLiteStore: the store conformance suite plus SQLite-specific safety tests."""

from __future__ import annotations

import gc
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import apsw
import pytest

from carechain.errors import ConfigurationError, InfrastructureError
from carechain.storage.abc import BlockCommit, LedgerStore
from carechain.storage.sqlite import READER_MMAP_BYTES, SQLiteStore
from carechain.testing.store_conformance import (
    StoreConformance,
    make_block_commit,
    make_chain,
    merkle_positions,
    node_hash,
    replay_state,
    snapshot,
)


class TestSQLiteStore(StoreConformance):
    supports_reopen = True

    def make_store(self, tmp_path: pathlib.Path) -> LedgerStore:
        return SQLiteStore(tmp_path / "ledger.db")


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def store(db: pathlib.Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db)
    yield store
    store.close()


# -- configuration guard --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.40.1", "3.51.2", "3.9.0", "2.99.99"])
def test_refuses_old_sqlite(
    monkeypatch: pytest.MonkeyPatch, db: pathlib.Path, version: str
) -> None:
    monkeypatch.setattr(apsw, "sqlite_lib_version", lambda: version)
    with pytest.raises(ConfigurationError, match=r"3\.51\.3") as info:
        SQLiteStore(db)
    assert version in str(info.value) and "apsw" in str(info.value)


@pytest.mark.parametrize("version", ["3.51.3", "3.52.0", "4.0.0"])
def test_accepts_new_enough_sqlite(
    monkeypatch: pytest.MonkeyPatch, db: pathlib.Path, version: str
) -> None:
    monkeypatch.setattr(apsw, "sqlite_lib_version", lambda: version)
    SQLiteStore(db).close()


def test_real_sqlite_passes_the_guard(store: SQLiteStore) -> None:  # negative control
    assert store.check_safe_settings() is True


def test_check_safe_settings_rereads_the_version(
    monkeypatch: pytest.MonkeyPatch, store: SQLiteStore
) -> None:
    monkeypatch.setattr(apsw, "sqlite_lib_version", lambda: "3.40.1")
    assert store.check_safe_settings() is False


@pytest.mark.parametrize(
    ("pragma", "message"),
    [("journal_mode=DELETE", "journal_mode"), ("synchronous=NORMAL", "synchronous")],
)
def test_refuses_unsafe_pragmas(
    monkeypatch: pytest.MonkeyPatch, db: pathlib.Path, pragma: str, message: str
) -> None:
    real = SQLiteStore._apply_pragmas

    def unsafe(conn: apsw.Connection) -> None:
        real(conn)
        conn.execute(f"PRAGMA {pragma}").fetchall()

    monkeypatch.setattr(SQLiteStore, "_apply_pragmas", staticmethod(unsafe))
    with pytest.raises(ConfigurationError, match=message):
        SQLiteStore(db)


def test_refuses_memory_database() -> None:
    with pytest.raises(ConfigurationError, match="journal_mode"):
        SQLiteStore(":memory:")


def test_check_safe_settings_detects_a_change(store: SQLiteStore) -> None:
    assert store.check_safe_settings()
    store._writer.execute("PRAGMA synchronous=NORMAL")
    assert store.check_safe_settings() is False
    store._writer.execute("PRAGMA synchronous=FULL")
    assert store.check_safe_settings()


def test_refuses_other_schema_version(db: pathlib.Path) -> None:
    SQLiteStore(db).close()
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE schema_meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(ConfigurationError, match="schema version 999"):
        SQLiteStore(db)


def test_not_a_database_is_an_infrastructure_error(db: pathlib.Path) -> None:
    db.write_bytes(b"this is not an SQLite file" * 200)
    with pytest.raises(InfrastructureError, match="cannot open"):
        SQLiteStore(db)


def test_wal_and_synchronous_full_in_force(store: SQLiteStore, db: pathlib.Path) -> None:
    store.commit_block(make_block_commit(0, 0, 2))
    assert store._read_settings() == ("wal", 2, 1)
    other = apsw.Connection(str(db))  # journal_mode=wal is persistent in the file
    try:
        assert other.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    finally:
        other.close()
    assert (db.parent / (db.name + "-wal")).exists()


def test_readers_map_the_file_and_the_writer_does_not(
    store: SQLiteStore, db: pathlib.Path
) -> None:
    """ADR 0013: reader connections read through a memory map; 0 turns it off; the writer
    keeps ordinary I/O; a negative size is refused."""
    for commit in make_chain([3, 2]):
        store.commit_block(commit)
    assert store._rows("PRAGMA mmap_size") == [(READER_MMAP_BYTES,)]
    assert store._writer.execute("PRAGMA mmap_size").fetchall() == [(0,)]
    checkpointer = store._connect()  # what the checkpointer thread opens
    try:
        assert checkpointer.execute("PRAGMA mmap_size").fetchall() == [(0,)]
    finally:
        checkpointer.close()
    plain = SQLiteStore(db, reader_mmap_bytes=0)
    try:
        assert plain._rows("PRAGMA mmap_size") == [(0,)]  # negative control
        assert plain.find_block(1) == store.find_block(1)
    finally:
        plain.close()
    with pytest.raises(ConfigurationError, match="reader_mmap_bytes"):
        SQLiteStore(db, reader_mmap_bytes=-1)


def test_refuses_a_file_with_auto_vacuum(db: pathlib.Path) -> None:
    """A file that could shrink under the readers' maps is refused (ADR 0013)."""
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA auto_vacuum=FULL; CREATE TABLE t(x)")
    conn.close()
    with pytest.raises(ConfigurationError, match="auto_vacuum is 1"):
        SQLiteStore(db)
    other = db.parent / "other.db"  # negative control: a new file opens
    SQLiteStore(other).close()


def test_a_mapped_reader_sees_blocks_committed_after_it_mapped(
    store: SQLiteStore, db: pathlib.Path
) -> None:
    commits = make_chain([2] * 40)
    store.commit_block(commits[0])
    assert store.head_height() == 0  # this thread's reader maps the file now
    for commit in commits[1:]:
        store.commit_block(commit)
    size = db.stat().st_size
    store._writer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    assert db.stat().st_size > size  # the file grew past what the reader mapped
    assert store.head_height() == 39
    assert store.find_block(39) == commits[39].block


def test_integrity_check_ok(store: SQLiteStore) -> None:
    for commit in make_chain([5, 0, 7, 3]):
        store.commit_block(commit)
    assert store.integrity_check() == "ok"


# -- concurrency ------------------------------------------------------------------------------


def test_readers_do_not_wait_for_an_open_write_transaction(
    monkeypatch: pytest.MonkeyPatch, store: SQLiteStore
) -> None:
    commits = make_chain([3, 4])
    store.commit_block(commits[0])
    inside, release = threading.Event(), threading.Event()
    real = SQLiteStore._write_state

    def slow_write_state(conn: apsw.Connection, commit: BlockCommit) -> None:
        real(conn, commit)
        inside.set()
        assert release.wait(30)

    monkeypatch.setattr(SQLiteStore, "_write_state", staticmethod(slow_write_state))
    writer = threading.Thread(target=store.commit_block, args=(commits[1],))
    writer.start()
    try:
        assert inside.wait(30)  # block 1 is written but not committed; the writer holds the lock
        seen: dict[str, object] = {}

        def read() -> None:
            seen["head"] = store.head_height()
            seen["block0"] = store.find_block(0)
            seen["block1"] = store.find_block(1)
            seen["ids"] = store.has_tx_ids(commits[1].tx_ids)
            seen["state"] = list(store.iter_state())

        started = time.monotonic()
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive() and time.monotonic() - started < 5
        assert seen == {
            "head": 0,
            "block0": commits[0].block,
            "block1": None,
            "ids": [False] * 4,
            "state": sorted(replay_state(commits[:1]).items()),
        }
    finally:
        release.set()
        writer.join(timeout=30)
    assert store.head_height() == 1
    assert store.find_block(1) == commits[1].block


def test_each_thread_reads_through_its_own_connection_released_at_thread_end(
    store: SQLiteStore,
) -> None:
    store.commit_block(make_block_commit(0, 0, 1))
    assert store.head_height() == 0  # this thread's reader
    heads: list[int | None] = []
    threads = [threading.Thread(target=lambda: heads.append(store.head_height())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    del threads
    gc.collect()
    assert heads == [0] * 4
    assert len(store._readers) == 1  # the four ended threads' connections were closed


def test_an_open_read_transaction_does_not_block_the_writer(
    store: SQLiteStore, db: pathlib.Path
) -> None:
    commits = make_chain([2, 2, 2])
    store.commit_block(commits[0])
    reader = apsw.Connection(str(db))
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM txs").fetchall() == [(2,)]
        started = time.monotonic()
        store.commit_block(commits[1])
        store.commit_block(commits[2])
        assert time.monotonic() - started < 5
        # the reader keeps its snapshot; the store's own readers see the new blocks
        assert reader.execute("SELECT COUNT(*) FROM txs").fetchall() == [(2,)]
        assert store.head_height() == 2
        reader.execute("COMMIT")
    finally:
        reader.close()


# -- failures during a commit -----------------------------------------------------------------


def test_io_error_mid_commit_rolls_back_and_is_fatal(
    monkeypatch: pytest.MonkeyPatch, db: pathlib.Path
) -> None:
    commits = make_chain([3, 2, 4])
    store = SQLiteStore(db)
    store.commit_block(commits[0])
    before = snapshot(store, commits[1].tx_ids)

    def failing(conn: apsw.Connection, commit: BlockCommit) -> None:
        raise apsw.IOError("disk I/O error (injected)")

    monkeypatch.setattr(SQLiteStore, "_write_state", staticmethod(failing))
    with pytest.raises(InfrastructureError, match="injected"):
        store.commit_block(commits[1])  # block, txs, indexes, merkle nodes already written
    assert snapshot(store, commits[1].tx_ids) == before
    monkeypatch.undo()
    with pytest.raises(InfrastructureError, match="restart"):
        store.commit_block(commits[1])  # fatal: never retried in the same process
    store.close()
    reopened = SQLiteStore(db)  # restart, verify, go on
    try:
        assert snapshot(reopened, commits[1].tx_ids) == before
        assert reopened.integrity_check() == "ok"
        reopened.commit_block(commits[1])
        reopened.commit_block(commits[2])
        assert reopened.head_height() == 2
    finally:
        reopened.close()


def test_reads_after_close_fail_cleanly(store: SQLiteStore) -> None:
    store.commit_block(make_block_commit(0, 0, 1))
    assert store.find_block(0) is not None
    store.close()
    for call in (store.head_height, store.integrity_check, store.check_safe_settings):
        with pytest.raises(InfrastructureError, match="closed"):
            call()


# -- crash safety -----------------------------------------------------------------------------

_CHILD = """
import sys
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.store_conformance import make_block_commit

store = SQLiteStore(sys.argv[1])
n = int(sys.argv[2])
head = store.head_height()
height = 0 if head is None else head + 1
log = store.log_size()
while True:
    store.commit_block(make_block_commit(height, log, n))
    print(height, flush=True)  # acknowledged only after commit_block returned
    height += 1
    log += n
"""

_TX_PER_BLOCK = 300


def _commit_until_killed(db: pathlib.Path, acks: int, delay: float) -> int:
    """Run the child, SIGKILL it ``delay`` s after its ``acks``-th commit; last acked height."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), str(_TX_PER_BLOCK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        last = -1
        for _ in range(acks):
            line = child.stdout.readline()
            assert line, f"child exited early with {child.wait()}"
            last = int(line)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        for line in child.stdout:  # acknowledgements written before the kill
            last = int(line)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return last


def _check_prefix_of_complete_blocks(db: pathlib.Path, last_acked: int) -> int:
    store = SQLiteStore(db)
    try:
        assert store.integrity_check() == "ok"
        head = store.head_height()
        assert head is not None and head >= last_acked  # nothing acknowledged is lost
        n = _TX_PER_BLOCK
        commits = [make_block_commit(h, h * n, n) for h in range(head + 1)]
        assert list(store.iter_blocks()) == [c.block for c in commits]
        assert store.log_size() == (head + 1) * n
        assert store.find_block(head + 1) is None
        assert store.find_envelope((head + 1) * n) is None
        assert store.find_checkpoint() == commits[head].checkpoint
        assert dict(store.iter_state()) == replay_state(commits)
        assert store.account_log_indexes("acct/all", limit=1) == [(head + 1) * n - 1]
        for level, index in merkle_positions((head + 1) * n - n, (head + 1) * n):
            assert store.get_merkle_node(level, index) == node_hash(level, index)
        # no row of a partial next block: its ids are unknown, its first leaf absent
        following = make_block_commit(head + 1, (head + 1) * n, n)
        assert store.has_tx_ids(following.tx_ids) == [False] * n
        assert store.find_tx(commits[head].tx_ids[-1]) is not None
        return head
    finally:
        store.close()


def test_sigkill_mid_loop_leaves_a_prefix_of_complete_blocks(db: pathlib.Path) -> None:
    heads = []
    for acks, delay in [(4, 0.0), (3, 0.013), (5, 0.0071), (2, 0.0023), (3, 0.0049)]:
        last = _commit_until_killed(db, acks, delay)
        heads.append(_check_prefix_of_complete_blocks(db, last))
    assert heads == sorted(heads) and heads[-1] >= 16
