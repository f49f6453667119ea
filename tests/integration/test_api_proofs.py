"""Proofs, checkpoints, health, metrics, OpenAPI and the problem table of the HTTP API.

Proofs from the API are verified offline with ``carechain.merkle`` against checkpoints opened
with the node key published at ``/v1/chain``; each check has a negative control.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.api.errors import PROBLEM_TABLE, status_for
from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PublicKeyRecord, generate_key
from carechain.encoding import b64u_decode, b64u_encode
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ChainVerificationError,
    CheckpointError,
    ConfigurationError,
    ConflictError,
    ContractError,
    DuplicateTransactionError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    ProofError,
    SignatureError,
    UnavailableError,
    ValidationError,
    VerificationError,
)
from carechain.ledger.tx import SignedTx, parse_envelope
from carechain.merkle import (
    Checkpoint,
    NoteVerifier,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from carechain.merkle.rfc6962 import reference_inclusion_proof, reference_root
from carechain.node.chaindir import new_tx
from carechain.node.node import Node

JSON = {"content-type": "application/json"}


@pytest.fixture
def app(demo_node: Node) -> FastAPI:
    return create_app(demo_node)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def register_patient(client: TestClient, node: Node) -> SignedTx:
    key = generate_key()
    tx = new_tx(
        node,
        "identity.register_patient@1",
        patient_account_id(key.kid),
        {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}]},
        [key],
    )
    resp = client.post("/v1/transactions", content=tx.raw, headers=JSON)
    assert resp.status_code == 200, resp.text
    return tx


def trusted(client: TestClient) -> tuple[list[NoteVerifier], str]:
    info = client.get("/v1/chain").json()
    verifiers = [
        NoteVerifier(
            name=info["origin"], record=PublicKeyRecord(alg=k["alg"], public=b64u_decode(k["pub"]))
        )
        for k in info["node_keys"]
    ]
    return verifiers, info["origin"]


def checkpoint(client: TestClient, height: int | None = None) -> Checkpoint:
    params = {"height": height} if height is not None else {}
    resp = client.get("/v1/checkpoint", params=params)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    verifiers, origin = trusted(client)
    return open_checkpoint(resp.content, verifiers, origin)


def hexes(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in items]


def test_inclusion_proof_verifies_against_signed_checkpoint(
    client: TestClient, demo_node: Node
) -> None:
    txs = [register_patient(client, demo_node) for _ in range(3)]
    cp = checkpoint(client)
    assert cp.size == demo_node.store.log_size() == 9
    for tx in txs:
        proof = client.get(
            "/v1/proofs/inclusion", params={"tx": tx.tx_id.hex(), "size": cp.size}
        ).json()
        assert proof["tx_id"] == tx.tx_id.hex() and proof["tree_size"] == cp.size
        envelope = b64u_decode(
            client.get(f"/v1/transactions/{tx.tx_id.hex()}").json()["envelope_b64"]
        )
        leaf = leaf_hash(envelope)
        assert proof["leaf_hash"] == leaf.hex()
        assert proof["root"] == cp.root.hex()
        path = hexes(proof["proof"])
        verify_inclusion(leaf, proof["leaf_index"], cp.size, path, cp.root)
        # negative controls: an altered path element, another leaf, another index
        bad = [bytearray(p) for p in path]
        bad[0][0] ^= 1
        with pytest.raises(ProofError):
            verify_inclusion(leaf, proof["leaf_index"], cp.size, [bytes(b) for b in bad], cp.root)
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_hash(envelope + b" "), proof["leaf_index"], cp.size, path, cp.root
            )
        with pytest.raises(ProofError):
            verify_inclusion(leaf, (proof["leaf_index"] + 1) % cp.size, cp.size, path, cp.root)


def test_every_leaf_at_every_size_equals_the_rfc_reference(
    client: TestClient, demo_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every committed leaf proven in every tree that holds it equals the RFC 9162 reference
    proof and root over the stored envelopes. This includes an even leaf proven in the tree
    that ends at it while the store already holds its right sibling: the sibling leaf read
    with the transaction's row (``find_tx_leaf``) must not enter that proof."""
    for _ in range(3):
        register_patient(client, demo_node)
    store = demo_node.store
    n = store.log_size()
    envelopes = [store.find_envelope(i) for i in range(n)]
    assert all(e is not None for e in envelopes)
    leaves = [e for e in envelopes if e is not None]
    tx_ids = [parse_envelope(e).tx_id.hex() for e in leaves]
    assert any(i % 2 == 0 and i + 1 < n for i in range(n))  # such a leaf exists
    for size in range(1, n + 1):
        root = reference_root(leaves[:size]).hex()
        for i in range(size):
            got = client.get("/v1/proofs/inclusion", params={"tx": tx_ids[i], "size": size})
            assert got.status_code == 200, got.text
            p = got.json()
            assert (p["leaf_index"], p["tree_size"], p["root"]) == (i, size, root)
            assert hexes(p["proof"]) == reference_inclusion_proof(leaves[:size], i)
    # negative control: a wrong sibling from the row read shows in the proof
    real = store.find_tx_leaf

    def wrong_sibling(tx_id: bytes) -> Any:
        found = real(tx_id)
        return None if found is None else (found[0], found[1], bytes(32))

    monkeypatch.setattr(store, "find_tx_leaf", wrong_sibling)
    got = client.get("/v1/proofs/inclusion", params={"tx": tx_ids[0], "size": n}).json()
    assert hexes(got["proof"]) != reference_inclusion_proof(leaves, 0)


