"""The ``public`` workload: the cost of proof of work on a one-node public chain (ADR 0012).

A fresh public chain (``init_public``: initial difficulty ``bits``, target ``interval_ms``,
retarget every ``retarget_blocks``) mines blocks while ``clients`` threads submit patient
self-registrations one at a time and wait for each commit (so blocks stay small and many).
Reported: blocks mined, hashes per block (mean, and the mean the final difficulty implies),
hashes per second against the SHA-256 floor of the same run, seconds per block against the
target interval, the share of wall time spent mining, committed tx/s, and the difficulty at
each retarget. Opt-in (``carechain bench --only public``): the default run's shape is fixed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.pow import expected_hashes
from carechain.node.chaindir import new_tx, open_node
from carechain.node.miner import init_public
from carechain.testing.chain_driver import FAST_SCRYPT_N

PUBLIC_SETTINGS = {"full": (16, 500, 20), "quick": (8, 200, 10)}
"""``(initial bits, target interval ms, retarget blocks)`` of the full and ``--quick`` runs."""


def public_workload(
    work: Path, txs: int, *, quick: bool, floors: dict[str, float], clients: int = 2
) -> dict[str, Any]:
    """Mine a public chain under ``txs`` single-transaction submissions; figures as JSON."""
    bits, interval_ms, retarget_blocks = PUBLIC_SETTINGS["quick" if quick else "full"]
    root = work / "public-chain"
    init_public(
        root, bits=bits, interval_ms=interval_ms, retarget_blocks=retarget_blocks,
        scrypt_n=FAST_SCRYPT_N,
    )  # fmt: skip
    node = open_node(root)
    try:
        raws = []
        for _ in range(txs):
            key = generate_key("ed25519")
            args = {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}]}
            tx = new_tx(node, "identity.register_patient@1", patient_account_id(key.kid), args,
                        [key])  # fmt: skip
            raws.append(tx.raw)
        errors: list[str] = []

        def client(part: list[bytes]) -> None:
            for raw in part:
                try:
                    node.submit_and_wait([raw], timeout=600)
                except Exception as exc:  # reported, not raised: the figures say how many
                    errors.append(type(exc).__name__)

        threads = [
            threading.Thread(target=client, args=(raws[i::clients],)) for i in range(clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert node.miner is not None
        stats = node.miner.stats
        trace = list(stats.trace)
    finally:
        node.stop()
        node.store.close()
    blocks = max(1, stats.blocks)
    hash_rate = stats.hashes / stats.seconds if stats.seconds > 0 else 0.0
    sha_floor = floors.get("sha256_64b")
    epochs = [(h, b) for h, _, b in trace if (h - 1) % retarget_blocks == 0]
    return {
        "initial_bits": bits,
        "target_interval_ms": interval_ms,
        "retarget_blocks": retarget_blocks,
        "txs": txs,
        "committed": txs - len(errors),
        "errors": len(errors),
        "blocks_mined": stats.blocks,
        "hashes_per_block_mean": round(stats.hashes / blocks, 1),
        "final_bits": round(stats.bits16 / 16, 4),
        "expected_hashes_per_block_at_final_bits": round(expected_hashes(stats.bits16 or 16), 1),
        "hashes_per_s": round(hash_rate, 1),
        "hash_rate_vs_sha256_floor": round(hash_rate / sha_floor, 3) if sha_floor else None,
        "seconds_per_block": round(elapsed / blocks, 4),
        "seconds_per_block_vs_target": round(elapsed / blocks / (interval_ms / 1000), 3),
        "mining_share_of_wall_time": round(stats.seconds / elapsed, 3) if elapsed else None,
        "committed_tx_per_s": round((txs - len(errors)) / elapsed, 1) if elapsed else 0.0,
        "bits_at_each_epoch": [[h, round(b / 16, 4)] for h, b in epochs],
    }


__all__ = ["PUBLIC_SETTINGS", "public_workload"]
