"""A fault-injecting SQLite VFS: ENOSPC / EIO at the N-th I/O step of a block commit.

:class:`FaultVFS` is an ``apsw.VFS`` shim over the default VFS (SQLite's own test harness
does the same with its ``crash`` and ``devsym`` VFSes). Every file it opens is a
:class:`FaultFile` that counts, while the plan is armed, each ``xWrite``, ``xSync`` and
``xTruncate`` on the ledger database and its WAL (``-journal`` too, were it ever used) and makes
step ``fail_at`` (1-based) return ``SQLITE_FULL`` (``full``: a full disk) or ``SQLITE_IOERR``
(``ioerr``: a failing device). With ``sticky`` every later step fails too (the disk stays
full); otherwise only that one step does. Reads and shared-memory calls pass through.

Use: ``vfs = FaultVFS(); store = SQLiteStore(path, vfs=vfs.name)``; ``vfs.arm(3, "full")``
before the commit under test, ``vfs.disarm()`` after; ``vfs.steps`` lists what was counted
(``("write", "ledger.sqlite-wal")`` …) and ``vfs.fired`` says whether a fault was returned.
:func:`open_faulty_node` opens a data directory's node over such a store.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import apsw

from carechain.node.chaindir import open_node
from carechain.node.node import Node
from carechain.node.sigpool import SignatureVerifier

FAULTS = {"full": apsw.FullError, "ioerr": apsw.IOError}
"""Fault kinds and the exception (hence SQLite result code) a failing step returns."""
_COUNTED_SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-journal")
_names = itertools.count()


class FaultVFS(apsw.VFS):
    """The shim; registered under a fresh name on creation (``unregister()`` to drop it)."""

    def __init__(self, base: str = "") -> None:
        self.name = f"carechain-fault-{next(_names)}"
        self.base = base
        self._lock = threading.Lock()
        self.fail_at: int | None = None
        self.kind = "ioerr"
        self.sticky = False
        self.counting = False
        self.steps: list[tuple[str, str]] = []
        self.fired = 0
        super().__init__(self.name, base)

    def arm(self, fail_at: int | None, kind: str = "ioerr", *, sticky: bool = False) -> None:
        """Count from now on; fail step ``fail_at`` (None: count only, fail nothing)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self.fail_at, self.kind, self.sticky = fail_at, kind, sticky
            self.steps, self.fired, self.counting = [], 0, True

    def disarm(self) -> None:
        """Stop counting and failing."""
        with self._lock:
            self.counting, self.fail_at = False, None

    def step(self, op: str, filename: str) -> None:
        """Count one I/O step; raise the planned fault when it is due."""
        if not self.counting or not filename.endswith(_COUNTED_SUFFIXES):
            return
        with self._lock:
            self.steps.append((op, Path(filename).name))
            n = len(self.steps)
            due = self.fail_at is not None and (
                n == self.fail_at or (self.sticky and n > self.fail_at)
            )
            if due:
                self.fired += 1
        if due:
            raise FAULTS[self.kind](f"faultvfs: injected {self.kind} at step {n} ({op})")

    def xOpen(self, name: Any, flags: list[int]) -> FaultFile:
        return FaultFile(self, name, flags)


class FaultFile(apsw.VFSFile):
    """A file of the default VFS whose writes, syncs and truncations go through the plan."""

    def __init__(self, vfs: FaultVFS, name: Any, flags: list[int]) -> None:
        self._vfs = vfs
        self._filename = name if isinstance(name, str) else str(name.filename())
        super().__init__(vfs.base, name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        self._vfs.step("write", self._filename)
        super().xWrite(data, offset)

    def xSync(self, flags: int) -> None:
        self._vfs.step("sync", self._filename)
        super().xSync(flags)

    def xTruncate(self, newsize: int) -> None:
        self._vfs.step("truncate", self._filename)
        super().xTruncate(newsize)


def open_faulty_node(root: Path, vfs: FaultVFS) -> Node:
    """The node of the chain in ``root`` over a store opened through ``vfs``, started
    (``chaindir.open_node``, with single-process signature checks)."""
    return open_node(root, vfs=vfs.name, verifier=SignatureVerifier(workers=1))


__all__ = ["FAULTS", "FaultFile", "FaultVFS", "open_faulty_node"]
