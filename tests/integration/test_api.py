"""The HTTP API over a running demo node: submission, receipts, reads, and every rejection.

Every transaction here is really signed (``carechain.node.chaindir.new_tx`` with the demo
keys or fresh ones). Each bad input is checked for its precise status and ``code`` and for
changing nothing committed (head height, log size) and leaving nothing pending.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_decode, b64u_encode, canonical_bytes
from carechain.ledger.tx import SignedTx, encode_envelope, make_tx, sign_tx, signing_bytes
from carechain.node.chaindir import DEMO_PASSWORD, new_tx
from carechain.node.node import Node

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
PROBLEM = "application/problem+json"


@pytest.fixture
def client(demo_node: Node) -> Iterator[TestClient]:
    with TestClient(create_app(demo_node)) as c:
        yield c


def post(client: TestClient, raw: bytes, headers: dict[str, str] = JSON, **params: str) -> Any:
    return client.post("/v1/transactions", content=raw, headers=headers, params=params)


def head(client: TestClient) -> tuple[int, int]:
    info = client.get("/v1/chain").json()
    return info["height"], info["log_size"]


def key_json(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def patient_tx(node: Node, alg: str = "ed25519") -> tuple[SignedTx, PrivateKey]:
    key = generate_key(alg)
    tx = new_tx(
        node,
        "identity.register_patient@1",
        patient_account_id(key.kid),
        {"keys": [key_json(key)]},
        [key],
    )
    return tx, key


def signed_body(
    body: dict[str, Any], keys: list[PrivateKey], *, body_bytes: bytes | None = None
) -> bytes:
    """An envelope over an arbitrary (possibly invalid) body, really signed by ``keys``."""
    raw_body = body_bytes if body_bytes is not None else canonical_bytes(body)
    return encode_envelope(raw_body, [k.sign(signing_bytes(raw_body)) for k in keys])


def assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == status
    assert doc["code"] == code, doc
    assert doc["type"] == f"https://carechain.dev/problems/{code}"
    assert doc["title"] and doc["detail"]
    return doc


# -- accepted transactions -----------------------------------------------------------------


def test_submit_one_and_read_it_back(client: TestClient, demo_node: Node) -> None:
    height0, size0 = head(client)
    tx, _ = patient_tx(demo_node)
    resp = post(client, tx.raw)
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["results"]
    assert result == {
        "tx_id": tx.tx_id.hex(),
        "status": "ok",
        "code": "ok",
        "height": height0 + 1,
        "log_index": size0,
    }
    detail = client.get(f"/v1/transactions/{tx.tx_id.hex()}").json()
    assert b64u_decode(detail["envelope_b64"]) == tx.raw  # verbatim bytes
    assert detail["height"] == height0 + 1 and detail["position"] == 0
    assert detail["log_index"] == size0
    assert detail["body"] == tx.body.to_json()
    assert detail["signatures"] == [
        {
            "alg": tx.body.signers[0].alg,
            "kid": tx.body.signers[0].kid,
            "sig": b64u_encode(tx.sigs[0]),
        }
    ]
    assert detail["receipt"]["status"] == "ok"
    assert detail["receipt"]["tx"] == b64u_encode(tx.tx_id)
    block = client.get(f"/v1/blocks/{height0 + 1}").json()
    assert detail["block_hash"] == block["hash"]
    assert block["transactions"] == [
        {
            "tx_id": tx.tx_id.hex(),
            "kind": "identity.register_patient@1",
            "sender": tx.body.sender,
            "status": "ok",
            "code": "ok",
        }
    ]
    account = client.get(f"/v1/accounts/{tx.body.sender}").json()
    assert account["account"]["type"] == "patient"
    assert [k["kid"] for k in account["keys"]] == [tx.body.signers[0].kid]
    assert account["transactions"] == [
        {"tx_id": tx.tx_id.hex(), "log_index": size0, "kind": "identity.register_patient@1"}
    ]


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_submit_ndjson_batch(client: TestClient, demo_node: Node, trailing_newline: bool) -> None:
    _, size0 = head(client)
    txs = [patient_tx(demo_node, alg)[0] for alg in ("ed25519", "ml-dsa-65", "ed25519")]
    body = b"\n".join(t.raw for t in txs) + (b"\n" if trailing_newline else b"")
    resp = post(client, body, NDJSON)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["tx_id"] for r in results] == [t.tx_id.hex() for t in txs]
    assert all(r["status"] == "ok" for r in results)
    assert sorted(r["log_index"] for r in results) == [size0, size0 + 1, size0 + 2]
    assert head(client)[1] == size0 + 3


def test_submit_without_waiting_is_202_then_committed(client: TestClient, demo_node: Node) -> None:
    tx, _ = patient_tx(demo_node)
    resp = post(client, tx.raw, wait="false")
    assert resp.status_code == 202
    assert resp.json() == {"results": [{"tx_id": tx.tx_id.hex(), "status": "pending"}]}
    deadline = time.monotonic() + 10
    while (got := client.get(f"/v1/transactions/{tx.tx_id.hex()}")).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert got.status_code == 200
    assert got.json()["receipt"]["status"] == "ok"


def test_wait_timeout_is_202_pending(
    client: TestClient, demo_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = demo_node.store.commit_block

    def slow_commit(commit: Any) -> None:  # the block commits well after the 1 ms wait
        time.sleep(0.5)
        real_commit(commit)

    monkeypatch.setattr(demo_node.store, "commit_block", slow_commit)
    tx, _ = patient_tx(demo_node)
    resp = post(client, tx.raw, timeout="0.001")
    assert resp.status_code == 202, resp.text
    assert resp.json()["results"] == [{"tx_id": tx.tx_id.hex(), "status": "pending"}]
    deadline = time.monotonic() + 10
    while client.get(f"/v1/transactions/{tx.tx_id.hex()}").status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_contract_rejection_is_committed_with_rejected_receipt(
    client: TestClient, demo_node: Node, demo_keys: Keyring
) -> None:
    _, size0 = head(client)
    dr_kim = demo_keys.load("dr-kim", DEMO_PASSWORD)
    intruder = generate_key()
    tx = new_tx(
        demo_node,
        "identity.register_member@1",
        "seoul-general.dr-kim",
        {
            "account": "seoul-general.intruder",
            "keys": [key_json(intruder)],
            "org": "seoul-general",
            "role": "practitioner",
        },
        [dr_kim],
    )
    resp = post(client, tx.raw)
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["results"]
    assert result["status"] == "rejected"
    assert result["code"] == "unauthorized"
    assert "not an administrator" in result["message"]
    assert result["log_index"] == size0  # kept as evidence
    block = client.get(f"/v1/blocks/{result['height']}").json()
    assert block["transactions"][0]["status"] == "rejected"
    assert block["transactions"][0]["code"] == "unauthorized"
    assert client.get("/v1/accounts/seoul-general.intruder").status_code == 404


# -- rejected input: precise status and code, nothing committed ------------------------------

Builder = Callable[[Node, Keyring], bytes]


def _admin(keys: Keyring) -> PrivateKey:
    return keys.load("seoul-general-admin", DEMO_PASSWORD)


def _good(node: Node, keys: Keyring) -> SignedTx:
    return patient_tx(node)[0]


def _body(node: Node, key: PrivateKey, **changes: Any) -> dict[str, Any]:
    body = {
        "args": {"keys": [key_json(key)]},
        "chain": node.genesis.chain,
        "created": int(time.time() * 1000),
        "kind": "identity.register_patient@1",
        "nonce": b64u_encode(os.urandom(16)),
        "sender": patient_account_id(key.kid),
        "signers": [{"alg": key.alg, "kid": key.kid}],
    }
    body.update(changes)
    return body


def _unsorted(node: Node, keys: Keyring) -> bytes:
    env = orjson.loads(_good(node, keys).raw)
    return b'{"sigs":' + orjson.dumps(env["sigs"]) + b',"body":' + orjson.dumps(env["body"]) + b"}"


def _body_with_spaces(node: Node, keys: Keyring) -> bytes:
    key = generate_key()
    pretty = orjson.dumps(_body(node, key), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    return signed_body({}, [key], body_bytes=pretty)


def _unknown_body_field(node: Node, keys: Keyring) -> bytes:
    key = generate_key()
    return signed_body(_body(node, key, memo="hi"), [key])


def _unknown_envelope_field(node: Node, keys: Keyring) -> bytes:
    env = orjson.loads(_good(node, keys).raw)
    return canonical_bytes({**env, "memo": "hi"})


def _sigs(node: Node, keys: Keyring, change: Callable[[list[str]], list[str]]) -> bytes:
    tx = _good(node, keys)
    return encode_envelope(
        tx.body_bytes, [b64u_decode(s) for s in change([b64u_encode(s) for s in tx.sigs])]
    )


def _flip_sig(node: Node, keys: Keyring) -> bytes:
    tx = _good(node, keys)
    sig = bytearray(tx.sigs[0])
    sig[5] ^= 0x01
    return encode_envelope(tx.body_bytes, [bytes(sig)])


def _sig_by_other_key(node: Node, keys: Keyring) -> bytes:
    tx = _good(node, keys)
    return encode_envelope(tx.body_bytes, [generate_key().sign(signing_bytes(tx.body_bytes))])


def _alg_mismatch(node: Node, keys: Keyring) -> bytes:
    admin = _admin(keys)
    body = _body(
        node,
        admin,
        kind="identity.revoke_key@1",
        sender="seoul-general.admin",
        args={"kid": "0" * 32, "reason": "test"},
        signers=[{"alg": "ml-dsa-65", "kid": admin.kid}],
    )
    return signed_body(body, [admin])


def _unknown_key(node: Node, keys: Keyring) -> bytes:
    stranger = generate_key()
    return new_tx(
        node,
        "identity.revoke_key@1",
        "seoul-general.admin",
        {"kid": "0" * 32, "reason": "x"},
        [stranger],
    ).raw


def _created(offset_ms: int) -> Builder:
    def build(node: Node, keys: Keyring) -> bytes:
        key = generate_key()
        return make_tx(
            chain=node.genesis.chain,
            kind="identity.register_patient@1",
            sender=patient_account_id(key.kid),
            args={"keys": [key_json(key)]},
            keys=[key],
            created=int(time.time() * 1000) + offset_ms,
            nonce=os.urandom(16),
        ).raw

    return build


BAD_INPUTS: dict[str, tuple[Builder, int, str]] = {
    "malformed_json": (lambda n, k: b'{"body":"abc",', 400, "malformed_json"),
    "empty_body": (lambda n, k: b"", 400, "malformed_json"),
    "not_an_object": (lambda n, k: b"[]", 400, "invalid"),
    "nan": (lambda n, k: b'{"body":NaN,"sigs":[]}', 400, "malformed_json"),
    "whitespace": (lambda n, k: _good(n, k).raw.replace(b'":', b'": ', 1), 400, "non_canonical"),
    "trailing_newline": (lambda n, k: _good(n, k).raw + b"\n", 400, "non_canonical"),
    "unsorted_keys": (_unsorted, 400, "non_canonical"),
    "duplicate_keys": (lambda n, k: _good(n, k).raw[:-1] + b',"sigs":[]}', 400, "non_canonical"),
    "non_canonical_body": (_body_with_spaces, 400, "non_canonical"),
    "unknown_body_field": (_unknown_body_field, 400, "unknown_field"),
    "unknown_envelope_field": (_unknown_envelope_field, 400, "unknown_field"),
    "unknown_kind": (
        lambda n, k: signed_body(_body(n, (g := generate_key()), kind="identity.fly@1"), [g]),
        400,
        "unknown_kind",
    ),
    "wrong_chain": (
        lambda n, k: signed_body(_body(n, (g := generate_key()), chain="other-chain"), [g]),
        400,
        "wrong_chain",
    ),
    "missing_signature": (lambda n, k: _sigs(n, k, lambda s: []), 400, "signature_count"),
    "extra_signature": (lambda n, k: _sigs(n, k, lambda s: s + s), 400, "signature_count"),
    "signature_not_base64url": (
        lambda n, k: _good(n, k).raw.replace(b'"sigs":["', b'"sigs":["+', 1),
        400,
        "invalid",
    ),
    "bad_signature": (_flip_sig, 422, "bad_signature"),
    "signature_by_other_key": (_sig_by_other_key, 422, "bad_signature"),
    "algorithm_mismatch": (_alg_mismatch, 400, "algorithm_mismatch"),
    "unknown_key": (_unknown_key, 400, "unknown_key"),
    "created_too_old": (_created(-11 * 60 * 1000), 400, "outside_window"),
    "created_in_future": (_created(11 * 60 * 1000), 400, "outside_window"),
    "envelope_over_256k": (
        lambda n, k: b'{"body":"' + b"A" * (300 * 1024) + b'","sigs":[]}',
        413,
        "limit_exceeded",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_precisely_and_commits_nothing(
    client: TestClient, demo_node: Node, demo_keys: Keyring, case: str
) -> None:
    build, status, code = BAD_INPUTS[case]
    raw = build(demo_node, demo_keys)
    before = head(client)
    assert_problem(post(client, raw), status, code)
    assert head(client) == before
    assert len(demo_node.mempool) == 0


def test_bad_line_in_batch_rejects_the_whole_batch(client: TestClient, demo_node: Node) -> None:
    good = [patient_tx(demo_node)[0] for _ in range(2)]
    before = head(client)
    body = good[0].raw + b"\n" + b"{}\n" + good[1].raw + b"\n"
    doc = assert_problem(post(client, body, NDJSON), 400, "missing_field")
    assert doc["detail"].startswith("transactions[1]:")
    assert_problem(post(client, b"\n", NDJSON), 400, "malformed_json")  # an empty batch
    assert_problem(post(client, good[0].raw + b"\n\n", NDJSON), 400, "malformed_json")  # blank line
    assert head(client) == before
    for tx in good:
        assert client.get(f"/v1/transactions/{tx.tx_id.hex()}").status_code == 404


def test_body_over_8mib_is_413_before_reading(client: TestClient) -> None:
    before = head(client)
    big = b"x" * (8 * 1024 * 1024 + 1)
    assert_problem(post(client, big, NDJSON), 413, "limit_exceeded")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the read length is checked
        for _ in range(9):
            yield b"y" * (1024 * 1024)

    resp = client.post("/v1/transactions", content=chunks(), headers=NDJSON)
    assert_problem(resp, 413, "limit_exceeded")
    assert head(client) == before


def test_unsupported_media_type_and_bad_query(client: TestClient, demo_node: Node) -> None:
    tx, _ = patient_tx(demo_node)
    before = head(client)
    assert_problem(
        post(client, tx.raw, {"content-type": "text/plain"}), 415, "unsupported_media_type"
    )
    for params in ({"timeout": "0"}, {"timeout": "61"}, {"wait": "maybe"}):
        resp = client.post("/v1/transactions", content=tx.raw, headers=JSON, params=params)
        doc = assert_problem(resp, 400, "invalid_request")
        assert doc["errors"][0]["loc"][0] == "query"
    assert head(client) == before


def test_replay_same_bytes_and_same_body_resigned(client: TestClient, demo_node: Node) -> None:
    tx, key = patient_tx(demo_node, "ml-dsa-65")  # ML-DSA signing is hedged (randomised)
    assert post(client, tx.raw).status_code == 200
    before = head(client)
    assert_problem(post(client, tx.raw), 409, "duplicate_transaction")
    resigned = sign_tx(tx.body, [key])
    assert resigned.raw != tx.raw and resigned.tx_id == tx.tx_id
    assert_problem(post(client, resigned.raw), 409, "duplicate_transaction")
    other, _ = patient_tx(demo_node)  # the duplicate inside one batch
    assert_problem(
        post(client, other.raw + b"\n" + other.raw, NDJSON), 409, "duplicate_transaction"
    )
    assert head(client) == before


def test_replay_while_pending_is_409(client: TestClient, demo_node: Node) -> None:
    tx, _ = patient_tx(demo_node)
    assert post(client, tx.raw, wait="false").status_code == 202
    assert_problem(post(client, tx.raw), 409, "duplicate_transaction")


def test_revoked_key_is_refused(client: TestClient, demo_node: Node, demo_keys: Keyring) -> None:
    dr_kim = demo_keys.load("dr-kim", DEMO_PASSWORD)
    revoke = new_tx(
        demo_node,
        "identity.revoke_key@1",
        "seoul-general.dr-kim",
        {"kid": dr_kim.kid, "reason": "laptop lost"},
        [dr_kim],
    )
    resp = post(client, revoke.raw)
    assert resp.json()["results"][0]["status"] == "ok", resp.text
    key = client.get("/v1/accounts/seoul-general.dr-kim").json()["keys"][0]
    assert key["status"] == "revoked" and key["reason"] == "laptop lost"
    before = head(client)
    again = new_tx(
        demo_node,
        "identity.revoke_key@1",
        "seoul-general.dr-kim",
        {"kid": dr_kim.kid, "reason": "again"},
        [dr_kim],
    )
    doc = assert_problem(post(client, again.raw), 403, "revoked_key")
    assert dr_kim.kid in doc["detail"]
    assert head(client) == before


# -- reads --------------------------------------------------------------------------------


def test_transaction_lookup_errors(client: TestClient) -> None:
    assert_problem(client.get(f"/v1/transactions/{'ab' * 32}"), 404, "not_found")
    assert_problem(client.get("/v1/transactions/xyz"), 400, "bad_id")
    assert_problem(client.get(f"/v1/transactions/{'ab' * 33}"), 400, "bad_id")


def test_blocks_list_and_detail(client: TestClient, demo_node: Node) -> None:
    for _ in range(2):
        assert post(client, patient_tx(demo_node)[0].raw).status_code == 200
    listing = client.get("/v1/blocks").json()
    head_height = listing["head"]
    assert head_height >= 3
    heights = [b["height"] for b in listing["blocks"]]
    assert heights == list(range(head_height, -1, -1))
    page = client.get("/v1/blocks", params={"limit": 2, "before": head_height}).json()
    assert [b["height"] for b in page["blocks"]] == [head_height - 1, head_height - 2]
    genesis = client.get("/v1/blocks/0").json()
    assert genesis["seal"] is None and genesis["transactions"] == []
    chain_info = client.get("/v1/chain").json()
    assert genesis["hash"] == chain_info["block0_hash"]
    assert (
        chain_info["genesis_sha256"]
        == hashlib.sha256(client.get("/v1/genesis").content).hexdigest()
    )
    top = client.get(f"/v1/blocks/{head_height}").json()
    assert top["hash"] == listing["blocks"][0]["hash"]
    assert base64.urlsafe_b64decode(top["header_b64"] + "==") == canonical_bytes(top["header"])
    assert top["seal"]["kid"] == top["header"]["proposer"]
    assert_problem(client.get(f"/v1/blocks/{head_height + 1}"), 404, "not_found")
    assert_problem(client.get("/v1/blocks/-1"), 400, "invalid_request")
    assert_problem(client.get("/v1/blocks", params={"limit": 0}), 400, "invalid_request")


def test_genesis_and_chain(client: TestClient, demo_node: Node) -> None:
    resp = client.get("/v1/genesis")
    assert resp.content == demo_node.genesis.raw
    assert resp.headers["content-type"] == "application/json"
    info = client.get("/v1/chain").json()
    assert info["chain"] == demo_node.genesis.chain == "carechain-demo"
    assert info["origin"] == demo_node.genesis.origin
    assert info["node_keys"] == [
        {
            "kid": demo_node.node_key.kid,
            "alg": "ed25519",
            "pub": b64u_encode(demo_node.node_key.public),
            "org": "seoul-general",
            "name": "seoul-general-node-1",
            "status": "active",
        }
    ]


def test_account_errors(client: TestClient) -> None:
    assert_problem(client.get("/v1/accounts/nobody-here"), 404, "not_found")
    assert_problem(client.get("/v1/accounts/NOT valid"), 400, "invalid")


def test_gone_is_410() -> None:
    """An erased object answers 410 (its own family), not 404; a plain absence stays 404."""
    from carechain.api.errors import status_for
    from carechain.errors import GoneError, NotFoundError

    assert status_for(GoneError("erased"))[0] == 410
    assert status_for(NotFoundError("absent"))[0] == 404


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/records/seoul-general/Observation/nothing-here", 404, "not_found"),
        ("/v1/records/seoul-general/Basic/x", 400, "bad_request"),
        ("/v1/records/Seoul%20General/Observation/x", 400, "bad_request"),
        ("/v1/records/seoul-general/Observation/bad%20id", 400, "bad_request"),
    ],
)
def test_record_anchor_lookup_rejections(
    client: TestClient, path: str, status: int, code: str
) -> None:
    resp = client.get(path)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code


def test_chain_info_lists_every_kind_the_contracts_accept(client: TestClient) -> None:
    kinds = client.get("/v1/chain").json()["kinds"]
    assert kinds == sorted(kinds)
    for kind in ("identity.register_patient@1", "records.anchor@1", "consent.grant@1",
                 "audit.record@1", "prescriptions.issue@1", "claims.submit@1"):  # fmt: skip
        assert kind in kinds, kind