def test_inclusion_in_an_older_tree_and_default_size(client: TestClient, demo_node: Node) -> None:
    old_cp = checkpoint(client)  # after block 1: 6 transactions
    first = client.get("/v1/blocks/1").json()["transactions"][0]["tx_id"]
    register_patient(client, demo_node)
    old = client.get("/v1/proofs/inclusion", params={"tx": first, "size": old_cp.size}).json()
    verify_inclusion(
        bytes.fromhex(old["leaf_hash"]), 0, old_cp.size, hexes(old["proof"]), old_cp.root
    )
    now = client.get("/v1/proofs/inclusion", params={"tx": first}).json()
    assert now["tree_size"] == old_cp.size + 1
    head_cp = checkpoint(client)  # the default size is the head's, with its signed root
    assert (now["tree_size"], now["root"]) == (head_cp.size, head_cp.root.hex())
    verify_inclusion(
        bytes.fromhex(now["leaf_hash"]), 0, head_cp.size, hexes(now["proof"]), head_cp.root
    )
    with pytest.raises(ProofError):  # negative control: the new root is not the old one
        verify_inclusion(
            bytes.fromhex(now["leaf_hash"]), 0, now["tree_size"], hexes(now["proof"]), old_cp.root
        )


def test_a_proof_while_the_store_is_a_block_ahead_of_the_head(
    client: TestClient, demo_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a block's commit and the producer's head update, a transaction already shows
    as committed: its default-size proof is served at the store's size (not refused), and
    a size up to the store's is accepted; past it, 400."""
    before = demo_node.head
    tx = register_patient(client, demo_node)
    cp = checkpoint(client)
    assert cp.size == before.header.log_size + 1
    monkeypatch.setattr(demo_node, "head", before)  # the moment before the head moves
    for params in ({"tx": tx.tx_id.hex()}, {"tx": tx.tx_id.hex(), "size": cp.size}):
        resp = client.get("/v1/proofs/inclusion", params=params)
        assert resp.status_code == 200, resp.text
        p = resp.json()
        assert (p["tree_size"], p["root"]) == (cp.size, cp.root.hex())
        verify_inclusion(
            bytes.fromhex(p["leaf_hash"]), p["leaf_index"], cp.size, hexes(p["proof"]), cp.root
        )
    over = client.get("/v1/proofs/inclusion", params={"tx": tx.tx_id.hex(), "size": cp.size + 1})
    assert over.status_code == 400 and over.json()["code"] == "bad_size"  # negative control


def test_consistency_proof_between_checkpoints(client: TestClient, demo_node: Node) -> None:
    register_patient(client, demo_node)
    register_patient(client, demo_node)
    old, new = checkpoint(client, height=1), checkpoint(client)
    assert old.size == 6 < new.size == 8
    proof = client.get("/v1/proofs/consistency", params={"from": old.size, "to": new.size}).json()
    assert (proof["from"], proof["to"]) == (old.size, new.size)
    assert proof["root1"] == old.root.hex() and proof["root2"] == new.root.hex()
    path = hexes(proof["proof"])
    verify_consistency(old.size, new.size, path, old.root, new.root)
    bad = [bytearray(p) for p in path]
    bad[-1][31] ^= 0x80
    with pytest.raises(ProofError):
        verify_consistency(old.size, new.size, [bytes(b) for b in bad], old.root, new.root)
    with pytest.raises(ProofError):
        verify_consistency(old.size, new.size, path, new.root, new.root)
    default = client.get("/v1/proofs/consistency", params={"from": old.size}).json()
    assert default == proof


def test_tampered_checkpoint_fails_to_open(client: TestClient) -> None:
    note = client.get("/v1/checkpoint").content
    verifiers, origin = trusted(client)
    lines = note.split(b"\n")
    lines[1] = str(int(lines[1]) + 1).encode()
    with pytest.raises(CheckpointError):
        open_checkpoint(b"\n".join(lines), verifiers, origin)
    other = NoteVerifier(name=origin, record=generate_key().record)
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [other], origin)


