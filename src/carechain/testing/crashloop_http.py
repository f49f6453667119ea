"""The crash loop against the real ``carechain node`` process (issue 9 item 1).

The in-process loop (:mod:`carechain.testing.crashloop`) forks node lives from the test
process; this module starts the real server with ``CARECHAIN_FAILPOINTS`` armed (or kills it
from outside), drives the same workload over HTTP, and counts only HTTP 200 answers as
acknowledgements; after every death it runs the same checks (``check_ledger``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from carechain import failpoints
from carechain.crypto.signatures import PrivateKey
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import read_genesis
from carechain.testing.crashloop import (
    LANES,
    LIFE_TIMEOUT_S,
    RANDOM,
    Ack,
    CrashReport,
    Submit,
    Workload,
    check_ledger,
    genesis_chain,
    load_keys,
    run_lane,
    tally,
)

# -- the real HTTP server ----------------------------------------------------------------------

NODE_CMD = (sys.executable, "-c", "from carechain.cli.main import app; app()", "node")
"""``carechain node`` with this interpreter."""
HTTP_POINTS = (
    "storage.commit.during_merkle",
    "node.ack.after_commit",
    "storage.commit.before_commit",
)
"""Failpoints the HTTP lives die at (in turn; the other lives are killed by the harness)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_submit(client: httpx.Client, url: str) -> Submit:
    def submit(txs: list[SignedTx]) -> bool:
        if len(txs) == 1:
            body, media = txs[0].raw, "application/json"
        else:
            body, media = b"\n".join(t.raw for t in txs), "application/x-ndjson"
        try:
            resp = client.post(f"{url}/v1/transactions?timeout=5", content=body,
                               headers={"content-type": media})  # fmt: skip
        except httpx.HTTPError:
            return False
        return resp.status_code == 200  # 202 = not committed yet: no acknowledgement

    return submit


def run_http_crashes(
    template: Path, work: Path, crashes: int, *, seed: int = 1,
    out: Callable[[str], None] | None = None,
) -> CrashReport:  # fmt: skip
    """``crashes`` lives of the real ``carechain node`` process on one copy of ``template``:
    even lives die at the next point of :data:`HTTP_POINTS` (``CARECHAIN_FAILPOINTS``), odd
    ones by the harness's SIGKILL 0.1-0.5 s after ``/healthz`` answers. The harness is the
    client: an acknowledgement is an HTTP 200. Restart-to-ready here is process start to the
    first ``/healthz`` 200 (interpreter start and imports included)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible kill schedule, not a secret
    keys = load_keys(template)
    genesis = read_genesis(template)
    report = CrashReport()
    acked: dict[bytes, Ack] = {}
    root = work / "http-chain"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root)
    for i in range(crashes):
        point = HTTP_POINTS[(i // 2) % len(HTTP_POINTS)] if i % 2 == 0 else ""
        label, how = _http_life(root, keys, point, rng, report, acked, i)
        report.crashes += 1
        report.by_point[label] += 1
        if how != -signal.SIGKILL:
            report.violations.append(f"http life {i} ({label}) exited {how}, not SIGKILL")
        found = check_ledger(root, genesis, list(acked.values()))
        report.acked_checks += len(acked)
        report.violations.extend(f"http crash {i} ({label}): {v}" for v in found)
        if out is not None:
            out(f"  http crash {i} ({label}): {len(acked)} acknowledged so far")
    tally(report, acked)
    return report


def _http_life(
    root: Path, keys: dict[str, PrivateKey], point: str, rng: random.Random,
    report: CrashReport, acked: dict[bytes, Ack], i: int,
) -> tuple[str, int]:  # fmt: skip
    port = _free_port()
    env = {**os.environ, failpoints.ENV: f"{point}=kill@{rng.randint(2, 4)}" if point else ""}
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*NODE_CMD, "--dir", str(root), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    stop = threading.Event()
    lock = threading.Lock()
    threads: list[threading.Thread] = []
    try:
        with httpx.Client(timeout=10) as probe:
            while True:
                if proc.poll() is not None or time.monotonic() - t0 > 60:
                    return (point or RANDOM), proc.wait()
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get(f"{url}/healthz").status_code == 200:
                        break
                time.sleep(0.01)
        report.restart_ms.append((time.monotonic() - t0) * 1000)

        def record(tx: SignedTx, new_kid: str) -> None:
            with lock:
                acked.setdefault(tx.tx_id, Ack(tx.tx_id, tx.body.kind, new_kid))

        work = Workload(genesis_chain(root), keys, rng.getrandbits(32) + i)
        clients = [httpx.Client(timeout=10) for _ in range(LANES)]
        for lane, client in enumerate(clients):
            args = (lane, work, _http_submit(client, url), record, stop)
            threads.append(threading.Thread(target=run_lane, args=args, daemon=True))
        for t in threads:
            t.start()
        if point:
            try:
                code = proc.wait(timeout=LIFE_TIMEOUT_S * 2)
                label = point
            except subprocess.TimeoutExpired:
                proc.kill()
                code, label = proc.wait(), f"unfired:{point}"
        else:
            time.sleep(rng.uniform(0.1, 0.5))
            proc.kill()
            code, label = proc.wait(), RANDOM
        return label, code
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=30)


__all__ = ["HTTP_POINTS", "run_http_crashes"]
