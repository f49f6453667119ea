"""The ingest workload over HTTP: the node's own API (uvicorn on 127.0.0.1), real clients.

The clients run in a separate process (``httpx``, one thread per client) so that their work
does not share the node process's interpreter lock; the server runs in the node's process, as
``carechain run`` does. Two shapes:

* batch: ``POST /v1/transactions`` with ``application/x-ndjson`` bodies of ``batch``
  envelopes, ``wait=true`` (the response comes after the commit), ``clients`` at once;
* single: one envelope per request (``application/json``), ``clients`` at once.

Only requests answered 200 (every transaction committed) count.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carechain.node.node import Node
from carechain.testing.bench.ingest import latency_summary, receipt_counts


@contextmanager
def serve(node: Node, data_dir: Path | None = None) -> Iterator[str]:
    """Serve ``node``'s API on a free loopback port for the ``with`` block; yields the URL."""
    import uvicorn

    from carechain.api import create_app
    from carechain.testing.cluster import free_port

    port = free_port()
    app = create_app(node, data_dir=data_dir)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the bench API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _post_all(
    url: str, bodies: list[bytes], media: str, clients: int
) -> tuple[list[float], dict[int, int], float]:
    """Client process: post every body (``clients`` threads); latencies of 200s, statuses."""
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    cursor = iter(bodies)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    body = next(cursor, None)
                if body is None:
                    return
                t = time.perf_counter()
                resp = http.post(
                    "/v1/transactions",
                    params={"wait": "true", "timeout": "60"},
                    content=body,
                    headers={"content-type": media},
                )
                dt = time.perf_counter() - t
                with lock:
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                    if resp.status_code == 200:
                        latencies.append(dt)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, statuses, time.perf_counter() - t0


def http_ingest(
    node: Node, url: str, raws: list[bytes], *, batch: int, clients: int
) -> dict[str, Any]:
    """Submit ``raws`` over HTTP; ``batch`` 1 sends one envelope per request as JSON."""
    if batch == 1:
        bodies, media = list(raws), "application/json"
    else:
        bodies = [b"\n".join(raws[i : i + batch]) + b"\n" for i in range(0, len(raws), batch)]
        media = "application/x-ndjson"
    log0 = node.head.header.log_size
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        latencies, statuses, elapsed = pool.submit(_post_all, url, bodies, media, clients).result()
    committed = node.head.header.log_size - log0
    return {
        "txs": len(raws),
        "committed": committed,
        "batch": batch,
        "clients": clients,
        "requests": len(bodies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(elapsed, 3),
        "committed_tx_per_s": round(committed / elapsed, 1),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        **latency_summary(latencies),
        "receipts": receipt_counts(node, log0),
    }
