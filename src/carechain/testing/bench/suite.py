"""``carechain bench``: the floors, the nine workloads, and their ratios to the floors.

Every figure is measured in one run on one machine; the targets (issue 8) are ratios to the
floors of the same run, or absolute where the issue says so. Sizes (full / ``--quick``):

==========================  ===================================================  ============
workload                    what                                                 full / quick
==========================  ===================================================  ============
``ingest``                  in-process mix, 2 clients x batches of 500           100k / 3k tx
``ingest_half``             same node, paced at half the measured peak,          40k / 1.5k
                            batches of 50 (latency from the scheduled send)
``http_batch``              NDJSON batches of 500, 4 clients, wait for commit    40k / 2k
``http_single``             one envelope per request, 8 clients                  3k / 200
``fhir_reads``              audited FHIR read, 1 client then 8 clients           1k+2k / 50+100
``proofs``                  synthetic log; inclusion / consistency proofs        1M leaves /
                            served and SDK-verified                              20k leaves
``verify``                  ``verify_store`` from genesis of the ingest chain    all of it
``mldsa_ingest``            patients with ML-DSA-65 keys (register + grant)      20k / 400
``epcis_capture``           one commissioning event of N EPCs                    10k / 1k EPC
``consortium``              3 nodes on etcd vs 1 node, one tx per request        1.5k / 150
``rss``                     peak RSS of a node process ingesting the mix in      1M / 5k tx
                            segments of 100k (signing between segments)
``public``                  proof-of-work chain, 2 clients, one tx per block     2k / 100 tx
                            (opt-in: ``--only public``; ``bench/public.py``)
==========================  ===================================================  ============
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import apsw

from carechain.testing.bench.floors import measure_floors
from carechain.testing.bench.ingest import (
    BenchNode,
    RssWatch,
    ingest_full,
    ingest_paced,
    open_bench_node,
)
from carechain.testing.bench.mix import PATIENT_CYCLE, World, presign_mix

Progress = Callable[[str, int, int], None]

WORKLOADS = (
    "ingest",
    "ingest_half",
    "http_batch",
    "http_single",
    "verify",
    "fhir_reads",
    "proofs",
    "mldsa_ingest",
    "epcis_capture",
    "consortium",
    "rss",
    "public",
)
"""Every workload, in the order they run (``ingest_half``, ``http_*`` and ``verify`` run on
the ``ingest`` chain, so they imply it)."""
OPT_IN = ("public",)
"""Workloads that run only when named in ``--only`` (the default run's shape stays fixed)."""

SIZES: dict[str, tuple[int, int]] = {
    "patients": (5_000, 100),
    "doctors": (200, 10),
    "ingest": (100_000, 3_000),
    "ingest_half": (40_000, 1_500),
    "http_batch": (40_000, 2_000),
    "http_single": (3_000, 200),
    "fhir_reads": (1_000, 50),
    "proof_log": (1_000_000, 20_000),
    "proof_inclusions": (20_000, 500),
    "proof_consistencies": (5_000, 200),
    "mldsa_ingest": (20_000, 400),
    "epcis_epcs": (10_000, 1_000),
    "consortium": (1_500, 150),
    "rss": (1_000_000, 5_000),
    "public": (2_000, 100),
}
"""Full and quick size of each workload."""

RSS_SEGMENT = 100_000


@dataclass(slots=True)
class BenchResult:
    """Everything one bench run measured."""

    machine: dict[str, Any] = field(default_factory=dict)
    """Cores, memory, versions, load average before and after."""
    floors: dict[str, float] = field(default_factory=dict)
    """Floor rates per second."""
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each workload's figures."""
    ratios: dict[str, float] = field(default_factory=dict)
    """Workload figures divided by floors (or by each other) of the same run."""
    targets: list[dict[str, Any]] = field(default_factory=list)
    """Each target of issue 8: figure, value, target, met."""

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return {
            "floors": self.floors,
            "machine": self.machine,
            "ratios": self.ratios,
            "targets": self.targets,
            "workloads": self.workloads,
        }


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "cores": os.cpu_count() or 1,
        "cpu": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": apsw.sqlite_lib_version(),
        "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- workloads in a child process (the RSS figure) ---------------------------------------------

_CHILD: dict[str, Any] = {}


def _rss_open(workdir: Path, patients: int, doctors: int) -> World:
    bench = open_bench_node(workdir, patients=patients, doctors=doctors, name="rss-chain")
    _CHILD["bench"] = bench
    _CHILD["watch"] = RssWatch(bench.node)
    return bench.world


def _rss_ingest(raws: list[bytes]) -> int:
    bench: BenchNode = _CHILD["bench"]
    return int(ingest_full(bench.node, raws, batch=500, clients=2)["committed"])


def _rss_close() -> dict[str, Any]:
    bench: BenchNode = _CHILD.pop("bench")
    watch: RssWatch = _CHILD.pop("watch")
    out = watch.summary()
    bench.close()
    return out


def run_rss(
    workdir: Path, txs: int, patients: int, doctors: int, progress: Progress | None
) -> dict[str, Any]:
    """Peak RSS of a node process over ``txs`` mixed transactions (segments of 100k signed in
    this process between segments, each fresh within the transaction window)."""
    import multiprocessing

    from carechain.node.node import now_ms

    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
        world = child.submit(_rss_open, workdir, patients, doctors).result()
        done = 0
        ingest_s = 0.0
        while done < txs:
            n = min(RSS_SEGMENT, txs - done)
            raws = presign_mix(world, n, now_ms(), start=done)
            t0 = time.perf_counter()
            child.submit(_rss_ingest, raws).result()
            ingest_s += time.perf_counter() - t0
            done += n
            if progress is not None:
                progress("rss ingest", done, txs)
        out = child.submit(_rss_close).result()
    out["txs"] = txs
    out["ingest_seconds"] = round(ingest_s, 2)
    out["committed_tx_per_s"] = round(out["committed"] / ingest_s, 1) if ingest_s else 0.0
    return out


# -- the run ---------------------------------------------------------------------------------


def _verify(bench: BenchNode) -> dict[str, Any]:
    from carechain.node.chaindir import ChainPaths, read_genesis
    from carechain.node.sigpool import SignatureVerifier
    from carechain.node.verify import verify_store
    from carechain.storage.sqlite import SQLiteStore

    store = SQLiteStore(ChainPaths(bench.root).ledger)
    verifier = SignatureVerifier()
    try:
        verifier.warm_up()
        t0 = time.perf_counter()
        report = verify_store(store, read_genesis(bench.root), verifier=verifier)
        elapsed = time.perf_counter() - t0
        txs = store.log_size()
    finally:
        verifier.close()
        store.close()
    return {
        "blocks": report.chain.blocks,
        "txs": txs,
        "seconds": round(elapsed, 3),
        "tx_per_s": round(txs / elapsed, 1),
    }


def _target(out: list[dict[str, Any]], figure: str, value: float | None, op: str,
            want: float) -> None:  # fmt: skip
    met = None if value is None else (value >= want if op == ">=" else value <= want)
    out.append({"figure": figure, "value": value, "target": f"{op} {want:g}", "met": met})


def _get(d: dict[str, Any], *path: str) -> float | None:
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return float(cur) if isinstance(cur, int | float) else None


def evaluate(result: BenchResult) -> None:
    """Fill ``result.ratios`` and ``result.targets`` from its floors and workloads."""
    f, w = result.floors, result.workloads
    ratios: dict[str, float] = {}

    def ratio(name: str, num: float | None, den: float | None) -> float | None:
        if num is None or not den:
            return None
        ratios[name] = round(num / den, 4)
        return ratios[name]

    ed_all = f.get("ed25519_verify_allcores")
    ingest = _get(w, "ingest", "committed_tx_per_s")
    r_ingest = ratio("ingest_per_allcore_verify", ingest, ed_all)
    ratio("ingest_per_1core_verify", ingest, f.get("ed25519_verify_1core"))
    ratio("allcore_per_1core_verify", ed_all, f.get("ed25519_verify_1core"))
    r_http = ratio("http_batch_per_inprocess", _get(w, "http_batch", "committed_tx_per_s"), ingest)
    ratio("http_single_per_inprocess", _get(w, "http_single", "committed_tx_per_s"), ingest)
    r_verify = ratio("verify_per_allcore_verify", _get(w, "verify", "tx_per_s"), ed_all)
    r_mldsa = ratio(
        "mldsa_ingest_per_mldsa_allcore_verify",
        _get(w, "mldsa_ingest", "committed_tx_per_s"),
        f.get("mldsa65_verify_allcores"),
    )
    r_cons = ratio(
        "consortium_per_single_node",
        _get(w, "consortium", "consortium", "tx_per_s"),
        _get(w, "consortium", "single", "tx_per_s"),
    )
    t: list[dict[str, Any]] = []
    _target(t, "in-process committed tx/s / all-core verify floor", r_ingest, ">=", 0.35)
    _target(t, "HTTP batch ingest / in-process ingest", r_http, ">=", 0.7)
    _target(t, "verify from genesis tx/s / all-core verify floor", r_verify, ">=", 0.8)
    _target(t, "ML-DSA-65 ingest / ML-DSA-65 all-core verify floor", r_mldsa, ">=", 0.5)
    _target(t, "inclusion proofs served per s (1M log, after the first pass)",
            _get(w, "proofs", "inclusion_served_per_s"), ">=", 20_000)  # fmt: skip
    _target(t, "SDK inclusion verifications per s",
            _get(w, "proofs", "sdk_inclusion_verified_per_s"), ">=", 50_000)  # fmt: skip
    _target(t, "audited FHIR read, one client, p99 ms",
            _get(w, "fhir_reads", "one_client", "latency_p99_ms"), "<=", 10)  # fmt: skip
    _target(t, "audited FHIR reads per s, concurrent clients",
            _get(w, "fhir_reads", "concurrent", "reads_per_s"), ">=", 1000)  # fmt: skip
    _target(t, "commit latency at half load, p99 ms",
            _get(w, "ingest_half", "latency_p99_ms"), "<=", 50)  # fmt: skip
    _target(t, "3-node consortium / single node", r_cons, ">=", 0.25)
    _target(t, "peak RSS over the big ingest, MB", _get(w, "rss", "rss_peak_mb"), "<=", 500)
    result.ratios = ratios
    result.targets = t


def run_bench(
    *,
    quick: bool,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    note: str = "",
    progress: Progress | None = None,
) -> BenchResult:
    """Floors, then the selected workloads (all by default); see the module docstring."""
    unknown = set(only) | set(skip)
    unknown -= set(WORKLOADS)
    if unknown:
        raise ValueError(f"unknown workload(s) {sorted(unknown)}; known: {', '.join(WORKLOADS)}")
    chosen = [w for w in WORKLOADS if (w in only if only else w not in OPT_IN) and w not in skip]
    size = {k: v[1] if quick else v[0] for k, v in SIZES.items()}
    report = progress or (lambda *_: None)
    result = BenchResult(machine=_machine())
    result.machine["quick"] = quick
    result.machine["note"] = note
    loads: list[float] = []
    stop = threading.Event()

    def sample_load() -> None:  # the machine may be shared: say how busy it was
        while not stop.wait(5.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample_load, name="bench-load", daemon=True)
    sampler.start()
    try:
        _run_selected(quick, chosen, size, result, report, progress)
    finally:
        stop.set()
        sampler.join()
    result.machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if loads:
        result.machine["loadavg_1min_during"] = {
            "min": round(min(loads), 2),
            "mean": round(sum(loads) / len(loads), 2),
            "max": round(max(loads), 2),
            "samples": len(loads),
        }
    evaluate(result)
    return result


def _run_selected(
    quick: bool,
    chosen: list[str],
    size: dict[str, int],
    result: BenchResult,
    report: Progress,
    progress: Progress | None,
) -> None:
    w = result.workloads
    with tempfile.TemporaryDirectory(prefix="carechain-bench-") as tmp:
        work = Path(tmp)
        result.floors = measure_floors(quick=quick, workdir=work, progress=progress)
        on_ingest_chain = {"ingest", "ingest_half", "http_batch", "http_single", "verify"}
        if on_ingest_chain & set(chosen):
            _ingest_chain(work, chosen, size, w, report)
        if "fhir_reads" in chosen:
            report("fhir reads", 0, 1)
            w["fhir_reads"] = _fhir_reads(work, size["fhir_reads"])
        if "proofs" in chosen:
            report("proofs (building the log)", 0, 1)
            from carechain.testing.bench.proofs import proofs_workload

            w["proofs"] = proofs_workload(
                work,
                size=size["proof_log"],
                inclusions=size["proof_inclusions"],
                consistencies=size["proof_consistencies"],
            )
        if "mldsa_ingest" in chosen:
            report("ml-dsa-65 ingest", 0, 1)
            w["mldsa_ingest"] = _mldsa(work, size)
        if "epcis_capture" in chosen:
            report("epcis capture", 0, 1)
            from carechain.node.supply.bench import capture_benchmark

            w["epcis_capture"] = capture_benchmark(size["epcis_epcs"], root=work)
        if "consortium" in chosen:
            report("consortium", 0, 1)
            w["consortium"] = _consortium(work, size["consortium"])
        if "public" in chosen:
            report("public chain (proof of work)", 0, 1)
            from carechain.testing.bench.public import public_workload

            w["public"] = public_workload(work, size["public"], quick=quick, floors=result.floors)
        if "rss" in chosen:
            w["rss"] = run_rss(work, size["rss"], size["patients"], size["doctors"], progress)


def _ingest_chain(
    work: Path, chosen: list[str], size: dict[str, int], w: dict[str, Any], report: Progress
) -> None:
    from carechain.node.node import now_ms

    report("setting up the ingest chain", 0, 1)
    bench = open_bench_node(work, patients=size["patients"], doctors=size["doctors"])
    try:
        world, start = bench.world, 0

        def signed(n: int) -> list[bytes]:
            nonlocal start
            report("pre-signing", 0, n)
            raws = presign_mix(world, n, now_ms(), start=start)
            start += n
            return raws

        if "ingest" in chosen:
            w["ingest"] = ingest_full(
                bench.node, signed(size["ingest"]), batch=500, clients=2, progress=report
            )
        if "ingest_half" in chosen:
            peak = _get(w, "ingest", "committed_tx_per_s") or 2_000.0
            w["ingest_half"] = ingest_paced(
                bench.node, signed(size["ingest_half"]), rate=peak / 2, batch=50, progress=report
            )
        if {"http_batch", "http_single"} & set(chosen):
            from carechain.testing.bench.http import http_ingest, serve

            with serve(bench.node) as url:
                if "http_batch" in chosen:
                    report("http batch ingest", 0, 1)
                    w["http_batch"] = http_ingest(
                        bench.node, url, signed(size["http_batch"]), batch=500, clients=4
                    )
                if "http_single" in chosen:
                    report("http single-tx ingest", 0, 1)
                    w["http_single"] = http_ingest(
                        bench.node, url, signed(size["http_single"]), batch=1, clients=8
                    )
    finally:
        bench.close()
    if "verify" in chosen:
        report("verify from genesis", 0, 1)
        w["verify"] = _verify(bench)


def _fhir_reads(work: Path, reads: int) -> dict[str, Any]:
    from carechain.contracts.identity import patient_account_id
    from carechain.crypto.keystore import Keyring
    from carechain.node.chaindir import DEMO_PASSWORD
    from carechain.testing.bench.http import serve
    from carechain.testing.bench.reads import fhir_reads

    bench = open_bench_node(work, patients=0, name="reads-chain")
    try:
        patient = patient_account_id(Keyring(bench.root).load("patient-1", DEMO_PASSWORD).kid)
        with serve(bench.node, data_dir=bench.root) as url:
            return fhir_reads(url, patient, reads=reads, clients=8)
    finally:
        bench.close()


def _mldsa(work: Path, size: dict[str, int]) -> dict[str, Any]:
    from carechain.node.node import now_ms

    patients = max(50, size["patients"] // 10)
    bench = open_bench_node(work, patients=patients, alg="ml-dsa-65", name="mldsa-chain")
    try:
        world = replace(bench.world, kinds=PATIENT_CYCLE)
        raws = presign_mix(world, size["mldsa_ingest"], now_ms())
        out = ingest_full(bench.node, raws, batch=200, clients=2)
    finally:
        bench.close()
    out["patients_registered_before"] = patients
    return out


def _consortium(work: Path, txs: int) -> dict[str, Any]:
    if shutil.which("etcd") is None:
        return {"skipped": "etcd is not installed (Debian etcd-server)"}
    from carechain.testing.cluster import benchmark

    solo, cons = benchmark(work / "consortium", orgs=3, txs=txs, clients=4)

    def fig(r: Any) -> dict[str, Any]:
        return {
            "label": r.label,
            "txs": r.txs,
            "seconds": round(r.seconds, 3),
            "tx_per_s": round(r.tps, 1),
            "latency_p50_ms": round(r.p50_ms, 2),
            "latency_p99_ms": round(r.p99_ms, 2),
        }

    return {"single": fig(solo), "consortium": fig(cons), "shape": "one tx per request, HTTP"}
