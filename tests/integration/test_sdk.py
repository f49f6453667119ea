"""The SDK against a real node and the real API: build, submit, wait, prove.

Most tests go through FastAPI's ``TestClient`` (an ``httpx.Client``); one runs a real uvicorn
server on 127.0.0.1 in a thread, as ``carechain node`` does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.client import Client
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.errors import (
    AuthorizationError,
    CheckpointError,
    DuplicateTransactionError,
    NotFoundError,
    SignatureError,
    ValidationError,
)
from carechain.ledger.genesis import genesis_hash
from carechain.merkle import leaf_hash
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node


@pytest.fixture
def client(demo_node: Node, demo_chain: InitResult, tmp_path: Path) -> Iterator[Client]:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    trust = tmp_path / "trust.json"
    with TestClient(app) as http, Client("http://testserver", http=http, trust_file=trust) as c:
        yield c


def _pub(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def register_patient(client: Client, *keys: PrivateKey) -> str:
    account = patient_account_id(keys[0].kid)
    tx = client.build(
        "identity.register_patient@1", account, {"keys": [_pub(k) for k in keys]}, list(keys)
    )
    (result,) = client.submit(tx)
    assert result.ok, result
    return account


def test_trust_root_is_the_served_genesis(client: Client, demo_chain: InitResult) -> None:
    assert client.chain == "carechain-demo"
    assert client.root.raw == demo_chain.genesis.raw
    assert client.root.hash == genesis_hash(demo_chain.genesis.raw)
    assert client.root.origin == demo_chain.genesis.origin
    info = client.chain_info()
    assert info.chain == client.chain
    assert info.block0_hash == demo_chain.genesis.hash.hex()
    assert info.genesis_sha256 == hashlib.sha256(demo_chain.genesis.raw).hexdigest()


def test_build_submit_wait_prove(client: Client) -> None:
    key = generate_key()
    account = patient_account_id(key.kid)
    tx = client.build("identity.register_patient@1", account, {"keys": [_pub(key)]}, key)
    (result,) = client.submit(tx)
    assert result.ok and result.tx_id == tx.tx_id
    assert result.height is not None and result.log_index is not None

    record = client.get_tx(tx.tx_id.hex())
    assert record.envelope == tx.raw
    assert record.status == "ok"
    assert (record.height, record.log_index) == (result.height, result.log_index)

    proof = client.prove_inclusion(tx.tx_id)
    assert proof.leaf_index == result.log_index
    assert proof.leaf_hash == leaf_hash(tx.raw)
    assert proof.tree_size == client.checkpoint().size
    assert client.trusted is not None and proof.root == client.trusted.root

    block = client.get_block(result.height)
    assert tx.tx_id in [t.tx_id for t in block.transactions]
    assert block.header.log_size >= result.log_index + 1


def test_consistency_between_two_checkpoints(client: Client) -> None:
    first = client.checkpoint()
    register_patient(client, generate_key())
    register_patient(client, generate_key())
    second = client.checkpoint()
    assert second.size == first.size + 2
    result = client.prove_consistency(first.size, second.size)
    assert (result.root1, result.root2) == (first.root, second.root)
    older = client.prove_consistency(1, first.size)  # anchored through first → second
    assert older.root2 == first.root and older.anchor_proof


def test_historical_checkpoint(client: Client) -> None:
    register_patient(client, generate_key())
    cp1 = client.checkpoint_at(1)
    head = client.checkpoint()
    assert 0 < cp1.size < head.size
    assert client.prove_consistency(cp1.size, head.size).root1 == cp1.root


def test_batch_and_no_wait(client: Client) -> None:
    keys = [generate_key() for _ in range(3)]
    txs = [
        client.build(
            "identity.register_patient@1", patient_account_id(k.kid), {"keys": [_pub(k)]}, k
        )
        for k in keys
    ]
    results = client.submit(txs)
    assert [r.status for r in results] == ["ok"] * 3
    key = generate_key()
    late = client.build(
        "identity.register_patient@1", patient_account_id(key.kid), {"keys": [_pub(key)]}, key
    )
    (pending,) = client.submit(late, wait=False)
    assert pending.status in ("pending", "ok")
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client.get_tx(late.tx_id).status == "ok"
            break
        except NotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_replay_and_tampering_are_refused(client: Client) -> None:
    key = generate_key()
    account = patient_account_id(key.kid)
    tx = client.build("identity.register_patient@1", account, {"keys": [_pub(key)]}, key)
    client.submit(tx)
    with pytest.raises(DuplicateTransactionError, match=r"replay|already"):
        client.submit(tx)
    other = generate_key()
    fresh = client.build(
        "identity.register_patient@1", patient_account_id(other.kid), {"keys": [_pub(other)]}, other
    )
    sig = b64u_encode(fresh.sigs[0])
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    tampered = fresh.raw.replace(sig.encode(), flipped.encode())
    with pytest.raises(SignatureError):
        client.submit(tampered)


def test_contract_rejection_is_a_committed_result(client: Client) -> None:
    key = generate_key()
    account = register_patient(client, key)
    tx = client.build(
        "identity.register_member@1",
        account,
        {"account": "seoul-general.mallory", "keys": [_pub(generate_key())], "org": "seoul-general",
         "role": "practitioner"},
        key,
    )  # fmt: skip
    (result,) = client.submit(tx)
    assert result.status == "rejected" and result.code == "unauthorized"
    assert client.get_tx(tx.tx_id).status == "rejected"
    assert client.prove_inclusion(tx.tx_id).leaf_index == result.log_index  # the attempt is kept


def test_rotated_and_revoked_keys_cannot_sign(client: Client) -> None:
    k1, k3 = generate_key(), generate_key()
    account = register_patient(client, k1, k3)
    k2 = generate_key()
    rotate = client.build(
        "identity.rotate_key@1", account, {"keys": [_pub(k2)], "old": k1.kid}, [k1, k2]
    )
    assert client.submit(rotate)[0].ok
    revoke = client.build(
        "identity.revoke_key@1", account, {"kid": k3.kid, "reason": "lost phone"}, k2
    )
    assert client.submit(revoke)[0].ok
    for old in (k1, k3):
        later = client.build("identity.revoke_key@1", account, {"kid": k2.kid, "reason": "x"}, old)
        with pytest.raises(AuthorizationError) as info:
            client.submit(later)
        assert info.value.code == "revoked_key"


def test_demo_member_keys_sign(client: Client, demo_keys: Keyring) -> None:
    admin = demo_keys.load("seoul-general-admin", DEMO_PASSWORD)
    tx = client.build(
        "identity.register_member@1",
        "seoul-general.admin",
        {"account": "seoul-general.dr-lee", "keys": [_pub(generate_key())], "org": "seoul-general",
         "role": "practitioner"},
        admin,
    )  # fmt: skip
    assert client.submit(tx)[0].ok


def test_trust_file_survives_and_detects_rollback(
    client: Client, demo_node: Node, demo_chain: InitResult, tmp_path: Path
) -> None:
    register_patient(client, generate_key())
    trusted = client.checkpoint()
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    with TestClient(app) as http:
        again = Client("http://testserver", http=http, trust_file=tmp_path / "trust.json")
        assert again.trusted is not None and again.trusted.size == trusted.size
        old_note = http.get("/v1/checkpoint", params={"height": 0}).content
        with pytest.raises(CheckpointError, match="rollback"):
            again.trust.update(old_note, lambda a, b: [])


def test_block_zero_and_unknown_block(client: Client, demo_chain: InitResult) -> None:
    block = client.get_block(0)
    assert block.hash == demo_chain.genesis.hash
    assert block.seal is None
    with pytest.raises(NotFoundError):
        client.get_block(10_000)
    with pytest.raises(ValidationError):
        client.get_block(-1)


def test_over_real_http(live_url: str, demo_chain: InitResult) -> None:
    with Client(live_url, genesis=demo_chain.genesis.raw) as client:
        client.check_genesis()
        account = register_patient(client, generate_key())
        assert client.account(account)
        assert client.health()
        key = generate_key()
        tx = client.build(
            "identity.register_patient@1", patient_account_id(key.kid), {"keys": [_pub(key)]}, key
        )
        client.submit(tx, timeout=30)
        assert client.prove_inclusion(tx.tx_id).tx.tx_id == tx.tx_id


def test_authenticate_with_a_member_key(client: Client, demo_keys: Keyring) -> None:
    key = demo_keys.load("dr-kim", DEMO_PASSWORD)
    token = client.authenticate("seoul-general.dr-kim", key, scope="system/*.read")
    assert token
    who = client.api.get_json("/v1/auth/whoami")
    assert who["account"] == "seoul-general.dr-kim"
    assert who["kid"] == key.kid
