"""The ``etcd`` orderer: consortium ordering on an etcd v3 cluster (Raft, fsync per commit).

Talks to etcd through its v3 JSON gateway (``POST /v3/kv/txn``, ``/v3/kv/range``,
``/v3/watch``, ``/v3/kv/compaction``; keys and values base64) with ``httpx``. Key layout under
``/carechain/<chain>/``::

    b/<sha256(payload) hex>     one ordered batch: MAGIC || proposer time (u64 BE, ms) || payload
    applied/<node>              the newest position <node> durably applied (decimal)
    cosig/<height:016d>/<node>  <node>'s cosigned checkpoint for that height (node/witness.py)
    compacted                   batches at positions <= this value were deleted (decimal)

Invariants:

* The total order is etcd's revision order: a batch's position is the ``create_revision`` of
  its key; every reader ranges by ``create_revision`` ascending, so every node sees the same
  sequence.
* Submission is idempotent: the key is the SHA-256 of the payload and it is written by a
  create-only transaction (``compare create_revision == 0``); a retry after a timeout, or the
  same batch proposed by two nodes, returns the first position and orders nothing twice.
* The proposer's clock time rides in the value; the node turns it into the block time by a
  deterministic rule (``node.node.block_time``), never by trusting it.
* ``forget(upto)`` publishes this node's applied position; batches are deleted (and etcd's
  history compacted) only below the smallest position published by all ``members`` nodes,
  and the boundary is recorded under ``compacted`` so a reader that needs deleted history gets
  an error (``history_compacted``) instead of a silently shorter stream.
* Any failure to reach a quorum (connection refused, timeout, "no leader", "request timed
  out") raises :class:`~carechain.errors.UnavailableError` with code ``no_quorum``; nothing
  is acknowledged on the strength of a submission that raised.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from carechain.errors import UnavailableError, ValidationError
from carechain.ordering.abc import OrderedBatch, Orderer

log = logging.getLogger("carechain.ordering.etcd")

MAGIC = b"CCO1"
"""Version tag at the start of every batch value."""
_HEADER = struct.Struct(">4sQ")
MAX_TXN_OPS = 100
"""etcd's default ``--max-txn-ops`` is 128; stay below it."""
COMPACT_EVERY = 32
"""Positions applied between two compaction attempts."""


def encode_value(timestamp: int, payload: bytes) -> bytes:
    """The stored value of a batch: ``MAGIC || timestamp (u64 BE) || payload``."""
    return _HEADER.pack(MAGIC, timestamp) + payload


