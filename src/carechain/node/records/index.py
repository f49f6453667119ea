"""The record service's local index: ``DIR/records/index.sqlite`` (apsw; WAL, FULL, secure_delete).

What the chain does not hold and must never hold: where each anchored version's ciphertext is
(blob address), its blinding key (wrapped by the record KEK, RFC 3394), its media type, and the
columns a FHIR search filters on. The chain stays the authority: every read compares what this
index and the blob store give back with the on-chain digest, so a changed row is detected (a
wrong blob fails the digest, a changed wrapped key fails its unwrap).

Schema::

    versions(org, type, id, version, address, wrapped_key, kek_id, media_type, patient,
             last_updated, anchor_tx, context)  one row per anchored version; ``context`` is
                                             a raw Binary's securityContext (schema 2)
    records(org, type, id, patient, latest, last_updated, code, system_code, pindex,
            status)                          one row per record: search columns, latest version

``wrapped_key`` becomes NULL and ``status`` ``erased`` when a record is crypto-shredded; the
WAL is checkpointed and truncated so no page image keeps a wrapped key.

Invariants: rows are written only after their anchor committed; one connection, used under a
lock; a row is never moved to other coordinates.
"""

# ruff: noqa: S608  (SQL text is built from constant column lists and '?' marks only)

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from carechain.errors import ConfigurationError, InfrastructureError

