"""In-process ingest workloads: the mix (see ``mix.py``) into an embedded node on SQLite.

* :func:`ingest_full`: ``clients`` threads each submit a batch and wait for its commit, then
  the next (closed loop, the node's peak). Committed tx/s and batch commit latency.
* :func:`ingest_paced`: batches sent on a fixed schedule at a given rate (open loop, e.g. half
  of the peak), each from its own thread; latency is measured from the *scheduled* send time
  to the acknowledgement (no coordinated omission).
* :class:`RssWatch`: the resident set size sampled while segments of pre-signed
  transactions go through the node (the 1M-transaction memory figure).

Every transaction is verified, executed, logged and durably committed
(WAL, ``synchronous=FULL``) before its submitter is acknowledged.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from carechain.node.heap import settle_heap, unsettle_heap
from carechain.node.node import Node
from carechain.testing.bench.mix import World, register_doctors, register_patients

Progress = Callable[[str, int, int], None]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p99/max of latencies, in milliseconds."""
    return {
        "latency_p50_ms": round(1000 * percentile(seconds, 0.50), 2),
        "latency_p99_ms": round(1000 * percentile(seconds, 0.99), 2),
        "latency_max_ms": round(1000 * max(seconds, default=0.0), 2),
    }


def rss_pair() -> tuple[float, float]:
    """``(VmRSS, RssAnon)`` of this process in MB, from one read of ``/proc/self/status``:
    all resident pages, and the anonymous part (what the process allocated, without mapped
    file pages: ADR 0013)."""
    found = {"VmRSS": 0.0, "RssAnon": 0.0}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in found:
                found[name] = int(line.split()[1]) / 1024
    return found["VmRSS"], found["RssAnon"]


@dataclass(slots=True)
class BenchNode:
    """A node on a fresh demo chain with the mix's world registered."""

    root: Path
    """Chain directory."""
    node: Node
    """The running node."""
    world: World
    """Who signs the mix."""

    def close(self) -> None:
        """Stop the node and close its store (and give its objects back to the collector)."""
        self.node.stop()
        self.node.store.close()
        unsettle_heap()


def open_bench_node(
    workdir: Path, *, patients: int, doctors: int = 0, alg: str = "ed25519", name: str = "chain"
) -> BenchNode:
    """A demo chain with domain data in ``workdir/name``, ``patients`` and ``doctors``
    registered (untimed)."""
    from carechain.crypto.keystore import Keyring
    from carechain.node.chaindir import DEMO_PASSWORD, init_chain, open_node

    root = workdir / name
    init_chain(root, demo=True, domains=True, scrypt_n=2**10)
    node = open_node(root)
    try:
        ring = Keyring(root)
        node.verifier.warm_up()
        world = World(
            chain=node.genesis.chain,
            doctor=ring.load("dr-kim", DEMO_PASSWORD),
            manufacturer=ring.load("medipharm-admin", DEMO_PASSWORD),
            patients=tuple(register_patients(node, patients, alg)),
            doctors=tuple(
                register_doctors(node, ring.load("seoul-general-admin", DEMO_PASSWORD), doctors)
            ),
            alg=alg,
        )
    except BaseException:
        node.stop()
        node.store.close()
        raise
    settle_heap()  # what `carechain node` does once started (node/heap.py)
    return BenchNode(root=root, node=node, world=world)


def receipt_counts(node: Node, first_log_index: int) -> dict[str, int]:
    """Receipts committed from ``first_log_index`` on, by ``status/code``."""
    counts: Counter[str] = Counter()
    for i in range(first_log_index, node.head.header.log_size):
        raw = node.store.find_receipt(i)
        if raw is not None:
            r = orjson.loads(raw)
            counts[f"{r['status']}/{r['code']}"] += 1
    return dict(sorted(counts.items()))


def ingest_full(
    node: Node,
    raws: list[bytes],
    *,
    batch: int,
    clients: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Closed loop: ``clients`` threads, each submitting ``batch`` and waiting for its commit."""
    batches = [raws[i : i + batch] for i in range(0, len(raws), batch)]
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(batches)
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                b = next(cursor, None)
            if b is None:
                return
            t = time.perf_counter()
            try:
                node.submit_and_wait(b, timeout=300)
            except Exception as exc:  # reported in the result, the run goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - t)
                if progress is not None:
                    progress("ingest", len(latencies) * batch, len(raws))

    h0, log0 = node.head.header.height, node.head.header.log_size
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    committed = node.head.header.log_size - log0
    return {
        "txs": len(raws),
        "committed": committed,
        "batch": batch,
        "clients": clients,
        "blocks": node.head.header.height - h0,
        "seconds": round(elapsed, 3),
        "committed_tx_per_s": round(committed / elapsed, 1),
        "batch_commit_latency_p50_ms": round(1000 * percentile(latencies, 0.5), 2),
        "batch_commit_latency_p99_ms": round(1000 * percentile(latencies, 0.99), 2),
        "receipts": receipt_counts(node, log0),
        "errors": errors[:5],
    }


def ingest_paced(
    node: Node,
    raws: list[bytes],
    *,
    rate: float,
    batch: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Open loop: a batch of ``batch`` every ``batch / rate`` seconds, each from its own thread."""
    batches = [raws[i : i + batch] for i in range(0, len(raws), batch)]
    interval = batch / rate
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def send(b: list[bytes], scheduled: float) -> None:
        try:
            node.submit_and_wait(b, timeout=300)
        except Exception as exc:  # reported in the result
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        done = time.perf_counter()
        with lock:
            latencies.extend([done - scheduled] * len(b))

    log0 = node.head.header.log_size
    threads: list[threading.Thread] = []
    t0 = time.perf_counter()
    for k, b in enumerate(batches):
        scheduled = t0 + k * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=send, args=(b, scheduled))
        th.start()
        threads.append(th)
        if progress is not None:
            progress("ingest (paced)", k * batch, len(raws))
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    committed = node.head.header.log_size - log0
    return {
        "txs": len(raws),
        "committed": committed,
        "offered_tx_per_s": round(rate, 1),
        "batch": batch,
        "seconds": round(elapsed, 3),
        "committed_tx_per_s": round(committed / elapsed, 1),
        **latency_summary(latencies),
        "errors": errors[:5],
    }


class RssWatch:
    """Samples this process's RSS (with the committed count) every 0.25 s while running."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.samples: list[tuple[int, float, float]] = []
        """``(committed, VmRSS MB, RssAnon MB)`` every 0.25 s."""
        self.log0 = node.head.header.log_size
        self.rss0 = rss_pair()[0]
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append((self.node.head.header.log_size - self.log0, *rss_pair()))

    def summary(self) -> dict[str, Any]:
        """Stop sampling; peak and RSS at 10/25/50/75/100 % of the committed transactions."""
        self._stop.set()
        self._thread.join()
        committed = self.node.head.header.log_size - self.log0
        now = rss_pair()
        peak = max((r for _, r, _ in self.samples), default=now[0])
        anon_peak = max((a for _, _, a in self.samples), default=now[1])
        marks = {}
        for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
            at = [r for n, r, _ in self.samples if n <= frac * committed]
            marks[f"rss_at_{int(frac * 100)}pct_mb"] = round(at[-1] if at else self.rss0, 1)
        return {
            "committed": committed,
            "seconds": round(time.perf_counter() - self.t0, 3),
            "rss_start_mb": round(self.rss0, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_anon_peak_mb": round(anon_peak, 1),
            **marks,
            "rss_samples": len(self.samples),
            "rss_median_mb": round(statistics.median([r for _, r, _ in self.samples]), 1)
            if self.samples
            else 0.0,
        }
