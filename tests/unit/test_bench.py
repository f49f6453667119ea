"""The bench suite's pieces: the mix, the ratio and target arithmetic, percentiles, proofs.

No timing is asserted anywhere: only that figures are computed from what was measured.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from carechain.crypto.signatures import generate_key
from carechain.errors import ProofError
from carechain.ledger.tx import parse_envelope
from carechain.merkle import verify_inclusion
from carechain.testing.bench import SIZES, WORKLOADS, BenchResult, evaluate, run_bench
from carechain.testing.bench.ingest import latency_summary, percentile
from carechain.testing.bench.mix import CYCLE, PATIENT_CYCLE, World, mix_tx, presign_mix
from carechain.testing.bench.proofs import build_log, proofs_workload


def _world(alg: str = "ed25519") -> World:
    return World(
        chain="bench-chain",
        doctor=generate_key(),
        manufacturer=generate_key(),
        patients=tuple((f"pt-{i:02d}", generate_key(alg)) for i in range(3)),
        alg=alg,
    )


def test_mix_cycles_through_the_issue_kinds_with_valid_envelopes() -> None:
    world = _world()
    txs = [parse_envelope(mix_tx(world, i, 1_700_000_000_000)) for i in range(len(CYCLE))]
    assert [t.body.kind for t in txs] == list(CYCLE)
    assert {k.split(".")[0] for k in CYCLE} == {
        "identity", "consent", "records", "prescriptions", "supply",
    }  # fmt: skip
    assert len({t.tx_id for t in txs}) == len(txs)
    senders = {t.body.kind: t.body.sender for t in txs}
    assert senders["records.anchor@1"] == senders["prescriptions.issue@1"] == "seoul-general.dr-kim"
    assert senders["supply.capture@1"] == "medipharm.admin"


def test_presigned_mix_in_order_and_distinct() -> None:
    world = _world()
    raws = presign_mix(world, 25, 1_700_000_000_000, start=5)
    kinds = [parse_envelope(r).body.kind for r in raws]
    assert kinds == [CYCLE[i % len(CYCLE)] for i in range(5, 30)]
    assert len(set(raws)) == 25


def test_ml_dsa_cycle_is_signed_by_patients_only() -> None:
    world = replace(_world("ml-dsa-65"), kinds=PATIENT_CYCLE)
    txs = [parse_envelope(mix_tx(world, i, 1)) for i in range(4)]
    assert {s.alg for t in txs for s in t.body.signers} == {"ml-dsa-65"}


def test_percentiles() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 100.0
    assert percentile([], 0.5) == 0.0
    assert latency_summary([0.001, 0.002])["latency_max_ms"] == 2.0


def _result(ingest: float, half_p99: float) -> BenchResult:
    r = BenchResult()
    r.floors = {
        "ed25519_verify_1core": 20_000.0, "ed25519_verify_allcores": 40_000.0,
        "mldsa65_verify_1core": 5_000.0, "mldsa65_verify_allcores": 10_000.0,
    }  # fmt: skip
    r.workloads = {
        "ingest": {"committed_tx_per_s": ingest},
        "ingest_half": {"latency_p99_ms": half_p99},
        "http_batch": {"committed_tx_per_s": ingest * 0.8},
        "verify": {"tx_per_s": 10_000.0},
        "mldsa_ingest": {"committed_tx_per_s": 6_000.0},
        "consortium": {"single": {"tx_per_s": 100.0}, "consortium": {"tx_per_s": 20.0}},
    }
    evaluate(r)
    return r


def test_targets_are_ratios_to_the_floors_of_the_run() -> None:
    r = _result(ingest=16_000.0, half_p99=20.0)
    assert r.ratios["ingest_per_allcore_verify"] == 0.4
    assert r.ratios["http_batch_per_inprocess"] == 0.8
    met = {t["figure"]: t["met"] for t in r.targets}
    assert len(r.targets) == 11
    assert met["in-process committed tx/s / all-core verify floor"] is True
    assert met["ML-DSA-65 ingest / ML-DSA-65 all-core verify floor"] is True
    assert met["commit latency at half load, p99 ms"] is True
    assert met["3-node consortium / single node"] is False  # 0.2 < 0.25
    assert met["verify from genesis tx/s / all-core verify floor"] is False  # 0.25 < 0.8
    assert met["peak RSS over the big ingest, MB"] is None  # not run


def test_a_missed_target_is_reported_missed() -> None:  # negative control of the above
    r = _result(ingest=10_000.0, half_p99=80.0)
    met = {t["figure"]: t["met"] for t in r.targets}
    assert met["in-process committed tx/s / all-core verify floor"] is False
    assert met["commit latency at half load, p99 ms"] is False


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        run_bench(quick=True, only=("nope",))
    assert set(WORKLOADS) >= {"ingest", "proofs", "rss", "consortium"}
    assert all(full >= quick for full, quick in SIZES.values())
    assert SIZES["proof_log"][0] >= 1_000_000 and SIZES["rss"][0] >= 1_000_000


def test_proofs_on_a_small_synthetic_log(tmp_path: Path) -> None:
    out = proofs_workload(tmp_path, size=1_000, inclusions=50, consistencies=20)
    assert out["log_size"] == 1_000 and out["inclusion_proofs"] == 50
    assert out["synthetic_log"] is True
    for key in ("inclusion_served_per_s", "inclusion_served_per_s_cold",
                "inclusion_served_per_s_repeat"):  # fmt: skip
        assert out[key] > 0
    with pytest.raises(ValueError):  # negative control: not enough distinct leaves to ask
        proofs_workload(tmp_path / "small", size=60, inclusions=50, consistencies=1)


def test_synthetic_log_proofs_verify_and_a_corrupted_one_does_not(tmp_path: Path) -> None:
    from carechain.api import queries
    from carechain.testing.bench.proofs import _envelope, _StoreOnly

    store = build_log(tmp_path / "p.sqlite", 300)
    try:
        node = cast(Any, _StoreOnly.of(store))
        p = queries.prove_inclusion(node, hashlib.sha256(_envelope(123)).digest(), None)
        leaf, root = bytes.fromhex(p.leaf_hash), bytes.fromhex(p.root)
        proof = [bytes.fromhex(h) for h in p.proof]
        verify_inclusion(leaf, p.leaf_index, p.tree_size, proof, root)
        proof[0] = bytes(32)
        with pytest.raises(ProofError):  # negative control
            verify_inclusion(leaf, p.leaf_index, p.tree_size, proof, root)
    finally:
        store.close()