def test_proof_and_checkpoint_errors(client: TestClient) -> None:
    tx = client.get("/v1/blocks/1").json()["transactions"][5]["tx_id"]  # leaf 5
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/proofs/inclusion", {"tx": tx, "size": 7}, 400, "bad_size"),  # size > log size
        ("/v1/proofs/inclusion", {"tx": tx, "size": 5}, 400, "bad_size"),  # leaf 5 not in 5
        ("/v1/proofs/inclusion", {"tx": tx, "size": 0}, 400, "invalid_request"),
        ("/v1/proofs/inclusion", {"tx": "ab" * 32}, 404, "not_found"),
        ("/v1/proofs/inclusion", {"tx": "nothex"}, 400, "bad_id"),
        ("/v1/proofs/inclusion", {}, 400, "invalid_request"),
        ("/v1/proofs/consistency", {"from": 0}, 400, "invalid_request"),
        ("/v1/proofs/consistency", {"from": 5, "to": 4}, 400, "bad_size"),
        ("/v1/proofs/consistency", {"from": 1, "to": 7}, 400, "bad_size"),
        ("/v1/checkpoint", {"height": 99}, 404, "not_found"),
    ]
    for path, params, status, code in cases:
        resp = client.get(path, params=params)
        assert resp.status_code == status, (path, params, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == code, (path, params)
    assert client.get("/v1/proofs/inclusion", params={"tx": tx, "size": 6}).status_code == 200


# -- operations --------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+)$')


def parse_metrics(text: str) -> dict[str, float]:
    """A strict-enough parser of the Prometheus text format: every line must be valid."""
    out: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        out[m[1] + (m[2] or "")] = float(m[3])
    return out


def test_metrics_and_health(client: TestClient, demo_node: Node) -> None:
    register_patient(client, demo_node)
    bad = client.post("/v1/transactions", content=b"{", headers=JSON)
    assert bad.status_code == 400
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["height"] == 2 and body["log_size"] == 7
    assert body["mempool"] == 0 and body["uptime_s"] >= 0 and "error" not in body
    resp = client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(resp.text)
    assert samples["carechain_height"] == 2
    assert samples["carechain_log_size"] == 7
    assert samples["carechain_mempool_txs"] == 0
    assert samples["carechain_tx_submitted_total"] == 1
    assert samples['carechain_tx_rejected_total{code="malformed_json"}'] == 1
    assert samples['carechain_http_requests_total{route="/v1/transactions",status="200"}'] == 1
    assert samples['carechain_http_requests_total{route="/v1/transactions",status="400"}'] == 1
    assert samples['carechain_http_requests_total{route="/healthz",status="200"}'] == 1
    client.get("/no/such/path")
    samples = parse_metrics(client.get("/metrics").text)
    assert samples['carechain_http_requests_total{route="unmatched",status="404"}'] == 1


def test_failed_node_is_503(client: TestClient, demo_node: Node) -> None:
    demo_node.failed = OSError("disk full")
    try:
        resp = client.get("/healthz")
        assert resp.status_code == 503
        assert resp.json()["status"] == "failed" and resp.json()["error"] == "disk full"
        sub = client.post("/v1/transactions", content=b"{}", headers=JSON)
        assert sub.status_code == 503 and sub.json()["code"] == "unavailable"
        assert sub.headers["retry-after"] == "5"
    finally:
        demo_node.failed = None


def test_full_mempool_is_503_with_retry_after(client: TestClient, demo_node: Node) -> None:
    demo_node.mempool.max_txs = 0
    key = generate_key()
    tx = new_tx(
        demo_node,
        "identity.register_patient@1",
        patient_account_id(key.kid),
        {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}]},
        [key],
    )
    resp = client.post("/v1/transactions", content=tx.raw, headers=JSON)
    assert resp.status_code == 503
    assert resp.json()["code"] == "mempool_full"
    assert resp.headers["retry-after"] == "1"


