"""``SQLiteStore``: the durable :class:`LedgerStore`, SQLite through ``apsw``.

Invariants (on top of those in :mod:`carechain.storage.abc`):

* The store refuses to start (``ConfigurationError``) unless SQLite is at least 3.51.3 (the
  WAL-reset corruption fix), the journal mode is ``wal`` and ``synchronous`` is ``FULL``:
  a block is acknowledged only once its commit is fsynced.
* One writer connection, used only under ``_write_lock``. Every ``commit_block`` is one
  ``BEGIN IMMEDIATE ... COMMIT``; the height, log size and tx ids are checked inside that
  transaction before anything is written, so a rejected commit changes nothing.
* Readers use one connection per thread (``threading.local``). Under WAL they read the last
  committed snapshot and never wait for the writer, nor make it wait. Every read runs its
  statements to completion (no cursor outlives a call), so no snapshot is pinned between calls.
* After a commit fails for a reason other than a constraint (I/O, full disk, corruption), the
  store refuses further commits: an fsync failure is fatal (exit, restart, verify; GUIDE §8).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, cast

import apsw

from carechain.errors import (
    ConfigurationError,
    ConflictError,
    DuplicateTransactionError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
)
from carechain.failpoints import failpoint
from carechain.storage.abc import BlockCommit, LedgerStore, StoredBlock, TxLocation
from carechain.storage.memory import validate_commit_shape
from carechain.storage.merkle_cache import HASH, NodeArrays

SCHEMA_VERSION = 1
"""Version of the table layout below; a store written by another version refuses to open."""

MIN_SQLITE_VERSION = (3, 51, 3)
"""Oldest SQLite accepted: 3.51.3 fixes the WAL-reset database corruption bug."""

_BUSY_TIMEOUT_MS = 10_000
_BLOCK_PAGE = 32  # blocks fetched per statement pair by iter_blocks
_IN_CHUNK = 500  # ids per IN (...) list
READER_MMAP_BYTES = (1 << 30) if sys.maxsize > 2**32 else 0
"""Default bytes of the ledger file that reader connections map into memory (SQLite
``mmap_size``; ADR 0013): a read is a memory access, not a ``pread`` system call and a copy
into the connection's 2 MB page cache. The writer keeps ordinary I/O. 0 on a 32-bit
interpreter (a 1 GiB reservation per reader thread could exhaust its address space)."""
_MERKLE_CACHE_BYTES = 32 * 1024 * 1024
"""Upper Merkle levels held for proofs (storage/merkle_cache.py): levels 1 and up of a
log of a million leaves; larger logs hold fewer levels."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height          INTEGER PRIMARY KEY,
    header_hash     BLOB NOT NULL UNIQUE,
    header          BLOB NOT NULL,
    signature       BLOB NOT NULL,
    first_log_index INTEGER NOT NULL,
    tx_count        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    log_index INTEGER PRIMARY KEY,
    tx_id     BLOB NOT NULL,
    height    INTEGER NOT NULL REFERENCES blocks(height),
    position  INTEGER NOT NULL,
    envelope  BLOB NOT NULL,
    receipt   BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS txs_by_id ON txs(tx_id);
