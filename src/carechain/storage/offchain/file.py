"""``FileRecordStore``: encrypted blobs in files, their metadata in a small SQLite database.

Layout of ``root`` (``DIR/records/`` beside the ledger; every directory 0700, every file 0600)::

    records.sqlite            metadata (apsw; WAL, synchronous=FULL, secure_delete=ON)
      blobs(address, wrapped_key, kek_id, nonce_prefix, media_type, plaintext_size,
            chunk_count, ciphertext_size)           one row per live blob
      erased(address)                               tombstones of crypto-shredded blobs
    blobs/<2 hex>/<64 hex>    ciphertext, named by its SHA-256 (first two hex digits fan out)
    tmp/                      ciphertext of puts in progress

Invariants (on top of those in :mod:`.base`):

* ``put`` streams to a temp file in ``tmp/`` (same file system), fsyncs it, hard-links it to
  its content address (never clobbering), fsyncs the directory, and only then commits the
  metadata row; any failure removes what was created. A crash between the link and the commit
  leaves an orphan ciphertext whose key was never stored: undecryptable, removed by
  :meth:`FileRecordStore.sweep`. Temp files of a crashed process are removed on open.
* ``erase`` deletes the row (``secure_delete`` zeroes the freed bytes) and inserts the
  tombstone in one synchronous transaction, checkpoints and truncates the WAL so no old page
  image keeps the wrapped key, and only then deletes the ciphertext and fsyncs its directory.
  (Blocks freed by the file system or copies in backups/snapshots are outside the store's
  reach: that is exactly what crypto-shredding makes harmless.)
* One store instance per ``root`` at a time; its metadata connection is used under one lock.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import apsw

from carechain.crypto.kek import KEK
from carechain.errors import (
    ConfigurationError,
    ConflictError,
    GoneError,
    InfrastructureError,
    NotFoundError,
)
from carechain.storage.offchain.base import (
    DEFAULT_MAX_BYTES,
    BlobMeta,
    CiphertextSink,
    RecordStoreStats,
    StreamingRecordStore,
)
from carechain.storage.offchain.stream import tampered_error
from carechain.storage.sqlite import MIN_SQLITE_VERSION

SCHEMA_VERSION = 1
DB_NAME = "records.sqlite"
_BUSY_TIMEOUT_MS = 10_000
_TMP_SUFFIX = ".part"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    address         TEXT PRIMARY KEY,
    wrapped_key     BLOB NOT NULL,
    kek_id          TEXT NOT NULL,
    nonce_prefix    BLOB NOT NULL,
    media_type      TEXT NOT NULL,
    plaintext_size  INTEGER NOT NULL,
    chunk_count     INTEGER NOT NULL,
    ciphertext_size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased (
    address TEXT PRIMARY KEY
) WITHOUT ROWID;
"""
_INSERT_BLOB = (
    "INSERT INTO blobs (address, wrapped_key, kek_id, nonce_prefix, media_type, plaintext_size, "
    "chunk_count, ciphertext_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_BLOB = (
    "SELECT address, wrapped_key, kek_id, nonce_prefix, media_type, plaintext_size, "
    "chunk_count, ciphertext_size FROM blobs WHERE address = ?"
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


class _FileSink(CiphertextSink):
    """A temp file in ``tmp/``; ``finish`` makes it durable, ``discard`` removes it."""

    def __init__(self, tmp_dir: Path, on_done: Callable[[Path], None]) -> None:
        fd, name = tempfile.mkstemp(suffix=_TMP_SUFFIX, dir=tmp_dir)  # mode 0600
        self.path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._on_done = on_done

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)

    def finish(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
        self._on_done(self.path)


class FileRecordStore(StreamingRecordStore):
    """A :class:`RecordStore` in a directory (see the module docstring for the layout)."""

    def __init__(self, root: Path | str, kek: KEK, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(kek, max_bytes=max_bytes)
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.db_path = self.root / DB_NAME
        self._lock = threading.Lock()
        self._inflight: set[Path] = set()
        self._closed = False
        found = apsw.sqlite_lib_version()
        if tuple(int(x) for x in found.split(".")[:3]) < MIN_SQLITE_VERSION:
            raise ConfigurationError(f"SQLite {found} is too old for the record store")
        try:
            for d in (self.root, self.blobs_dir, self.tmp_dir):
                _private_dir(d)
            for leftover in self.tmp_dir.iterdir():  # puts of a crashed process
                leftover.unlink(missing_ok=True)
            os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600))
            _fsync_dir(self.root)
        except OSError as exc:
            raise InfrastructureError(f"cannot open record store {self.root}: {exc}") from None
        try:
            self._conn = apsw.Connection(str(self.db_path))
        except apsw.Error as exc:
            raise InfrastructureError(f"cannot open record store {self.db_path}: {exc}") from exc
        try:
            self._configure()
        except apsw.Error as exc:
            self._conn.close()
            raise InfrastructureError(f"cannot open record store {self.db_path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _configure(self) -> None:
        conn = self._conn
        conn.set_busy_timeout(_BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")
        settings = (
            str(self._one("PRAGMA journal_mode")).lower(),
            self._one("PRAGMA synchronous"),
            self._one("PRAGMA secure_delete"),
        )
        if settings != ("wal", 2, 1):
            raise ConfigurationError(
                f"{self.db_path}: journal_mode, synchronous, secure_delete are {settings}, "
                "want ('wal', 2, 1): put the store on a local file system"
            )
        with conn:
            conn.execute(_SCHEMA)
            version = self._one("SELECT value FROM schema_meta WHERE key = 'schema_version'")
            if version is None:
                conn.execute(
                    "INSERT INTO schema_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif version != str(SCHEMA_VERSION):
                raise ConfigurationError(
                    f"{self.db_path} has schema version {version}, want {SCHEMA_VERSION}"
                )

    def _rows(self, sql: str, bindings: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._conn.execute(sql, bindings)]

    def _one(self, sql: str, bindings: tuple[Any, ...] = ()) -> Any:
        rows = self._rows(sql, bindings)
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Close the metadata database (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> FileRecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob_path(self, address: str) -> Path:
        """The file that holds (or would hold) the ciphertext of ``address``."""
        return self.blobs_dir / address[:2] / address

    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError(f"the record store {self.root} is closed")

    # -- primitives ----------------------------------------------------------------------
    def _new_sink(self) -> CiphertextSink:
        with self._lock:
            self._check_open()
            try:
                sink = _FileSink(self.tmp_dir, self._inflight.discard)
            except OSError as exc:
                raise InfrastructureError(f"cannot create a temp file: {exc}") from None
            self._inflight.add(sink.path)
            return sink

    def _publish(self, sink: CiphertextSink, meta: BlobMeta) -> None:
        assert isinstance(sink, _FileSink)
        final = self.blob_path(meta.address)
        try:
            sink.finish()
            with self._lock:
                self._check_open()
                if self._known(meta.address):
                    raise ConflictError(f"record blob {meta.address} already exists")
                if not final.parent.is_dir():
                    _private_dir(final.parent)
                    _fsync_dir(self.blobs_dir)
                try:
                    os.link(sink.path, final)  # atomic and never clobbers
                except FileExistsError:
                    raise ConflictError(f"record blob {meta.address} already exists") from None
                except OSError:  # no hard links here: check, then rename (under the lock)
                    if final.exists():
                        raise ConflictError(f"record blob {meta.address} already exists") from None
                    os.replace(sink.path, final)
                try:
                    _fsync_dir(final.parent)
                    with self._conn:
                        self._conn.execute(
                            _INSERT_BLOB,
                            (meta.address, meta.wrapped_key, meta.kek_id, meta.nonce_prefix,
                             meta.media_type, meta.plaintext_size, meta.chunk_count,
                             meta.ciphertext_size),
                        )  # fmt: skip
                except BaseException:
                    final.unlink(missing_ok=True)
                    raise
        except OSError as exc:
            raise InfrastructureError(f"cannot store record blob: {exc}") from None
        except apsw.Error as exc:
            raise InfrastructureError(f"cannot record blob metadata: {exc}") from exc

    def _known(self, address: str) -> bool:
        return (
            self._one("SELECT 1 FROM blobs WHERE address = ?", (address,)) is not None
            or self._one("SELECT 1 FROM erased WHERE address = ?", (address,)) is not None
        )

    def _lookup_locked(self, address: str) -> BlobMeta:
        self._check_open()
        try:
            rows = self._rows(_SELECT_BLOB, (address,))
            if not rows:
                if self._one("SELECT 1 FROM erased WHERE address = ?", (address,)) is not None:
                    raise GoneError(f"record blob {address} was erased")
                raise NotFoundError(f"no record blob {address}")
        except apsw.Error as exc:
            raise InfrastructureError(f"cannot read record metadata: {exc}") from exc
        a, wrapped, kek_id, prefix, media_type, size, count, ct_size = rows[0]
        return BlobMeta(
            address=a, wrapped_key=bytes(wrapped), kek_id=kek_id, nonce_prefix=bytes(prefix),
            media_type=media_type, plaintext_size=size, chunk_count=count,
            ciphertext_size=ct_size,
        )  # fmt: skip

    def _lookup(self, address: str) -> BlobMeta:
        with self._lock:
            return self._lookup_locked(address)

    def _open_ciphertext(
        self, address: str
    ) -> tuple[BlobMeta, Callable[[int], bytes], Callable[[], None]]:
        with self._lock:
            meta = self._lookup_locked(address)
            try:
                f = self.blob_path(address).open("rb")
            except FileNotFoundError:
                raise tampered_error(address, "the ciphertext file is missing") from None
            except OSError as exc:
                raise InfrastructureError(f"cannot read record blob {address}: {exc}") from None
        return meta, f.read, f.close

    def _forget_key(self, address: str) -> bool:
        with self._lock:
            self._check_open()
            try:
                with self._conn:
                    deleted = self._one("SELECT 1 FROM blobs WHERE address = ?", (address,))
                    if deleted is not None:
                        self._conn.execute("DELETE FROM blobs WHERE address = ?", (address,))
                        self._conn.execute("INSERT INTO erased (address) VALUES (?)", (address,))
                    elif self._one("SELECT 1 FROM erased WHERE address = ?", (address,)) is None:
                        raise NotFoundError(f"no record blob {address}")
                # The WAL may still hold page images with the wrapped key: copy the current
                # pages into the database file and truncate the WAL (also on a repeated erase,
                # so retrying finishes an interrupted scrub).
                busy, _, _ = self._rows("PRAGMA wal_checkpoint(TRUNCATE)")[0]
            except apsw.Error as exc:
                raise InfrastructureError(f"cannot erase record key {address}: {exc}") from exc
            if busy:
                raise InfrastructureError(
                    f"record key {address} is deleted but the WAL could not be truncated "
                    "(another connection is reading): retry the erasure"
                )
            return deleted is not None

    def _delete_ciphertext(self, address: str) -> bool:
        path = self.blob_path(address)
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise InfrastructureError(f"cannot delete record blob {address}: {exc}") from None
            try:
                _fsync_dir(path.parent)
            except OSError as exc:
                raise InfrastructureError(f"cannot sync {path.parent}: {exc}") from None
            return True

    # -- queries and maintenance -----------------------------------------------------------
    def stats(self) -> RecordStoreStats:
        with self._lock:
            self._check_open()
            try:
                rows = self._rows(
                    "SELECT COUNT(*), COALESCE(SUM(plaintext_size), 0), "
                    "COALESCE(SUM(ciphertext_size), 0) FROM blobs"
                )
                erased = self._one("SELECT COUNT(*) FROM erased")
            except apsw.Error as exc:
                raise InfrastructureError(f"cannot read record metadata: {exc}") from exc
        blobs, plain, cipher = rows[0]
        return RecordStoreStats(
            blobs=blobs, erased=erased, plaintext_bytes=plain, ciphertext_bytes=cipher
        )

    def sweep(self) -> int:
        """Delete orphan ciphertext (no live metadata) and stale temp files; return the count."""
        removed = 0
        with self._lock:
            self._check_open()
            for path in self.tmp_dir.iterdir():
                if path not in self._inflight:
                    path.unlink(missing_ok=True)
                    removed += 1
            for sub in self.blobs_dir.iterdir():
                for path in sub.iterdir() if sub.is_dir() else ():
                    live = self._one("SELECT 1 FROM blobs WHERE address = ?", (path.name,))
                    if live is None:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                            removed += 1
        return removed
