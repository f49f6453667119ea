"""A fake carechain API (``httpx.MockTransport``) over an in-memory log, easy to make hostile.

``FakeApi`` serves the routes the SDK uses, following the API contract: genesis, signed
checkpoints, inclusion and consistency proofs, transactions, blocks and submission. Tests
corrupt it by setting ``note`` (serve this checkpoint note instead), ``mutate[route]`` (edit a
JSON answer before it is sent) or ``fail[route]`` (answer with this problem document).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson

from carechain.client import Client
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.ledger.tx import SignedTx, make_tx
from carechain.merkle import (
    Checkpoint,
    CompactTree,
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_at,
    sign_checkpoint,
)

CHAIN = "test-chain"
ORIGIN = f"carechain.local/{CHAIN}"
NODE_KEY = PrivateKey("ed25519", bytes(range(32)))
OTHER_KEY = PrivateKey("ed25519", bytes(range(1, 33)))
ADMIN_KEY = PrivateKey("ed25519", bytes(range(2, 34)))
BASE = "http://fake-node"


def genesis_doc(chain: str = CHAIN, node_key: PrivateKey = NODE_KEY) -> bytes:
    """A canonical genesis with one organisation and one node key."""
    return canonical_bytes(
        {
            "chain": chain,
            "orgs": [
                {
                    "admins": [
                        {
                            "account": "org1.admin",
                            "keys": [{"alg": "ed25519", "pub": b64u_encode(ADMIN_KEY.public)}],
                        }
                    ],
                    "id": "org1",
                    "name": "Org One",
                    "nodes": [
                        {
                            "alg": "ed25519",
                            "name": "org1-node-1",
                            "pub": b64u_encode(NODE_KEY.public),
                        }
                        if node_key is NODE_KEY
                        else {
                            "alg": node_key.alg,
                            "name": "org1-node-1",
                            "pub": b64u_encode(node_key.public),
                        }
                    ],
                    "roles": ["hospital"],
                }
            ],
            "params": {},
            "time": 1_700_000_000_000,
        }
    )


def problem(status: int, code: str, detail: str, **headers: str) -> httpx.Response:
    body = {"code": code, "detail": detail, "status": status, "title": code, "type": "about:blank"}
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"content-type": "application/problem+json", **headers},
    )


@dataclass
class FakeApi:
    """The fake node. ``txs`` are the log's leaves (envelopes) in order."""

    genesis: bytes = field(default_factory=genesis_doc)
    key: PrivateKey = NODE_KEY
    origin: str = ORIGIN
    txs: list[SignedTx] = field(default_factory=list)
    nodes: MemoryNodes = field(default_factory=MemoryNodes)
    tree: CompactTree = field(default_factory=CompactTree)
    note: bytes | None = None
    """Serve this checkpoint note instead of the honest one."""
    mutate: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    """Route name → edit applied to the JSON answer."""
    fail: dict[str, httpx.Response] = field(default_factory=dict)
    """Route name → this answer instead."""
    requests: list[httpx.Request] = field(default_factory=list)

    def append(self, n: int = 1) -> list[SignedTx]:
        """Append ``n`` fresh signed transactions to the log."""
        new = [
            make_tx(
                chain=CHAIN,
                kind="identity.revoke_key@1",
                sender="org1.admin",
                args={"kid": "0" * 32, "reason": f"test {len(self.txs) + i}"},
                keys=[ADMIN_KEY],
                created=1_700_000_000_000,
                nonce=os.urandom(16),
            )
            for i in range(n)
        ]
        self.nodes.put_all(self.tree.append([leaf_hash(t.raw) for t in new]))
        self.txs.extend(new)
        return new

    @property
    def size(self) -> int:
        return len(self.txs)

    def root(self, size: int | None = None) -> bytes:
        return root_at(self.nodes, self.size if size is None else size)

    def signed_note(
        self,
        size: int | None = None,
        *,
        root: bytes | None = None,
        key: PrivateKey | None = None,
        origin: str | None = None,
        name: str | None = None,
    ) -> bytes:
        size = self.size if size is None else size
        cp = Checkpoint(origin or self.origin, size, root or self.root(size))
        return sign_checkpoint(cp, name or origin or self.origin, key or self.key)

    # -- routes ----------------------------------------------------------------------------
    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        if path == "/v1/genesis":
            return self._answer("genesis", self.genesis, "application/json")
        if path == "/v1/checkpoint":
            if "height" in query:  # the fake keeps one block per transaction
                note = self.signed_note(int(query["height"]))
            else:
                note = self.note if self.note is not None else self.signed_note()
            return self._answer("checkpoint", note, "text/plain; charset=utf-8")
        if path == "/v1/proofs/inclusion":
            return self._inclusion(query)
        if path == "/v1/proofs/consistency":
            return self._consistency(query)
        if path.startswith("/v1/transactions/"):
            return self._tx(path.rsplit("/", 1)[1])
        if path == "/v1/transactions" and request.method == "POST":
            return self._submit(request, query)
        return problem(404, "not_found", f"no route {path}")

    def _answer(self, route: str, body: Any, ctype: str = "application/json") -> httpx.Response:
        if route in self.fail:
            return self.fail[route]
        if route in self.mutate:
            body = self.mutate[route](body)
        if not isinstance(body, bytes):
            body = orjson.dumps(body)
        return httpx.Response(200, content=body, headers={"content-type": ctype})

    def _index(self, tx_hex: str) -> int | None:
        for i, t in enumerate(self.txs):
            if t.tx_id.hex() == tx_hex:
                return i
        return None

    def _inclusion(self, q: dict[str, str]) -> httpx.Response:
        i = self._index(q["tx"])
        if i is None:
            return problem(404, "not_found", f"transaction {q['tx']} not found")
        size = int(q.get("size", self.size))
        if not i < size <= self.size:
            return problem(400, "invalid", f"size {size} does not cover leaf {i}")
        return self._answer(
            "inclusion",
            {
                "leaf_hash": leaf_hash(self.txs[i].raw).hex(),
                "leaf_index": i,
                "proof": [h.hex() for h in inclusion_proof(self.nodes, i, size)],
                "root": self.root(size).hex(),
                "tree_size": size,
                "tx_id": q["tx"],
            },
        )

    def _consistency(self, q: dict[str, str]) -> httpx.Response:
        a, b = int(q["from"]), int(q["to"])
        if not 0 < a <= b <= self.size:
            return problem(400, "invalid", f"want 0 < from <= to <= {self.size}")
        return self._answer(
            "consistency",
            {
                "from": a,
                "proof": [h.hex() for h in consistency_proof(self.nodes, a, b)],
                "root1": self.root(a).hex(),
                "root2": self.root(b).hex(),
                "to": b,
            },
        )

    def _tx(self, tx_hex: str) -> httpx.Response:
        i = self._index(tx_hex)
        if i is None:
            return problem(404, "not_found", f"transaction {tx_hex} not found")
        t = self.txs[i]
        return self._answer(
            "tx",
            {
                "block_hash": "ab" * 32,
                "body": t.body.to_json(),
                "envelope_b64": base64.urlsafe_b64encode(t.raw).rstrip(b"=").decode(),
                "height": i + 1,
                "log_index": i,
                "position": 0,
                "receipt": {"code": "ok", "events": [], "status": "ok"},
                "signatures": [],
                "tx_id": tx_hex,
            },
        )

    def _submit(self, request: httpx.Request, q: dict[str, str]) -> httpx.Response:
        ctype = request.headers["content-type"]
        body = request.content
        raws = [body] if ctype == "application/json" else [x for x in body.split(b"\n") if x]
        from carechain.ledger.tx import parse_envelope

        txs = [parse_envelope(r) for r in raws]
        known = {t.tx_id for t in self.txs}
        for t in txs:
            if t.tx_id in known:
                return problem(409, "duplicate_transaction", f"{t.tx_id.hex()} already accepted")
        wait = q.get("wait", "true") == "true"
        first = self.size
        if wait:
            self.nodes.put_all(self.tree.append([leaf_hash(t.raw) for t in txs]))
            self.txs.extend(txs)
        results = [
            {
                "height": first + i + 1,
                "log_index": first + i,
                "status": "ok",
                "tx_id": t.tx_id.hex(),
            }
            if wait
            else {"status": "pending", "tx_id": t.tx_id.hex()}
            for i, t in enumerate(txs)
        ]
        return httpx.Response(
            200 if wait else 202,
            content=orjson.dumps({"results": results}),
            headers={"content-type": "application/json"},
        )

    def client(self, **kwargs: Any) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(self.handler))
        return Client(BASE, http=http, **kwargs)
