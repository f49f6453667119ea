"""Floors of this machine, measured first in every bench run (the figures hold as ratios).

* ``ed25519_verify_1core`` / ``ed25519_verify_allcores``: pynacl (libsodium
  ``crypto_sign_open``) verifications per second in one process / one process per core;
* ``mldsa65_verify_1core`` / ``mldsa65_verify_allcores``: ML-DSA-65 (cryptography);
* ``sha256_64b``: SHA-256 of 64-byte inputs per second;
* ``sqlite_rows_batched``: rows per second inserted 1000 per transaction, WAL,
  ``synchronous=FULL`` (apsw, the store's SQLite).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import apsw
import nacl.signing

Progress = Callable[[str, int, int], None]


def _ed25519_verify_loop(n: int) -> float:
    sk = nacl.signing.SigningKey(b"\x01" * 32)
    vk = sk.verify_key
    msgs = [sk.sign(i.to_bytes(8, "big") * 8) for i in range(256)]
    t0 = time.perf_counter()
    for i in range(n):
        vk.verify(msgs[i & 255])
    return n / (time.perf_counter() - t0)


def _mldsa_verify_loop(n: int) -> float:
    from carechain.crypto.signatures import generate_key
    from carechain.crypto.signatures.ml_dsa import MLDSA65

    key = generate_key("ml-dsa-65")
    pub, msg = key.public, b"carechain bench message"
    sig = key.sign(msg)
    scheme = MLDSA65()
    t0 = time.perf_counter()
    for _ in range(n):
        scheme.check(pub, msg, sig)
    return n / (time.perf_counter() - t0)


def _sha256_rate(n: int) -> float:
    data = b"\x07" * 64
    sha = hashlib.sha256
    t0 = time.perf_counter()
    for _ in range(n):
        sha(data).digest()
    return n / (time.perf_counter() - t0)


def _sqlite_rate(rows: int, directory: Path) -> float:
    conn = apsw.Connection(str(directory / "floor.sqlite"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    payload = os.urandom(300)
    t0 = time.perf_counter()
    for start in range(0, rows, 1000):
        with conn:
            conn.executemany(
                "INSERT INTO t VALUES (?, ?)",
                ((os.urandom(32), payload) for _ in range(min(1000, rows - start))),
            )
    rate = rows / (time.perf_counter() - t0)
    conn.close()
    (directory / "floor.sqlite").unlink(missing_ok=True)
    return rate


def _all_cores(fn: Callable[[int], float], n: int, cores: int) -> float:
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        list(pool.map(fn, [max(1, n // 50)] * cores))  # warm the workers
        t0 = time.perf_counter()
        list(pool.map(fn, [n] * cores))
        return n * cores / (time.perf_counter() - t0)


def measure_floors(
    *, quick: bool, workdir: Path, progress: Progress | None = None
) -> dict[str, float]:
    """The machine's floors for this run."""
    cores = os.cpu_count() or 1
    n = 5_000 if quick else 40_000
    m = 300 if quick else 4_000
    report = progress or (lambda *_: None)
    steps: list[tuple[str, Callable[[], float]]] = [
        ("ed25519_verify_1core", lambda: _ed25519_verify_loop(n)),
        ("ed25519_verify_allcores", lambda: _all_cores(_ed25519_verify_loop, n, cores)),
        ("mldsa65_verify_1core", lambda: _mldsa_verify_loop(m)),
        ("mldsa65_verify_allcores", lambda: _all_cores(_mldsa_verify_loop, m, cores)),
        ("sha256_64b", lambda: _sha256_rate(200_000 if quick else 2_000_000)),
        ("sqlite_rows_batched", lambda: _sqlite_rate(20_000 if quick else 200_000, workdir)),
    ]
    floors: dict[str, float] = {}
    for i, (name, fn) in enumerate(steps):
        report(f"floor {name}", i, len(steps))
        floors[name] = fn()
    return floors