def decode_value(value: bytes) -> tuple[int, bytes]:
    """Inverse of :func:`encode_value`; a foreign value decodes as ``(0, b"")`` (no txs)."""
    if len(value) < _HEADER.size or value[:4] != MAGIC:
        return 0, b""
    _, ts = _HEADER.unpack_from(value)
    return int(ts), value[_HEADER.size :]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` covering every key that starts with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _unavailable(message: str) -> UnavailableError:
    return UnavailableError(message, retry_after=2, code="no_quorum")


class EtcdOrderer(Orderer):
    """Orders batches through an etcd v3 cluster (see the module docstring)."""

    kind = "etcd"

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        chain: str,
        node: str,
        members: int = 1,
        timeout: float = 5.0,
        attempt_timeout: float = 2.0,
        clock: Callable[[], int] | None = None,
        peers: Sequence[str] = (),
    ) -> None:
        """``endpoints``: client URLs (``http://127.0.0.1:2379``); ``node``: this node's name
        (its key id) for ``applied/`` and ``cosig/``; ``members``: nodes that must publish an
        applied position before anything is compacted; ``timeout``: total seconds a call may
        take across endpoints; ``attempt_timeout``: seconds per endpoint attempt."""
        if not endpoints:
            raise ValidationError("etcd orderer: want at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = f"/carechain/{chain}/".encode()
        self.node = node
        self.members = members
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._http = httpx.Client(timeout=attempt_timeout)
        self._good = 0
        self._lock = threading.Lock()
        self._last_compact = 0
        self._compact_mark = 0
        self._closed = False
        self.peers: list[str] = list(peers)
        """API URLs of other nodes, to catch up from when history was compacted."""

    # -- keys ------------------------------------------------------------------------------
    def batch_key(self, payload: bytes) -> bytes:
        """The key of a batch: content-addressed, so a retry names the same key."""
        return self.prefix + b"b/" + hashlib.sha256(payload).hexdigest().encode()

    def _key(self, *parts: str) -> bytes:
        return self.prefix + "/".join(parts).encode()

    # -- transport ---------------------------------------------------------------------------
    def call(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """POST ``body`` to ``path`` on a healthy endpoint; UnavailableError(no_quorum) when
        none answers successfully within ``timeout`` (default ``self.timeout``) seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        errors: list[str] = []
        n = len(self.endpoints)
        attempt = 0
        while True:
            with self._lock:
                start = self._good
            url = self.endpoints[(start + attempt) % n]
            remaining = deadline - time.monotonic()
            try:
                resp = self._http.post(
                    url + path,
                    content=orjson.dumps(body),
                    timeout=max(0.05, min(self.attempt_timeout, remaining)),
                )
                data = orjson.loads(resp.content) if resp.content else {}
                if resp.status_code == 200 and "error" not in data:
                    with self._lock:
                        self._good = (start + attempt) % n
                    return data
                errors.append(f"{url}: {data.get('message') or resp.status_code}")
                if "compacted" in str(data.get("message", "")):
                    raise UnavailableError(
                        f"etcd history was compacted: {data.get('message')}",
                        code="history_compacted",
                    )
            except httpx.HTTPError as exc:
                errors.append(f"{url}: {type(exc).__name__}")
            except orjson.JSONDecodeError:
                errors.append(f"{url}: not a JSON answer")
            attempt += 1
            if time.monotonic() >= deadline:
                break
            if attempt % n == 0:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        raise _unavailable(
            "the etcd cluster did not answer with a quorum (nothing was ordered or "
            f"acknowledged): {'; '.join(errors[-n:])}"
        )

    # -- Orderer -----------------------------------------------------------------------------
    def submit(self, payload: bytes) -> int:
        """Create-only txn on the batch key; returns the key's create revision (its position)."""
        key = _b64(self.batch_key(payload))
        value = _b64(encode_value(int(self._clock()), payload))
        data = self.call(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [{"request_put": {"key": key, "value": value}}],
                "failure": [{"request_range": {"key": key, "keys_only": True}}],
            },
        )
        if data.get("succeeded"):
            return int(data["header"]["revision"])
        kvs = data["responses"][0]["response_range"].get("kvs", [])
        if not kvs:  # deleted after compaction between compare and range: order again
            return self.submit(payload)
        return int(kvs[0]["create_revision"])

    def read(self, after: int, *, limit: int = 64, timeout: float = 0.0) -> list[OrderedBatch]:
        """Batches with position > ``after`` by create revision; waits on a watch. Raises
        ``history_compacted`` when batches after ``after`` were deleted."""
        batches, revision = self._range_batches(after, limit)
        if batches or timeout <= 0:
            return batches
        if self._watch(max(after, revision) + 1, timeout):
            batches, _ = self._range_batches(after, limit)
        return batches

    def _range_batches(self, after: int, limit: int) -> tuple[list[OrderedBatch], int]:
        """The batches after ``after`` and the compaction boundary, in one transaction (one
        snapshot): compaction records its boundary before it deletes, so a snapshot whose
        boundary is not past ``after`` holds every batch after it; otherwise a batch may be
        missing, and the read fails (``history_compacted``) instead of skipping it. Checked
        on every read: a node another member does not count yet (one admitted later) can be
        compacted past while it reads."""
        prefix = self.prefix + b"b/"
        batches = {
            "key": _b64(prefix),
            "range_end": _b64(_prefix_end(prefix)),
            "min_create_revision": str(after + 1),
            "sort_target": "CREATE",
            "sort_order": "ASCEND",
            "limit": str(limit),
        }
        data = self.call(
            "/v3/kv/txn",
            {
                "success": [
                    {"request_range": batches},
                    {"request_range": {"key": _b64(self._key("compacted"))}},
                ]
            },
        )
        found, boundary = (r["response_range"] for r in data["responses"])
        upto = int(_unb64(boundary["kvs"][0]["value"])) if boundary.get("kvs") else 0
        if after < upto:
            raise UnavailableError(
                f"batches up to position {upto} were compacted away; this node applied only "
                f"up to {after}: catch up from a peer's blocks",
                code="history_compacted",
            )
        out = []
        for kv in found.get("kvs", []):
            ts, payload = decode_value(_unb64(kv.get("value", "")))
            out.append(
                OrderedBatch(position=int(kv["create_revision"]), timestamp=ts, payload=payload)
            )
        return out, int(data["header"]["revision"])

    def _watch(self, start_revision: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a new batch key from ``start_revision``; True if any."""
        prefix = self.prefix + b"b/"
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(_prefix_end(prefix)),
                "start_revision": str(start_revision),
                "filters": ["NODELETE"],
            }
        }
        with self._lock:
            url = self.endpoints[self._good]
        try:
            with self._http.stream(
                "POST",
                url + "/v3/watch",
                content=orjson.dumps(body),
                timeout=httpx.Timeout(timeout, connect=min(1.0, timeout)),
            ) as resp:
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    result = orjson.loads(line).get("result", {})
                    if result.get("events") or result.get("compact_revision"):
                        return True
        except (httpx.HTTPError, orjson.JSONDecodeError):
            return False
        return False

    # -- applied positions and compaction ---------------------------------------------------
    def publish_applied(self, position: int) -> None:
        """Record that this node durably applied everything up to ``position``."""
        self.call(
            "/v3/kv/put",
            {"key": _b64(self._key("applied", self.node)), "value": _b64(str(position).encode())},
        )

    def applied_positions(self) -> dict[str, int]:
        """Every node's published applied position."""
        prefix = self._key("applied", "")
        data = self.call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        )
        return {
            _unb64(kv["key"])[len(prefix) :].decode(): int(_unb64(kv["value"]))
            for kv in data.get("kvs", [])
        }

    def compacted_upto(self) -> int:
        """Positions <= this were deleted (0: nothing)."""
        data = self.call("/v3/kv/range", {"key": _b64(self._key("compacted"))})
        kvs = data.get("kvs", [])
        return int(_unb64(kvs[0]["value"])) if kvs else 0

    def forget(self, upto: int) -> None:
        """Publish ``upto`` as applied; every ``COMPACT_EVERY`` positions try to compact."""
        try:
            self.publish_applied(upto)
        except UnavailableError as exc:  # best effort: the next block publishes again
            log.warning("could not publish applied position %d: %s", upto, exc)
            return
        if upto - self._compact_mark >= COMPACT_EVERY:
            self._compact_mark = upto
            try:
                self.compact()
            except UnavailableError as exc:  # best effort: a later block tries again
                log.warning("could not compact etcd below position %d: %s", upto, exc)

    def compact(self) -> int:
        """Delete batches every member applied and compact etcd's history; returns the
        boundary (0 while fewer than ``members`` nodes published a position)."""
        applied = self.applied_positions()
        if len(applied) < self.members:
            return 0
        low = min(applied.values())
        if low <= self._last_compact:
            return 0
        self._last_compact = max(self._last_compact, self.compacted_upto())
        if low <= self._last_compact:  # another node compacted further already
            return 0
        prefix = self.prefix + b"b/"
        data = self.call(
            "/v3/kv/range",
            {
                "key": _b64(prefix),
                "range_end": _b64(_prefix_end(prefix)),
                "max_create_revision": str(low),
                "keys_only": True,
            },
        )
        keys = [kv["key"] for kv in data.get("kvs", [])]
        # Record the boundary first: a reader then fails loudly rather than skip a batch.
        self.call(
            "/v3/kv/put", {"key": _b64(self._key("compacted")), "value": _b64(str(low).encode())}
        )
        for i in range(0, len(keys), MAX_TXN_OPS):
            ops = [{"request_delete_range": {"key": k}} for k in keys[i : i + MAX_TXN_OPS]]
            self.call("/v3/kv/txn", {"success": ops})
        try:
            self.call("/v3/kv/compaction", {"revision": str(low), "physical": False})
        except UnavailableError as exc:
            if exc.code != "history_compacted":
                raise
            # another member compacted etcd's history past ``low`` first: nothing left to do
        self._last_compact = low
        return low

    # -- cosignatures (the witness board, see node/witness.py) ------------------------------
    def put_cosignature(self, height: int, note: bytes) -> None:
        """Publish this node's cosigned checkpoint for ``height``."""
        self.call(
            "/v3/kv/put",
            {"key": _b64(self._key("cosig", f"{height:016d}", self.node)), "value": _b64(note)},
        )

    def cosignatures(self, height: int) -> dict[str, bytes]:
        """Every node's cosigned checkpoint for ``height``, by node name."""
        prefix = self._key("cosig", f"{height:016d}", "")
        data = self.call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        )
        return {
            _unb64(kv["key"])[len(prefix) :].decode(): _unb64(kv.get("value", ""))
            for kv in data.get("kvs", [])
        }

    def status(self) -> list[dict[str, Any]]:
        """Per endpoint: reachable?, member id, leader id, raft term (for operators)."""
        out: list[dict[str, Any]] = []
        for url in self.endpoints:
            try:
                resp = self._http.post(url + "/v3/maintenance/status", content=b"{}", timeout=1.0)
                data = orjson.loads(resp.content)
                out.append(
                    {
                        "endpoint": url,
                        "up": "error" not in data,
                        "member": data.get("header", {}).get("member_id"),
                        "leader": data.get("leader"),
                        "term": data.get("raftTerm"),
                    }
                )
            except (httpx.HTTPError, orjson.JSONDecodeError):
                out.append({"endpoint": url, "up": False})
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._http.close()


__all__ = ["MAGIC", "EtcdOrderer", "decode_value", "encode_value"]
