"""Proofs at a large log: inclusion and consistency proofs served, and SDK verifications.

Building a log of 1,000,000 signed transactions through the node would make this workload
as long as the big ingest, so the log here is **synthetic**, written straight through the
store's commit API: blocks of ``BLOCK`` leaves whose envelopes are distinct filler bytes,
with their tx-id index rows and the RFC 9162 Merkle nodes computed by the node's own
``CompactTree`` (exactly what a committed block stores). It is not a valid chain (headers
are placeholders; ``verify`` would refuse it), but the proof code reads the same tables,
rows and nodes it reads on a real chain of that size.

"Served" is measured at the API's query layer (``api.queries.prove_inclusion`` /
``prove_consistency``: the tx-id lookup, the envelope, the O(log n) node reads and the
response model), one thread, without HTTP framing, in three passes of ``inclusions`` random
leaves each:

* ``inclusion_served_per_s_cold``: the first proofs of a just-opened store, which pay the
  one-time load of the upper tree (``storage/merkle_cache.py``);
* ``inclusion_served_per_s``: the serving rate of a running node: **other** random leaves,
  none asked before, after that first pass (the headline figure, the one the target reads);
* ``inclusion_served_per_s_repeat``: the first pass's leaves asked again (their pages and
  rows recently read).

"SDK verifications" run ``carechain.merkle.verify_inclusion`` / ``verify_consistency`` on the
served proofs.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from carechain.merkle import (
    CompactTree,
    leaf_hash,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from carechain.storage import BlockCommit, StoredBlock
from carechain.storage.sqlite import SQLiteStore

BLOCK = 20_000
"""Leaves per synthetic block."""


@dataclass(frozen=True, slots=True)
class _Header:
    log_size: int
    log_root: bytes


@dataclass(frozen=True, slots=True)
class _Head:
    header: _Header


@dataclass(frozen=True, slots=True)
class _StoreOnly:
    """What the proof queries use of a node: its store and its head's log size and root."""

    store: SQLiteStore
    head: _Head

    @classmethod
    def of(cls, store: SQLiteStore) -> _StoreOnly:
        size = store.log_size()
        return cls(store, _Head(_Header(size, root_at(store, size))))


def _envelope(i: int) -> bytes:
    return b'{"bench":"synthetic leaf","n":%d}' % i


def build_log(path: Path, size: int) -> SQLiteStore:
    """A store holding a synthetic log of ``size`` leaves (see the module docstring)."""
    store = SQLiteStore(path)
    tree = CompactTree()
    for height, start in enumerate(range(0, size, BLOCK)):
        envelopes = tuple(_envelope(i) for i in range(start, min(start + BLOCK, size)))
        nodes = tree.append([leaf_hash(e) for e in envelopes])
        store.commit_block(
            BlockCommit(
                block=StoredBlock(
                    height=height,
                    header=b"synthetic",
                    signature=b"",
                    envelopes=envelopes,
                    receipts=tuple(b"{}" for _ in envelopes),
                ),
                header_hash=hashlib.sha256(b"synthetic block %d" % height).digest(),
                tx_ids=tuple(hashlib.sha256(e).digest() for e in envelopes),
                first_log_index=start,
                merkle_nodes=tuple(nodes),
                state_writes=(),
            )
        )
    return store


def proofs_workload(
    workdir: Path, *, size: int, inclusions: int, consistencies: int, seed: int = 9162
) -> dict[str, Any]:
    """Build the log, then time proofs served and verified."""
    from carechain.api import queries
    from carechain.node.node import Node

    if not 0 < 2 * inclusions <= size:
        raise ValueError(
            f"inclusions: got {inclusions}, want 0 < 2 * inclusions <= size {size} (two passes "
            "of distinct leaves)"
        )
    rng = random.Random(seed)  # noqa: S311 - which leaves to ask for, not a secret
    t0 = time.perf_counter()
    build_log(workdir / "proofs.sqlite", size).close()
    build_s = time.perf_counter() - t0
    store = SQLiteStore(workdir / "proofs.sqlite")  # a node opening its ledger
    try:
        node = cast(Node, _StoreOnly.of(store))
        leaves = rng.sample(range(size), 2 * inclusions)
        ids = [hashlib.sha256(_envelope(i)).digest() for i in leaves]
        first, fresh = ids[:inclusions], ids[inclusions:]
        def timed_pass(tx_ids: list[bytes]) -> tuple[float, list[Any]]:
            t0 = time.perf_counter()
            proofs = [queries.prove_inclusion(node, tx_id, None) for tx_id in tx_ids]
            return time.perf_counter() - t0, proofs

        cold_s, _ = timed_pass(first)
        inc_s, served = timed_pass(fresh)
        repeat_s, _ = timed_pass(first)
        sizes = [rng.randrange(1, size) for _ in range(consistencies)]
        t0 = time.perf_counter()
        cons = [queries.prove_consistency(node, s, None) for s in sizes]
        con_s = time.perf_counter() - t0
    finally:
        store.close()
    inc = [
        (bytes.fromhex(p.leaf_hash), p.leaf_index, p.tree_size,
         [bytes.fromhex(h) for h in p.proof], bytes.fromhex(p.root))
        for p in served
    ]  # fmt: skip
    con = [
        (c.from_, c.to, [bytes.fromhex(h) for h in c.proof],
         bytes.fromhex(c.root1), bytes.fromhex(c.root2))
        for c in cons
    ]  # fmt: skip
    reps = max(1, 50_000 // max(1, len(inc)))
    t0 = time.perf_counter()
    for _ in range(reps):
        for leaf, index, tree_size, proof, root in inc:
            verify_inclusion(leaf, index, tree_size, proof, root)
    inc_v = reps * len(inc) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for size1, size2, proof, root1, root2 in con:
        verify_consistency(size1, size2, proof, root1, root2)
    con_v = len(con) / (time.perf_counter() - t0)
    return {
        "log_size": size,
        "synthetic_log": True,
        "build_seconds": round(build_s, 2),
        "inclusion_proofs": len(served),
        "inclusion_served_per_s": round(len(served) / inc_s, 1),
        "inclusion_served_per_s_cold": round(len(first) / cold_s, 1),
        "inclusion_served_per_s_repeat": round(len(first) / repeat_s, 1),
        "consistency_proofs": len(cons),
        "consistency_served_per_s": round(len(cons) / con_s, 1),
        "mean_inclusion_path": round(sum(len(p.proof) for p in served) / len(served), 1),
        "sdk_inclusion_verified_per_s": round(inc_v, 1),
        "sdk_consistency_verified_per_s": round(con_v, 1),
    }
