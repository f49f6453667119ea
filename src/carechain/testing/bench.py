"""``carechain bench``: floors of this machine and the node's throughput, measured in one run.

Floors (measured first, in the same process tree):

* ``ed25519_verify_1core`` / ``ed25519_verify_allcores``: pynacl verifications per second;
* ``mldsa65_verify``: ML-DSA-65 verifications per second (cryptography);
* ``sha256_64b``: SHA-256 of 64-byte inputs per second;
* ``sqlite_rows_batched``: rows per second inserted 1000 per transaction, WAL, synchronous=FULL.

Workload (fixed): ``--txs`` pre-signed Ed25519 patient self-registrations (each with its own
fresh key; every transaction is verified, executed, logged and committed durably), submitted in
batches of ``--batch`` by ``--clients`` threads to an embedded node on SQLite. Reported:
committed tx/s, per-batch commit latency p50/p99, and the ratio of committed tx/s to the
all-core verify floor (the physical ceiling is about 0.5: every transaction costs at least one
verification, and the node also hashes, executes and writes).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import nacl.signing

from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.tx import make_tx

Progress = Callable[[str, int, int], None]


def _ed25519_verify_loop(n: int) -> float:
    sk = nacl.signing.SigningKey(b"\x01" * 32)
    vk = sk.verify_key
    msgs = [sk.sign(i.to_bytes(8, "big") * 8) for i in range(256)]
    t0 = time.perf_counter()
    for i in range(n):
        vk.verify(msgs[i & 255])
    return n / (time.perf_counter() - t0)


def _mldsa_verify_rate(n: int) -> float:
    key = generate_key("ml-dsa-65")
    pub, msg = key.public, b"carechain bench message"
    sig = key.sign(msg)
    from carechain.crypto.signatures.ml_dsa import MLDSA65

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
    return rate


@dataclass(slots=True)
class BenchResult:
    """Everything one bench run measured."""

    floors: dict[str, float] = field(default_factory=dict)
    """Floor rates per second."""
    workload: dict[str, Any] = field(default_factory=dict)
    """Workload figures."""
    ratios: dict[str, float] = field(default_factory=dict)
    """Workload figures divided by floors of the same run."""
    machine: dict[str, Any] = field(default_factory=dict)
    """Cores and versions."""

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return {
            "floors": self.floors,
            "machine": self.machine,
            "ratios": self.ratios,
            "workload": self.workload,
        }


def measure_floors(
    *, quick: bool, workdir: Path, progress: Progress | None = None
) -> dict[str, float]:
    """The machine's floors for this run."""
    cores = os.cpu_count() or 1
    n = 5_000 if quick else 40_000
    floors: dict[str, float] = {}
    steps = ("ed25519 1 core", "ed25519 all cores", "ml-dsa-65", "sha-256", "sqlite")
    report = progress or (lambda *_: None)
    report(steps[0], 0, len(steps))
    floors["ed25519_verify_1core"] = _ed25519_verify_loop(n)
    report(steps[1], 1, len(steps))
    with ProcessPoolExecutor(max_workers=cores) as pool:
        list(pool.map(_ed25519_verify_loop, [100] * cores))  # warm the workers
        t0 = time.perf_counter()
        list(pool.map(_ed25519_verify_loop, [n] * cores))
        floors["ed25519_verify_allcores"] = n * cores / (time.perf_counter() - t0)
    report(steps[2], 2, len(steps))
    floors["mldsa65_verify"] = _mldsa_verify_rate(500 if quick else 4_000)
    report(steps[3], 3, len(steps))
    floors["sha256_64b"] = _sha256_rate(200_000 if quick else 2_000_000)
    report(steps[4], 4, len(steps))
    floors["sqlite_rows_batched"] = _sqlite_rate(20_000 if quick else 200_000, workdir)
    report("done", 5, len(steps))
    return floors


def presign(chain: str, count: int, created: int, progress: Progress | None = None) -> list[bytes]:
    """``count`` patient self-registrations, each with a fresh Ed25519 key."""
    from carechain.contracts.identity import patient_account_id

    out = []
    for i in range(count):
        key = generate_key("ed25519")
        tx = make_tx(
            chain=chain,
            kind="identity.register_patient@1",
            sender=patient_account_id(key.kid),
            args={"keys": [{"alg": "ed25519", "pub": b64u_encode(key.public)}]},
            keys=[key],
            created=created,
            nonce=os.urandom(16),
        )
        out.append(tx.raw)
        if progress is not None and i % 1000 == 0:
            progress("pre-signing", i, count)
    return out


def run_ingest(
    *, txs: int, batch: int, clients: int, workdir: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """The in-process ingest workload on a fresh embedded chain."""
    from carechain.node.chaindir import init_chain, open_node
    from carechain.node.node import now_ms

    root = workdir / "chain"
    init_chain(root, scrypt_n=2**10, org_id="bench-hospital", org_name="Bench Hospital")
    node = open_node(root)
    try:
        raws = presign(node.genesis.chain, txs, now_ms(), progress)
        node.verifier.warm_up()
        batches = [raws[i : i + batch] for i in range(0, len(raws), batch)]
        latencies: list[float] = []
        lock = threading.Lock()
        cursor = iter(batches)

        def client() -> None:
            while True:
                with lock:
                    b = next(cursor, None)
                if b is None:
                    return
                t = time.perf_counter()
                node.submit_and_wait(b, timeout=120)
                with lock:
                    latencies.append(time.perf_counter() - t)
                    if progress is not None:
                        progress("ingest", len(latencies) * batch, txs)

        height0 = node.head.header.height
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
        blocks = node.head.header.height - height0
        committed = node.head.header.log_size
    finally:
        node.stop()
        node.store.close()
    latencies.sort()
    return {
        "txs": txs,
        "committed": committed,
        "batch": batch,
        "clients": clients,
        "blocks": blocks,
        "seconds": round(elapsed, 3),
        "committed_tx_per_s": committed / elapsed,
        "batch_latency_p50_ms": 1000 * statistics.median(latencies),
        "batch_latency_p99_ms": 1000
        * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def run_bench(
    *,
    quick: bool,
    txs: int | None = None,
    batch: int = 500,
    clients: int = 2,
    progress: Progress | None = None,
) -> BenchResult:
    """Floors, then the ingest workload; ratios against the floors of this run."""
    import platform

    result = BenchResult()
    result.machine = {
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "sqlite": apsw.sqlite_lib_version(),
    }
    with tempfile.TemporaryDirectory(prefix="carechain-bench-") as tmp:
        work = Path(tmp)
        result.floors = measure_floors(quick=quick, workdir=work, progress=progress)
        result.workload = run_ingest(
            txs=txs or (3_000 if quick else 50_000),
            batch=batch,
            clients=clients,
            workdir=work,
            progress=progress,
        )
    rate = result.workload["committed_tx_per_s"]
    result.ratios = {
        "committed_per_allcore_verify": rate / result.floors["ed25519_verify_allcores"],
        "committed_per_1core_verify": rate / result.floors["ed25519_verify_1core"],
        "allcore_per_1core_verify": result.floors["ed25519_verify_allcores"]
        / result.floors["ed25519_verify_1core"],
    }
    return result
