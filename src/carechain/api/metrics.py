"""Prometheus text exposition (format 0.0.4) without a client library, and the HTTP counter.

Invariants: counters only grow and are updated under one lock; label values are escaped as
the format requires (backslash, double quote, newline); the ``route`` label is the matched
route *template* (``/v1/transactions/{tx_id}``) or ``unmatched``, so label cardinality stays
bounded whatever paths clients send.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carechain.node.node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


class Metrics:
    """The API's counters (node gauges are read at scrape time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tx_submitted = 0
        self.tx_rejected: Counter[str] = Counter()
        self.http_requests: Counter[tuple[str, str]] = Counter()

    def submitted(self, n: int) -> None:
        """``n`` transactions were accepted into the mempool."""
        with self._lock:
            self.tx_submitted += n

    def rejected(self, code: str, n: int = 1) -> None:
        """``n`` transactions were rejected (at submission, or in a committed receipt)."""
        with self._lock:
            self.tx_rejected[code] += n

    def request(self, route: str, status: int) -> None:
        """One HTTP request finished."""
        with self._lock:
            self.http_requests[(route, str(status))] += 1

    def render(self, node: Node) -> str:
        """The exposition text of every metric."""
        height = node.store.head_height() or 0
        with self._lock:
            submitted = self.tx_submitted
            rejected = sorted(self.tx_rejected.items())
            requests = sorted(self.http_requests.items())
        lines = [
            "# HELP carechain_height Height of the newest committed block.",
            "# TYPE carechain_height gauge",
            f"carechain_height {height}",
            "# HELP carechain_log_size Number of transactions in the ledger log.",
            "# TYPE carechain_log_size gauge",
            f"carechain_log_size {node.store.log_size()}",
            "# HELP carechain_mempool_txs Verified transactions waiting for a block.",
            "# TYPE carechain_mempool_txs gauge",
            f"carechain_mempool_txs {len(node.mempool)}",
            "# HELP carechain_up 1 while the node commits blocks, 0 after a fatal error.",
            "# TYPE carechain_up gauge",
            f"carechain_up {0 if node.failed is not None else 1}",
            "# HELP carechain_uptime_seconds Seconds since the node opened its chain.",
            "# TYPE carechain_uptime_seconds gauge",
            f"carechain_uptime_seconds {time.monotonic() - node.started_at:.3f}",
            "# HELP carechain_tx_submitted_total Transactions accepted into the mempool.",
            "# TYPE carechain_tx_submitted_total counter",
            f"carechain_tx_submitted_total {submitted}",
            "# HELP carechain_tx_rejected_total Transactions rejected, by error or receipt code.",
            "# TYPE carechain_tx_rejected_total counter",
            *(
                f"carechain_tx_rejected_total{_labels([('code', code)])} {n}"
                for code, n in rejected
            ),
            "# HELP carechain_http_requests_total HTTP requests by route template and status.",
            "# TYPE carechain_http_requests_total counter",
            *(
                f"carechain_http_requests_total{_labels([('route', r), ('status', s)])} {n}"
                for (r, s), n in requests
            ),
        ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template and response status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                path = "/static" if scope.get("path", "").startswith("/static/") else "unmatched"
            self.metrics.request(path, status)


__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]
