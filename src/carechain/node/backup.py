"""Online backup and verified restore of a chain data directory.

A backup is one tar file holding everything a restore needs to run the node again:
``genesis.json``, ``node.json``, ``keys/`` (encrypted key files and the record KEK),
``secrets/`` (node key password, consortium index key), the ledger and every other SQLite
database of the directory (records, indexes, domain services), and the off-chain blobs; plus
``MANIFEST.json`` (chain, head height, log size, newest checkpoint, SHA-256 of every file).

Steps of :func:`backup` (the node may be serving and writing throughout):

1. every SQLite database is copied with SQLite's online backup API (apsw
   ``Connection.backup``, all pages in one step: one consistent read snapshot, the writer is
   never blocked under WAL); the ledger first, so the other databases and the blobs copied
   after it are never older than what the ledger refers to;
2. the other files are copied as they are (blobs are content-addressed and written once);
   ``node.lock``, SQLite ``-wal``/``-shm``/``-journal`` files and ``tmp/`` are skipped;
3. the manifest records each file's SHA-256; the archive is written to a temporary file,
   fsynced, then renamed over ``out`` (mode 0600: it holds secrets).

Steps of :func:`restore` (nothing is written to ``dir`` unless every step passes):

1. ``dir`` must not exist or be empty; the archive is unpacked into a staging directory
   next to it (regular files and directories only, no absolute paths or ``..``);
2. every file's SHA-256 must match the manifest, and the manifest's chain and genesis hash
   the unpacked genesis;
3. ``verify_store`` recomputes the ledger from genesis (a backup that does not verify is
   refused, naming the block and field);
4. freshness: given checkpoints the node already published (a signed note, or a client
   trust file), each must be signed by a node key of the chain, and the restored log must
   contain it: a smaller log is a rollback, another root at that size a fork (refused);
5. the staging directory is renamed to ``dir``.

Invariant: a restored directory verifies and is never older than any checkpoint handed to
the restore. Records the records service indexed after the ledger snapshot (step 1) may
survive as index rows without an anchor; the service reports those as integrity errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import apsw
import orjson

from carechain.errors import (
    ChainVerificationError,
    CheckpointError,
    ConflictError,
    LedgerError,
    NotFoundError,
    ValidationError,
)
from carechain.merkle import Checkpoint, open_checkpoint, root_at
from carechain.node.chaindir import ChainPaths, read_genesis
from carechain.node.verify import StoreReport, note_verifiers, verify_store
from carechain.storage.sqlite import SQLiteStore

MANIFEST = "MANIFEST.json"
FORMAT = "carechain-backup@1"
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
SKIP_NAMES = ("node.lock",)
SKIP_DIRS = ("tmp",)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupReport:
    """What :func:`backup` wrote."""

    out: Path
    """The archive."""
    chain: str
    """Chain id."""
    height: int
    """Head height of the ledger copy."""
    log_size: int
    """Transactions in the ledger copy."""
    files: int
    """Files in the archive (manifest excluded)."""
    databases: int
    """Of which SQLite databases copied with the online backup API."""
    bytes: int
    """Total size of the files."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreReport:
    """What :func:`restore` brought back."""

    dir: Path
    """The restored data directory."""
    verify: StoreReport
    """The verification of the restored ledger."""
    log_size: int
    """Transactions in the restored log."""
    checked: tuple[Checkpoint, ...]
    """Published checkpoints the restored log was proven to contain."""


# -- backup -------------------------------------------------------------------------------------


def _is_sqlite(path: Path) -> bool:
    return path.suffix in SQLITE_SUFFIXES


def _members(root: Path) -> Iterator[Path]:
    """Files to back up, relative to ``root``, the ledger first (step 1's order)."""
    ledger = ChainPaths(root).ledger.relative_to(root)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                continue
            rel = (Path(dirpath) / name).relative_to(root)
            if rel != ledger:
                found.append(rel)
    yield ledger
    yield from (p for p in found if _is_sqlite(p))  # databases right after the ledger
    yield from (p for p in found if not _is_sqlite(p))