SCHEMA_VERSION = 2
INDEX_DB_NAME = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    org          TEXT NOT NULL,
    type         TEXT NOT NULL,
    id           TEXT NOT NULL,
    version      INTEGER NOT NULL,
    address      TEXT NOT NULL,
    wrapped_key  BLOB,
    kek_id       TEXT NOT NULL,
    media_type   TEXT NOT NULL,
    patient      TEXT NOT NULL,
    last_updated INTEGER NOT NULL,
    anchor_tx    TEXT NOT NULL,
    context      TEXT,
    PRIMARY KEY (org, type, id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    org          TEXT NOT NULL,
    type         TEXT NOT NULL,
    id           TEXT NOT NULL,
    patient      TEXT NOT NULL,
    latest       INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    code         TEXT,
    system_code  TEXT,
    pindex       TEXT NOT NULL,
    status       TEXT NOT NULL,
    PRIMARY KEY (org, type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_search ON records (type, patient, last_updated);
CREATE INDEX IF NOT EXISTS records_by_id ON records (type, id);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRow:
    """One anchored version as the index knows it."""

    org: str
    type: str
    id: str
    version: int
    address: str
    wrapped_key: bytes | None
    kek_id: str
    media_type: str
    patient: str
    last_updated: int
    anchor_tx: str
    context: str | None = None
    """A raw Binary's ``securityContext`` reference (its content is stored as raw bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    """One record (all versions) as the index knows it."""

    org: str
    type: str
    id: str
    patient: str
    latest: int
    last_updated: int
    code: str | None
    system_code: str | None
    pindex: str
    """The secure index (base64url) the record's anchors carry."""
    status: str


_VCOLS = (
    "org, type, id, version, address, wrapped_key, kek_id, media_type, patient, last_updated, "
    "anchor_tx, context"
)
_RCOLS = "org, type, id, patient, latest, last_updated, code, system_code, pindex, status"


def _vrow(row: Sequence[Any]) -> VersionRow:
    org, t, i, v, a, w, k, m, p, lu, tx, ctx = row
    return VersionRow(
        org=org, type=t, id=i, version=v, address=a,
        wrapped_key=None if w is None else bytes(w), kek_id=k, media_type=m, patient=p,
        last_updated=lu, anchor_tx=tx, context=ctx,
    )  # fmt: skip


def _rrow(row: Sequence[Any]) -> RecordRow:
    org, t, i, p, latest, lu, code, sc, pindex, status = row
    return RecordRow(
        org=org, type=t, id=i, patient=p, latest=latest, last_updated=lu, code=code,
        system_code=sc, pindex=pindex, status=status,
    )  # fmt: skip


class RecordIndex:
    """The local index (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = apsw.Connection(str(path))
        except (OSError, apsw.Error) as exc:
            raise InfrastructureError(f"cannot open the record index {path}: {exc}") from None
        try:
            conn = self._conn
            conn.set_busy_timeout(10_000)
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            mode = str(self._one("PRAGMA journal_mode")).lower()
            if (mode, self._one("PRAGMA synchronous")) != ("wal", 2):
                raise ConfigurationError(f"{path}: cannot use WAL with synchronous=FULL")
            with conn:
                conn.execute(_SCHEMA)
                version = self._one("SELECT value FROM schema_meta WHERE key = 'schema_version'")
                if version is None:
                    conn.execute(
                        "INSERT INTO schema_meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                elif version == "1":  # schema 1 → 2: raw Binary contexts
                    conn.execute("ALTER TABLE versions ADD COLUMN context TEXT")
                    conn.execute(
                        "UPDATE schema_meta SET value = ? WHERE key = 'schema_version'",
                        (str(SCHEMA_VERSION),),
                    )
                elif version != str(SCHEMA_VERSION):
                    raise ConfigurationError(
                        f"{path} has schema version {version}, want {SCHEMA_VERSION}"
                    )
        except apsw.Error as exc:
            self._conn.close()
            raise InfrastructureError(f"cannot open the record index {path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _rows(self, sql: str, bindings: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self._conn.execute(sql, bindings)]
        except apsw.Error as exc:
            raise InfrastructureError(f"record index {self.path}: {exc}") from exc

    def _one(self, sql: str, bindings: tuple[Any, ...] = ()) -> Any:
        rows = self._rows(sql, bindings)
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    # -- reads -------------------------------------------------------------------------------
    def find_record(self, rtype: str, rid: str, org: str | None = None) -> RecordRow | None:
        """The record ``rtype/rid`` (hosted by ``org``, else by any organisation)."""
        with self._lock:
            if org is None:
                rows = self._rows(
                    f"SELECT {_RCOLS} FROM records WHERE type = ? AND id = ? ORDER BY org",
                    (rtype, rid),
                )
            else:
                rows = self._rows(
                    f"SELECT {_RCOLS} FROM records WHERE org = ? AND type = ? AND id = ?",
                    (org, rtype, rid),
                )
        return _rrow(rows[0]) if rows else None

    def find_version(self, org: str, rtype: str, rid: str, version: int) -> VersionRow | None:
        """One version's row."""
        with self._lock:
            rows = self._rows(
                f"SELECT {_VCOLS} FROM versions WHERE org = ? AND type = ? AND id = ? "
                "AND version = ?",
                (org, rtype, rid, version),
            )
        return _vrow(rows[0]) if rows else None

    def versions(self, org: str, rtype: str, rid: str) -> list[VersionRow]:
        """Every version's row, oldest first."""
        with self._lock:
            rows = self._rows(
                f"SELECT {_VCOLS} FROM versions WHERE org = ? AND type = ? AND id = ? "
                "ORDER BY version",
                (org, rtype, rid),
            )
        return [_vrow(r) for r in rows]

    def search(
        self,
        rtype: str,
        *,
        patient: str | None,
        ids: Sequence[str],
        since: int | None,
        until: int | None,
        code: str | None,
    ) -> list[RecordRow]:
        """Active records matching every given criterion, newest first."""
        where = ["type = ?", "status = 'active'"]
        binds: list[Any] = [rtype]
        if patient is not None:
            where.append("patient = ?")
            binds.append(patient)
        if ids:
            where.append(f"id IN ({', '.join('?' for _ in ids)})")
            binds.extend(ids)
        if since is not None:
            where.append("last_updated >= ?")
            binds.append(since)
        if until is not None:
            where.append("last_updated <= ?")
            binds.append(until)
        if code is not None:
            where.append("(code = ? OR system_code = ?)")
            binds.extend((code, code))
        sql = (
            f"SELECT {_RCOLS} FROM records WHERE {' AND '.join(where)} "
            "ORDER BY last_updated DESC, org, id"
        )
        with self._lock:
            rows = self._rows(sql, tuple(binds))
        return [_rrow(r) for r in rows]

    # -- writes ------------------------------------------------------------------------------
    def add_version(self, row: VersionRow, record: RecordRow) -> None:
        """Record an anchored version and update its record's row, in one transaction."""
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        f"INSERT INTO versions ({_VCOLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (row.org, row.type, row.id, row.version, row.address, row.wrapped_key,
                         row.kek_id, row.media_type, row.patient, row.last_updated,
                         row.anchor_tx, row.context),
                    )  # fmt: skip
                    self._conn.execute(
                        f"INSERT OR REPLACE INTO records ({_RCOLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (record.org, record.type, record.id, record.patient, record.latest,
                         record.last_updated, record.code, record.system_code, record.pindex,
                         record.status),
                    )  # fmt: skip
            except apsw.Error as exc:
                raise InfrastructureError(f"record index {self.path}: {exc}") from exc

    def mark_erased(self, org: str, rtype: str, rid: str) -> None:
        """Drop every version's wrapped blinding key, mark the record erased, scrub the WAL."""
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        "UPDATE versions SET wrapped_key = NULL WHERE org = ? AND type = ? "
                        "AND id = ?",
                        (org, rtype, rid),
                    )
                    self._conn.execute(
                        "UPDATE records SET status = 'erased', code = NULL, system_code = NULL "
                        "WHERE org = ? AND type = ? AND id = ?",
                        (org, rtype, rid),
                    )
                busy = self._rows("PRAGMA wal_checkpoint(TRUNCATE)")[0][0]
            except apsw.Error as exc:
                raise InfrastructureError(f"record index {self.path}: {exc}") from exc
        if busy:
            raise InfrastructureError(
                f"the blinding keys of {rtype}/{rid} are deleted but the index WAL could not be "
                "truncated: retry the erasure"
            )


__all__ = ["INDEX_DB_NAME", "RecordIndex", "RecordRow", "VersionRow"]