CREATE TABLE IF NOT EXISTS account_index (
    account   TEXT NOT NULL,
    log_index INTEGER NOT NULL REFERENCES txs(log_index),
    PRIMARY KEY (account, log_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    height     INTEGER PRIMARY KEY REFERENCES blocks(height),
    checkpoint BLOB NOT NULL
);
"""


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def _fetch(conn: apsw.Connection, sql: str, bindings: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sql, bindings)]


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (None: no bound).

    SQLite's BINARY collation compares UTF-8 bytes, which orders like code points.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates have no UTF-8 encoding
                code = 0xE000
            return "".join(chars) + chr(code)
    return None


def _halves(rows: Sequence[Any], point: str) -> Iterator[Any]:
    """``rows`` for ``executemany``, reaching failpoint ``point`` after the first half."""
    half = len(rows) // 2
    yield from rows[:half]
    failpoint(point)
    yield from rows[half:]


class _ReaderSlot:
    """One thread's reader connection, held in ``threading.local``."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn


def _release_reader(readers: dict[int, apsw.Connection], key: int, conn: apsw.Connection) -> None:
    """Forget and close a reader connection (from ``close`` or when its thread has ended)."""
    readers.pop(key, None)
    with contextlib.suppress(apsw.Error):  # closed concurrently by close() and a finalizer
        conn.close()


_CHECKPOINT_PAGES = 1000  # WAL frames after a commit that wake the checkpointer (SQLite's default)

log = logging.getLogger(__name__)


class _Checkpointer:
    """PASSIVE WAL checkpoints on their own connection and thread, off the commit path.

    SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses the threshold: that
    block's submitters wait for the database file to be written and fsynced too (the commit
    latency tail). The writer's WAL hook replaces it (``sqlite3_wal_hook`` overrides
    ``wal_autocheckpoint``) and wakes this thread instead. Durability is unchanged: a commit is
    durable once its WAL frames are fsynced (``synchronous=FULL``); a checkpoint only copies
    committed frames into the database file, and SQLite makes an interrupted one harmless. A
    checkpoint I/O error marks the store failed: the next commit is refused (the node stops).
    """

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Checkpoints completed (tests)."""

    def on_wal(self, _conn: apsw.Connection, _db: str, pages: int) -> int:
        """The writer's WAL hook (runs inside ``COMMIT``): wake the thread past the threshold."""
        if pages >= _CHECKPOINT_PAGES:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpointer", daemon=True
                )
                self._thread.start()
            self._wake.set()
        return apsw.SQLITE_OK

    def _run(self) -> None:
        try:
            conn = self._store._connect()
        except apsw.Error as exc:
            self._store._failed = f"checkpointer: cannot connect: {exc}"
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
                    self.runs += 1
                except apsw.BusyError:
                    continue  # another checkpoint is running; the next commit wakes us again
                except apsw.Error as exc:
                    self._store._failed = f"WAL checkpoint failed: {type(exc).__name__}: {exc}"
                    log.critical("ledger store %s: %s", self._store.path, self._store._failed)
                    return
        finally:
            with contextlib.suppress(apsw.Error):
                conn.close()

    def stop(self) -> None:
        """Stop and join the thread (before the writer closes)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class SQLiteStore(LedgerStore):
    """A :class:`LedgerStore` in one SQLite file (WAL, ``synchronous=FULL``)."""

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        vfs: str | None = None,
        reader_mmap_bytes: int = READER_MMAP_BYTES,
    ) -> None:
        """``vfs``: the name of a registered SQLite VFS (tests inject I/O faults with one);
        ``reader_mmap_bytes``: how much of the file reader connections map (0: none)."""
        if reader_mmap_bytes < 0:
            raise ConfigurationError(f"reader_mmap_bytes: got {reader_mmap_bytes}, want >= 0")
        self.path = pathlib.Path(path)
        self._vfs = vfs
        self._mmap_bytes = reader_mmap_bytes
        self._write_lock = threading.Lock()
        self._readers_lock = threading.Lock()
        self._readers: dict[int, apsw.Connection] = {}
        self._local = threading.local()
        self._closed = False
        self._failed: str | None = None
        self._merkle = NodeArrays(_MERKLE_CACHE_BYTES)
        """Committed upper Merkle levels (immutable), loaded by the first proof."""
        self._check_sqlite_version()
        try:
            self._writer = self._connect()
        except apsw.Error as exc:
            raise InfrastructureError(f"cannot open the ledger store {self.path}: {exc}") from exc
        try:
            self._apply_pragmas(self._writer)
            self._verify_safe_settings()
            self._create_schema()
            self._checkpointer = _Checkpointer(self)
            self._writer.set_wal_hook(self._checkpointer.on_wal)
        except apsw.Error as exc:  # e.g. not a database, read-only or locked file
            self._writer.close()
            raise InfrastructureError(f"cannot open the ledger store {self.path}: {exc}") from exc
        except BaseException:
            self._writer.close()
            raise

    # -- configuration -------------------------------------------------------------------
    @staticmethod
    def _check_sqlite_version() -> None:
        found = apsw.sqlite_lib_version()
        if _parse_version(found) < MIN_SQLITE_VERSION:
            wanted = ".".join(map(str, MIN_SQLITE_VERSION))
            raise ConfigurationError(
                f"SQLite {found} is too old: carechain needs SQLite >= {wanted}, which fixes the "
                f"WAL-reset database corruption bug. Fix: install an apsw wheel that bundles a "
                f"current SQLite (pip install 'apsw>={wanted}')."
            )

    def _connect(self, *, reader: bool = False) -> apsw.Connection:
        """A connection to the ledger file; a ``reader`` is query-only and maps the file
        (``reader_mmap_bytes``), the others map nothing."""
        conn = apsw.Connection(str(self.path), vfs=self._vfs)
        try:
            conn.set_busy_timeout(_BUSY_TIMEOUT_MS)
            mmap_bytes = self._mmap_bytes if reader else 0
            conn.execute(f"PRAGMA mmap_size={int(mmap_bytes)}").fetchall()
            if reader:
                conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _apply_pragmas(conn: apsw.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")

    def _read_settings(self) -> tuple[str, int, int]:
        conn = self._writer
        journal = str(_fetch(conn, "PRAGMA journal_mode")[0][0]).lower()
        synchronous = int(_fetch(conn, "PRAGMA synchronous")[0][0])
        foreign_keys = int(_fetch(conn, "PRAGMA foreign_keys")[0][0])
        return journal, synchronous, foreign_keys

    def _verify_safe_settings(self) -> None:
        journal, synchronous, foreign_keys = self._read_settings()
        if journal != "wal":
            raise ConfigurationError(
                f"{self.path}: journal_mode is {journal!r}, want 'wal'. Fix: put the store on a "
                f"local filesystem that supports shared memory (not a network share, not "
                f"':memory:') and make sure no other program holds it in another journal mode."
            )
        if synchronous != 2:
            raise ConfigurationError(
                f"{self.path}: synchronous is {synchronous}, want 2 (FULL): without it an "
                f"acknowledged block can be lost on power failure. Fix: do not override "
                f"PRAGMA synchronous for this store."
            )
        if foreign_keys != 1:
            raise ConfigurationError(
                f"{self.path}: foreign_keys is off, want on. Fix: use an SQLite built with "
                f"foreign key support (do not define SQLITE_OMIT_FOREIGN_KEY)."
            )
        auto_vacuum = int(_fetch(self._writer, "PRAGMA auto_vacuum")[0][0])
        if auto_vacuum != 0:
            raise ConfigurationError(
                f"{self.path}: auto_vacuum is {auto_vacuum}, want 0 (NONE): a file that shrinks "
                f"under the readers' memory maps stops the node (ADR 0013). Fix: with the node "
                f"stopped, run `PRAGMA auto_vacuum=NONE; VACUUM;` on this file (sqlite3)."
            )

    def check_safe_settings(self) -> bool:
        """Re-read the SQLite version, journal mode, synchronous, foreign_keys and auto_vacuum:
        all safe?"""
        with self._write_lock:
            self._check_open()
            try:
                self._check_sqlite_version()
                self._verify_safe_settings()
            except ConfigurationError:
                return False
            except apsw.Error as exc:
                raise InfrastructureError(f"cannot read the store settings: {exc}") from exc
        return True

    def _create_schema(self) -> None:
        conn = self._writer
        with conn:  # one transaction: the schema appears whole or not at all
            conn.execute(_SCHEMA)
            rows = conn.execute(
                "SELECT value FROM schema_meta WHERE key = 'schema_version'"
            ).fetchall()
            if not rows:
                conn.execute(
                    "INSERT INTO schema_meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif rows[0][0] != str(SCHEMA_VERSION):
                raise ConfigurationError(
                    f"{self.path} has schema version {rows[0][0]}, this carechain reads "
                    f"version {SCHEMA_VERSION}. Fix: open it with the matching carechain "
                    f"release or migrate it."
                )

    # -- connections ---------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError(f"the ledger store {self.path} is closed")

    def _reader(self) -> apsw.Connection:
        slot: _ReaderSlot | None = getattr(self._local, "slot", None)
        if slot is None:
            conn = self._connect(reader=True)
            slot = _ReaderSlot(conn)
            with self._readers_lock:
                if self._closed:
                    conn.close()
                    self._check_open()
                self._readers[id(slot)] = conn
            # When the thread ends, its threading.local slot dies and the connection closes.
            weakref.finalize(slot, _release_reader, self._readers, id(slot), conn)
            self._local.slot = slot
        return slot.conn

    def _rows(self, sql: str, bindings: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read to completion on this thread's reader connection."""
        self._check_open()
        try:
            return _fetch(self._reader(), sql, bindings)
        except apsw.Error as exc:
            raise InfrastructureError(f"ledger store read failed: {exc}") from exc

    # -- chain ---------------------------------------------------------------------------
    def head_height(self) -> int | None:
        rows = self._rows("SELECT MAX(height) FROM blocks")
        return None if rows[0][0] is None else int(rows[0][0])

    def _read_blocks(self, start: int, end: int) -> list[StoredBlock]:
        heads = self._rows(
            "SELECT height, header, signature, first_log_index, tx_count FROM blocks "
            "WHERE height >= ? AND height < ? ORDER BY height",
            (start, end),
        )
        if not heads:
            return []
        lo = heads[0][3]
        hi = heads[-1][3] + heads[-1][4]
        txs = self._rows(
            "SELECT envelope, receipt FROM txs WHERE log_index >= ? AND log_index < ? "
            "ORDER BY log_index",
            (lo, hi),
        )
        blocks = []
        for height, header, signature, first, count in heads:
            part = txs[first - lo : first - lo + count]
            blocks.append(
                StoredBlock(
                    height=height,
                    header=header,
                    signature=signature,
                    envelopes=tuple(envelope for envelope, _ in part),
                    receipts=tuple(receipt for _, receipt in part),
                )
            )
        return blocks

    def find_block(self, height: int) -> StoredBlock | None:
        blocks = self._read_blocks(height, height + 1)
        return blocks[0] if blocks else None

    def iter_blocks(self, start: int = 0, end: int | None = None) -> Iterator[StoredBlock]:
        head = self.head_height()
        if head is None:
            return
        stop = head + 1 if end is None else min(end, head + 1)
        height = max(start, 0)
        while height < stop:  # blocks never change once stored: pages need no shared snapshot
            page_end = min(height + _BLOCK_PAGE, stop)
            yield from self._read_blocks(height, page_end)
            height = page_end

    def find_height_by_hash(self, header_hash: bytes) -> int | None:
        rows = self._rows("SELECT height FROM blocks WHERE header_hash = ?", (header_hash,))
        return int(rows[0][0]) if rows else None

    # -- transactions --------------------------------------------------------------------
    def find_tx(self, tx_id: bytes) -> TxLocation | None:
        rows = self._rows("SELECT height, position, log_index FROM txs WHERE tx_id = ?", (tx_id,))
        if not rows:
            return None
        height, position, log_index = rows[0]
        return TxLocation(height=height, position=position, log_index=log_index)

    def find_tx_envelope(self, tx_id: bytes) -> tuple[TxLocation, bytes] | None:
        rows = self._rows(
            "SELECT height, position, log_index, envelope FROM txs WHERE tx_id = ?", (tx_id,)
        )
        if not rows:
            return None
        height, position, log_index, envelope = rows[0]
        return TxLocation(height=height, position=position, log_index=log_index), envelope

    def find_tx_leaf(self, tx_id: bytes) -> tuple[TxLocation, bytes, bytes | None] | None:
        # One statement: the sibling leaf's index is log_index XOR 1 ((i | 1) - (i & 1));
        # a scalar subquery (a LEFT JOIN measured twice as slow on SQLite 3.54).
        rows = self._rows(
            "SELECT t.height, t.position, t.log_index, t.envelope, "
            "(SELECT hash FROM merkle_nodes "
            "WHERE level = 0 AND idx = (t.log_index | 1) - (t.log_index & 1)) "
            "FROM txs AS t WHERE t.tx_id = ?",
            (tx_id,),
        )
        if not rows:
            return None
        height, position, log_index, envelope, sibling = rows[0]
        loc = TxLocation(height=height, position=position, log_index=log_index)
        return loc, envelope, sibling

    @staticmethod
    def _existing_tx_ids(conn: apsw.Connection, tx_ids: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for i in range(0, len(tx_ids), _IN_CHUNK):
            chunk = tx_ids[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT tx_id FROM txs WHERE tx_id IN ({marks})"  # noqa: S608 (only '?'s)
            found.update(row[0] for row in conn.execute(sql, tuple(chunk)))
        return found

    def has_tx_ids(self, tx_ids: Sequence[bytes]) -> list[bool]:
        ids = [bytes(tx_id) for tx_id in tx_ids]
        self._check_open()
        try:
            found = self._existing_tx_ids(self._reader(), ids)
        except apsw.Error as exc:
            raise InfrastructureError(f"ledger store read failed: {exc}") from exc
        return [tx_id in found for tx_id in ids]

    def find_envelope(self, log_index: int) -> bytes | None:
        rows = self._rows("SELECT envelope FROM txs WHERE log_index = ?", (log_index,))
        return rows[0][0] if rows else None

    def find_receipt(self, log_index: int) -> bytes | None:
        rows = self._rows("SELECT receipt FROM txs WHERE log_index = ?", (log_index,))
        return rows[0][0] if rows else None

    def find_receipts(self, log_indexes: Sequence[int]) -> list[bytes | None]:
        """One range read per run of nearby indexes (a batch's transactions sit side by
        side in the log, usually in one block)."""
        found: dict[int, bytes] = {}
        wanted = sorted(set(log_indexes))
        i = 0
        while i < len(wanted):
            j = i  # extend the run while the gap stays small
            while j + 1 < len(wanted) and wanted[j + 1] - wanted[j] <= 8:
                j += 1
            found.update(
                self._rows(
                    "SELECT log_index, receipt FROM txs WHERE log_index BETWEEN ? AND ?",
                    (wanted[i], wanted[j]),
                )
            )
            i = j + 1
        return [found.get(i) for i in log_indexes]

    def account_log_indexes(
        self, account: str, *, limit: int = 100, before: int | None = None
    ) -> list[int]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if before is None:
            rows = self._rows(
                "SELECT log_index FROM account_index WHERE account = ? "
                "ORDER BY log_index DESC LIMIT ?",
                (account, limit),
            )
        else:
            rows = self._rows(
                "SELECT log_index FROM account_index WHERE account = ? AND log_index < ? "
                "ORDER BY log_index DESC LIMIT ?",
                (account, before, limit),
            )
        return [int(row[0]) for row in rows]

    def log_size(self) -> int:
        rows = self._rows(
            "SELECT first_log_index + tx_count FROM blocks ORDER BY height DESC LIMIT 1"
        )
        return int(rows[0][0]) if rows else 0

    # -- merkle --------------------------------------------------------------------------
    def get_merkle_node(self, level: int, index: int) -> bytes:
        # A stored node never changes (it is written once, by the commit of the block that
        # completes it), so a held copy stays right; only committed rows are ever held.
        held = self._merkle.get(level, index)
        if held is not None:
            return held
        rows = self._rows(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index)
        )
        if not rows:
            raise NotFoundError(f"no Merkle node at level {level}, index {index}")
        value: bytes = rows[0][0]
        return value

    def _load_upper_levels(self) -> None:
        """Hold the highest levels that fit the budget (what every proof shares); the
        levels below are read per proof, in one query (:meth:`get_merkle_nodes`)."""
        size = self.log_size()
        counts = {level: size >> level for level in range(1, size.bit_length())}
        self._merkle.load(counts, self._level_prefix)

    def _level_prefix(self, level: int) -> bytes:
        """The gapless run of ``level``'s nodes from index 0, concatenated (NodeArrays).

        One statement and a join when the level is complete from 0 (count = max + 1, every
        hash 32 bytes: always, in a store this code wrote); row by row otherwise."""
        count, top = self._rows(
            "SELECT COUNT(*), MAX(idx) FROM merkle_nodes WHERE level = ?", (level,)
        )[0]
        if count and top == count - 1:
            self._check_open()
            try:
                data = b"".join(
                    [
                        row[0]
                        for row in self._reader().execute(  # not the rows committed since
                            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx < ? "
                            "ORDER BY idx",
                            (level, count),
                        )
                    ]
                )
            except apsw.Error as exc:
                raise InfrastructureError(f"ledger store read failed: {exc}") from exc
            if len(data) == count * HASH:
                return data
        out = bytearray()
        for idx, value in self._tail(level, 0, top):
            if idx * HASH != len(out) or len(value) != HASH:
                break  # a gap or a malformed row: the prefix ends before it
            out += value
        return bytes(out)

    def _tail(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        rows = self._rows(
            "SELECT idx, hash FROM merkle_nodes WHERE level = ? AND idx BETWEEN ? AND ? "
            "ORDER BY idx",
            (level, start, end),
        )
        return [(int(idx), value) for idx, value in rows]

    def get_merkle_nodes(self, coords: Sequence[tuple[int, int]]) -> list[bytes]:
        """The nodes at ``coords`` (``(level, index)`` pairs), in order: what a proof needs,
        in one read of those not held (raises ``NotFoundError`` naming a missing node)."""
        held = self._merkle
        if not held.loaded:
            self._load_upper_levels()
        hashes = held.get_many(coords)
        if None not in hashes:
            return cast(list[bytes], hashes)
        grown: dict[int, int] = {}  # level -> highest index asked for and not held
        for (level, index), h in zip(coords, hashes, strict=True):
            if h is None and held.cached_level(level):
                grown[level] = max(index, grown.get(level, index))
        if grown:  # committed since the arrays were filled: append them, look again
            for level, need in grown.items():
                held.extend(level, self._tail, need)
            hashes = [h or held.get(*c) for c, h in zip(coords, hashes, strict=True)]
        missing = list({c for c, h in zip(coords, hashes, strict=True) if h is None})
        found: dict[tuple[int, int], bytes] = {}
        for i in range(0, len(missing), 400):  # 2 bindings each, SQLite allows 32,766
            chunk = missing[i : i + 400]
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            rows = self._rows(
                f"SELECT level, idx, hash FROM merkle_nodes WHERE {where}",  # noqa: S608
                [v for c in chunk for v in c],
            )
            for level, index, value in rows:
                found[(level, index)] = value
        try:
            return [h if h is not None else found[c] for c, h in zip(coords, hashes, strict=True)]
        except KeyError as exc:
            level, index = exc.args[0]
            raise NotFoundError(f"no Merkle node at level {level}, index {index}") from None

    # -- state ---------------------------------------------------------------------------
    def find_state(self, key: str) -> bytes | None:
        rows = self._rows("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def find_states(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        unique = sorted(set(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._rows(
                f"SELECT key, value FROM state WHERE key IN ({marks})",  # noqa: S608 - only marks
                chunk,
            ):
                found[key] = value
        return [found.get(k) for k in keys]

    def iter_state(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        # One statement run to completion: a consistent snapshot, no cursor left open.
        upper = _prefix_upper_bound(prefix)
        if upper is None:
            rows = self._rows("SELECT key, value FROM state WHERE key >= ? ORDER BY key", (prefix,))
        else:
            rows = self._rows(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, upper),
            )
        yield from ((str(key), value) for key, value in rows)

    # -- checkpoints and metadata --------------------------------------------------------
    def find_checkpoint(self, height: int | None = None) -> bytes | None:
        """The checkpoint stored with block ``height``; None = the newest stored checkpoint.

        Blocks committed with an empty ``checkpoint`` have none.
        """
        if height is None:
            rows = self._rows("SELECT checkpoint FROM checkpoints ORDER BY height DESC LIMIT 1")
        else:
            rows = self._rows("SELECT checkpoint FROM checkpoints WHERE height = ?", (height,))
        return rows[0][0] if rows else None

    def find_meta(self, key: str) -> bytes | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def put_meta(self, key: str, value: bytes) -> None:
        with self._write_lock:
            self._check_open()
            try:
                self._writer.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, bytes(value)),
                )
            except apsw.Error as exc:
                raise InfrastructureError(f"cannot write meta {key!r}: {exc}") from exc

    def integrity_check(self) -> str:
        """The text of ``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        rows = self._rows("PRAGMA integrity_check")
        return "\n".join(str(row[0]) for row in rows)

    # -- writing -------------------------------------------------------------------------
    def commit_block(self, commit: BlockCommit) -> None:
        validate_commit_shape(commit)
        with self._write_lock:
            self._check_open()
            if self._failed is not None:
                raise InfrastructureError(
                    f"the ledger store refused a commit after an earlier failure "
                    f"({self._failed}); restart the node and verify the chain"
                )
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except apsw.Error as exc:
                raise InfrastructureError(f"cannot start the block transaction: {exc}") from exc
            try:
                self._check_commit(conn, commit)
                failpoint("storage.commit.before_block")
                self._write_block(conn, commit)
                failpoint("storage.commit.after_block_row")
                self._write_txs(conn, commit)
                self._write_merkle_nodes(conn, commit)
                self._write_state(conn, commit)
                failpoint("storage.commit.before_commit")
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, LedgerError) or not isinstance(exc, apsw.Error | OSError):
                    raise
                if not isinstance(exc, apsw.ConstraintError):
                    self._failed = f"{type(exc).__name__}: {exc}"
                raise InfrastructureError(
                    f"block {commit.block.height} was not committed: {exc}"
                ) from exc
        failpoint("storage.commit.after_commit")

    @staticmethod
    def _rollback(conn: apsw.Connection) -> None:
        if conn.in_transaction:
            # SQLite may have rolled back already; the commit failed either way.
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")

    def _check_commit(self, conn: apsw.Connection, commit: BlockCommit) -> None:
        height = commit.block.height
        rows = _fetch(
            conn,
            "SELECT height, first_log_index + tx_count FROM blocks ORDER BY height DESC LIMIT 1",
        )
        want_height, log_size = (rows[0][0] + 1, rows[0][1]) if rows else (0, 0)
        if height != want_height:
            raise ConflictError(
                f"block height {height} does not extend the chain: got {height}, want "
                f"{want_height}",
                code="wrong_height",
            )
        if commit.first_log_index != log_size:
            raise ConflictError(
                f"block {height}: first_log_index is {commit.first_log_index}, want the log "
                f"size {log_size}",
                code="wrong_log_index",
            )
        existing = self._existing_tx_ids(conn, commit.tx_ids)
        if existing:
            first = min(existing)
            raise DuplicateTransactionError(
                f"block {height}: transaction {first.hex()} is already committed"
            )

    @staticmethod
    def _write_block(conn: apsw.Connection, commit: BlockCommit) -> None:
        block = commit.block
        conn.execute(
            "INSERT INTO blocks (height, header_hash, header, signature, first_log_index, "
            "tx_count) VALUES (?, ?, ?, ?, ?, ?)",
            (
                block.height,
                bytes(commit.header_hash),
                bytes(block.header),
                bytes(block.signature),
                commit.first_log_index,
                len(block.envelopes),
            ),
        )
        if commit.checkpoint:
            conn.execute(
                "INSERT INTO checkpoints (height, checkpoint) VALUES (?, ?)",
                (block.height, bytes(commit.checkpoint)),
            )

    @staticmethod
    def _write_txs(conn: apsw.Connection, commit: BlockCommit) -> None:
        block = commit.block
        first = commit.first_log_index
        conn.executemany(
            "INSERT INTO txs (log_index, tx_id, height, position, envelope, receipt) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            _halves(
                [
                    (first + position, tx_id, block.height, position, envelope, receipt)
                    for position, (tx_id, envelope, receipt) in enumerate(
                        zip(commit.tx_ids, block.envelopes, block.receipts, strict=True)
                    )
                ],
                "storage.commit.during_txs",
            ),
        )
        failpoint("storage.commit.during_index")
        if commit.account_index:
            conn.executemany(
                "INSERT OR IGNORE INTO account_index (account, log_index) VALUES (?, ?)",
                commit.account_index,
            )

    @staticmethod
    def _write_merkle_nodes(conn: apsw.Connection, commit: BlockCommit) -> None:
        if commit.merkle_nodes:
            conn.executemany(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)",
                _halves(commit.merkle_nodes, "storage.commit.during_merkle"),
            )

    @staticmethod
    def _write_state(conn: apsw.Connection, commit: BlockCommit) -> None:
        upserts = [(key, value) for key, value in commit.state_writes if value is not None]
        deletes = [(key,) for key, value in commit.state_writes if value is None]
        if upserts:
            conn.executemany(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                _halves(upserts, "storage.commit.during_state"),
            )
        if deletes:
            conn.executemany("DELETE FROM state WHERE key = ?", deletes)

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            self._checkpointer.stop()
            readers = list(self._readers.values())
            self._readers.clear()
            for conn in readers:
                _release_reader({}, 0, conn)
            self._writer.close()