def copy_database(src: Path, dst: Path) -> None:
    """Step 1: a consistent copy of a live SQLite database (online backup API, one step)."""
    source = apsw.Connection(str(src), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        source.set_busy_timeout(10_000)
        target = apsw.Connection(str(dst))
        try:
            with target.backup("main", source, "main") as job:
                job.step(-1)  # every page under one read snapshot
        finally:
            target.close()
    finally:
        source.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ledger_facts(path: Path) -> dict[str, object]:
    store = SQLiteStore(path)
    try:
        head = store.head_height()
        note = store.find_checkpoint()
        return {
            "height": -1 if head is None else head,
            "log_size": store.log_size(),
            "checkpoint": "" if note is None else note.decode("utf-8"),
        }
    finally:
        store.close()


def backup(root: Path, out: Path) -> BackupReport:
    """Write an online, consistent backup of the data directory ``root`` to ``out``."""
    paths = ChainPaths(root)
    genesis = read_genesis(root)  # raises NotFoundError for a directory without a chain
    if not paths.ledger.exists():
        raise NotFoundError(f"no ledger in {root} ({paths.ledger.name} is missing)")
    out = out.resolve()
    if out.is_relative_to(root.resolve()):
        raise ValidationError(f"--out {out} is inside the data directory {root}; write elsewhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".carechain-backup-", dir=out.parent) as tmp:
        stage = Path(tmp) / "stage"
        files: dict[str, dict[str, object]] = {}
        facts: dict[str, object] = {}
        databases = 0
        for rel in _members(root):
            src, dst = root / rel, stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if _is_sqlite(rel):
                copy_database(src, dst)  # step 1
                databases += 1
                if not files:  # the ledger: read its facts before hashing the copy
                    facts = _ledger_facts(dst)
            else:
                try:
                    shutil.copyfile(src, dst)  # step 2
                except FileNotFoundError:  # removed while we walked (a temp file): skip
                    continue
            files[rel.as_posix()] = {"sha256": _sha256(dst), "size": dst.stat().st_size}
        manifest = {  # step 3
            "format": FORMAT,
            "chain": genesis.chain,
            "genesis_sha256": hashlib.sha256(genesis.raw).hexdigest(),
            "created_ms": time.time_ns() // 1_000_000,
            **facts,
            "files": files,
        }
        (stage / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        partial = Path(tmp) / "backup.tar"
        with tarfile.open(partial, "w") as tar:
            tar.add(stage / MANIFEST, arcname=MANIFEST)
            for name in files:
                tar.add(stage / name, arcname=name)
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        partial.chmod(0o600)
        os.replace(partial, out)
    _fsync_dir(out.parent)
    return BackupReport(
        out=out,
        chain=genesis.chain,
        height=int(str(facts["height"])),
        log_size=int(str(facts["log_size"])),
        files=len(files),
        databases=databases,
        bytes=sum(int(str(f["size"])) for f in files.values()),
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- restore ------------------------------------------------------------------------------------


def read_published(path: Path) -> bytes:
    """A checkpoint the node already published: a signed note, or a client trust file
    (``carechain proof --trust-file``: its ``note``)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"checkpoint file {path} does not exist") from None
    if data.lstrip().startswith(b"{"):
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ValidationError(f"{path}: neither a signed note nor a trust file") from None
        note = obj.get("note") if isinstance(obj, dict) else None
        if not isinstance(note, str):
            raise ValidationError(f"{path}: a trust file without a signed note")
        return note.encode("utf-8")
    return data


def _safe_extract(archive: Path, stage: Path) -> None:
    """Step 1: regular files and directories only, inside ``stage``."""
    try:
        with tarfile.open(archive, "r") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if (
                    name.is_absolute()
                    or ".." in name.parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise ValidationError(f"backup member {member.name!r} is not allowed")
            tar.extractall(stage, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ValidationError(f"{archive} is not a carechain backup: {exc}") from None


def _check_manifest(stage: Path) -> dict[str, object]:
    """Step 2."""
    path = stage / MANIFEST
    if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValidationError(f"the backup holds no {MANIFEST}")
    manifest = orjson.loads(path.read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValidationError(f"{MANIFEST}: want format {FORMAT}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ValidationError(f"{MANIFEST}: no file list")
    listed = set(files)
    present = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()} - {
        MANIFEST
    }
    if listed != present:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise ChainVerificationError(
            f"backup files differ from the manifest: extra {extra}, missing {missing}",
            height=-1,
            field="backup",
        )
    for rel, meta in sorted(files.items()):
        want = meta.get("sha256") if isinstance(meta, dict) else None
        got = _sha256(stage / rel)
        if got != want:
            raise ChainVerificationError(
                f"backup file {rel}: SHA-256 {got}, the manifest says {want}",
                height=-1,
                field="backup",
            )
    genesis = read_genesis(stage)
    if (manifest.get("chain"), manifest.get("genesis_sha256")) != (
        genesis.chain,
        hashlib.sha256(genesis.raw).hexdigest(),
    ):
        raise ChainVerificationError(
            "the manifest names another chain or genesis", height=0, field="backup"
        )
    return manifest


def check_not_older(store: SQLiteStore, origin: str, notes: Sequence[bytes]) -> list[Checkpoint]:
    """Step 4: every published checkpoint is signed by a node key and contained in the log."""
    state = dict(store.iter_state("node/"))
    verifiers = note_verifiers(state, origin)
    size = store.log_size()
    out = []
    for note in notes:
        try:
            cp = open_checkpoint(note, verifiers, origin)
        except LedgerError as exc:
            raise CheckpointError(f"published checkpoint does not verify: {exc}") from None
        if cp.size > size:
            raise CheckpointError(
                f"rollback: the backup's log has {size} transactions, older than the published "
                f"checkpoint of size {cp.size}; restore a newer backup",
                code="checkpoint_rollback",
            )
        if root_at(store, cp.size) != cp.root:
            raise CheckpointError(
                f"fork: the backup's log of size {cp.size} has another root than the published "
                "checkpoint",
                code="checkpoint_fork",
            )
        out.append(cp)
    return out


def restore(archive: Path, root: Path, *, published: Sequence[bytes] = ()) -> RestoreReport:
    """Restore ``archive`` into the new data directory ``root`` (see the module docstring)."""
    if not archive.is_file():
        raise NotFoundError(f"backup {archive} does not exist")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConflictError(f"{root} is not empty; restore into a new directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.restore-", dir=root.parent))
    try:
        _safe_extract(archive, stage)  # step 1
        _check_manifest(stage)  # step 2
        (stage / MANIFEST).unlink()
        genesis = read_genesis(stage)
        store = SQLiteStore(ChainPaths(stage).ledger)
        try:
            report = verify_store(store, genesis)  # step 3
            checked = check_not_older(store, genesis.origin, published)  # step 4
            size = store.log_size()
        finally:
            store.close()
        for sub in ("secrets", "keys"):
            if (stage / sub).is_dir():
                (stage / sub).chmod(0o700)
        if root.exists():
            root.rmdir()
        os.replace(stage, root)  # step 5
        _fsync_dir(root.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(stage)
        raise
    return RestoreReport(dir=root, verify=report, log_size=size, checked=tuple(checked))


__all__ = [
    "BackupReport",
    "RestoreReport",
    "backup",
    "check_not_older",
    "copy_database",
    "read_published",
    "restore",
]
