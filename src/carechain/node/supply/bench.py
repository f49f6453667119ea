"""The supply benchmark hook: one EPCIS commissioning event with ``n_epcs`` serials, captured
end to end (schema, CBV 2.0 hash, mapping, off-chain store, signature, block, custody rules)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def capture_benchmark(n_epcs: int = 10_000, root: Path | None = None) -> dict[str, Any]:
    """Time the capture of a commissioning event with ``n_epcs`` EPCs on a fresh demo chain.

    Returns ``{"epcs", "doc_bytes", "prepare_s", "capture_s", "epcs_per_s", "status"}``:
    ``prepare_s`` is the edge work alone (parse, schema, hash, map), ``capture_s`` the whole
    capture including the committed block.
    """
    from carechain.crypto.keystore import Keyring
    from carechain.epcis.mapping import commissioning_document, prepare_capture
    from carechain.node.chaindir import DEMO_PASSWORD, init_chain, open_node
    from carechain.node.node import now_ms
    from carechain.node.supply.demo import DEMO_GLNS, DRUG_GTIN, ensure_supply_demo_on
    from carechain.node.supply.service import open_supply_service

    with tempfile.TemporaryDirectory() as tmp:
        data = (root or Path(tmp)) / "bench-supply"
        init_chain(data, demo=True, scrypt_n=2**10)
        node = open_node(data)
        try:
            ensure_supply_demo_on(node, Keyring(data), DEMO_PASSWORD)
            service = open_supply_service(node, None)
            key = Keyring(data).load("medipharm-admin", DEMO_PASSWORD)
            doc = commissioning_document(
                gtin=DRUG_GTIN,
                serials=[f"B{i:08d}" for i in range(n_epcs)],
                lot="BENCH1",
                expiry="2030-12-31",
                time_ms=now_ms() - 1000,
                gln=DEMO_GLNS["medipharm"],
            )
            t0 = time.perf_counter()
            prepare_capture(doc)
            t1 = time.perf_counter()
            out = service.capture(doc, account="medipharm.admin", signer=key)
            t2 = time.perf_counter()
        finally:
            node.stop()
            node.store.close()
    return {
        "capture_s": round(t2 - t1, 3),
        "doc_bytes": len(doc),
        "epcs": n_epcs,
        "epcs_per_s": round(n_epcs / (t2 - t1)),
        "prepare_s": round(t1 - t0, 3),
        "status": out.status,
    }


__all__ = ["capture_benchmark"]