def test_openapi_is_3_1_with_tags_summaries_and_models(app: FastAPI) -> None:
    doc = app.openapi()
    assert doc["openapi"].startswith("3.1")
    assert {t["name"] for t in doc["tags"]} >= {"transactions", "blocks", "proofs", "auth"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            assert op.get("tags"), (method, path)
    submit = doc["paths"]["/v1/transactions"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "application/problem+json" in submit["responses"]["409"]["content"]
    assert "TxDetail" in doc["components"]["schemas"]
    params = {p["name"] for p in doc["paths"]["/v1/proofs/consistency"]["get"]["parameters"]}
    assert params == {"from", "to"}


def test_unexpected_errors_are_500_problems_without_internals(app: FastAPI) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /var/lib/x")

    @app.get("/infra")
    def infra() -> None:
        raise InfrastructureError("sqlite file /var/lib/x is corrupt")

    with TestClient(app, raise_server_exceptions=False) as c:
        for path, code in (("/boom", "internal"), ("/infra", "infrastructure")):
            resp = c.get(path)
            assert resp.status_code == 500
            assert resp.headers["content-type"] == "application/problem+json"
            doc = resp.json()
            assert doc["code"] == code
            assert "/var/lib" not in resp.text and "secret" not in resp.text


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ValidationError("x"), 400),
        (LimitExceededError("x"), 413),
        (VerificationError("x"), 422),
        (SignatureError("x"), 422),
        (ProofError("x"), 422),
        (CheckpointError("x"), 422),
        (ChainVerificationError("x", height=1, field="f"), 422),
        (AuthenticationError("x"), 401),
        (AuthorizationError("x"), 403),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (DuplicateTransactionError("x"), 409),
        (ContractError("x"), 422),
        (UnavailableError("x"), 503),
        (InfrastructureError("x"), 500),
        (ConfigurationError("x"), 500),
        (LedgerError("x"), 500),
    ],
)
def test_problem_table(exc: LedgerError, status: int) -> None:
    assert status_for(exc)[0] == status
    assert type(exc) in PROBLEM_TABLE or any(c in PROBLEM_TABLE for c in type(exc).__mro__)


def test_problem_headers(app: FastAPI) -> None:
    @app.get("/need-auth")
    def need_auth() -> None:
        raise AuthenticationError("who are you?")

    @app.get("/busy")
    def busy() -> None:
        raise UnavailableError("busy", retry_after=7)

    with TestClient(app) as c:
        resp = c.get("/need-auth")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/busy").headers["retry-after"] == "7"
        resp = c.delete("/v1/chain")
        assert resp.status_code == 405 and resp.json()["code"] == "method_not_allowed"
        assert resp.headers["allow"] == "GET"


def test_explorer_router_and_static_are_included_when_present(
    demo_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from fastapi import APIRouter

    from carechain.api.app import STATIC_DIR

    web = types.ModuleType("carechain.web.routes")
    router = APIRouter()

    @router.get("/explorer")
    def explorer() -> dict[str, str]:
        return {"page": "explorer"}

    web.router = router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carechain.web.routes", web)
    app = create_app(demo_node)
    with TestClient(app) as c:
        assert c.get("/explorer").json() == {"page": "explorer"}
        if STATIC_DIR.is_dir():
            missing = c.get("/static/no-such-file.css")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
