"""Issue 7's acceptance: across organisations with one node each.

A pharmacist of Hanbit (org B, node 1) reads an Observation that Seoul General (org A, node 0)
hosts. B's request is signed with B's own ledger key (SMART assertion at A's node); A decides on
consent with its own copy of the ledger, audits and serves; B checks the content against the
anchor in B's own node's ledger. The audit entry, permitted or denied, is on every node's ledger
and proven from B's node. Three in-process nodes share an in-memory etcd stand-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.client import Client, RecordsClient
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.errors import AuthorizationError
from carechain.ledger.block import header_hash
from carechain.node.chaindir import DEMO_PASSWORD, open_node
from carechain.node.consortium import init_consortium
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain, pub
from carechain.testing.cluster import MemoryEtcd, MemoryEtcdOrderer

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

ACCOUNT_SYSTEM = "urn:carechain:account"


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    base = tmp_path / "c"
    _, members = init_consortium(base, orgs=3, scrypt_n=FAST_SCRYPT_N)
    shared = MemoryEtcd()
    nodes = [open_node(m.root, orderer=MemoryEtcdOrderer(shared, m.node_kid)) for m in members]
    admins = Keyring(base / "admin", scrypt_n=FAST_SCRYPT_N)
    try:
        a, b = Chain(nodes[0], admins), Chain(nodes[1], admins)
        kim, lee, pt = generate_key(), generate_key(), generate_key()
        assert a.enroll("seoul-general", "dr-kim", kim).ok
        assert b.enroll("hanbit-pharmacy", "ph-lee", lee, role="pharmacist").ok
        patient = patient_account_id(pt.kid)
        reg = b.tx("identity.register_patient@1", patient, {"keys": [pub(pt)]}, [pt])
        assert b.run1(reg).ok
        # custodial keys live at each person's own organisation's node (ADR 0006)
        ring_a = Keyring(members[0].root, scrypt_n=FAST_SCRYPT_N)
        ring_a.import_key("dr-kim", kim, DEMO_PASSWORD, account="seoul-general.dr-kim")
        ring_a.import_key("patient-1", pt, DEMO_PASSWORD, account=patient)
        apps = [
            create_app(n, data_dir=m.root, base_url=f"http://{m.org}.example")
            for n, m in zip(nodes, members, strict=True)
        ]
        yield {"nodes": nodes, "members": members, "apps": apps, "lee": lee,
               "patient": patient, "genesis": (base / "genesis.json").read_bytes(),
               "tmp": tmp_path}  # fmt: skip
    finally:
        for n in nodes:
            n.stop()
            n.store.close()


def heads_agree(nodes: list[Any]) -> bool:
    return len({n.store.head_height() for n in nodes}) == 1


def on_every_ledger(nodes: list[Any], tx_hex: str) -> bool:
    return all(n.store.find_tx(bytes.fromhex(tx_hex)) is not None for n in nodes)


def consent(subject: str, grantee: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent", "status": "active", "decision": "permit",
        "subject": {"reference": subject},
        "provision": [{
            "actor": [{"reference": {"reference": grantee}}],
            "action": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": code}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                         "code": "TREAT"}],
        }],
    }  # fmt: skip


def test_a_record_hosted_by_a_is_read_by_b_with_consent_and_audited_everywhere(
    world: dict[str, Any],
) -> None:
    nodes, genesis, tmp = world["nodes"], world["genesis"], world["tmp"]
    patient = world["patient"]
    with (
        TestClient(world["apps"][0]) as at_a,
        TestClient(world["apps"][1]) as at_b,
    ):
        host = Client("http://testserver", genesis=genesis, trust_file=tmp / "a.json", http=at_a)
        own = Client("http://testserver", genesis=genesis, trust_file=tmp / "b.json", http=at_b)
        me = RecordsClient(host).login("patient-1", "demo")
        me.grant_consent(consent(f"Patient/{patient}", "Organization/seoul-general", "correct"))
        kim = RecordsClient(host).login("dr-kim", "demo")
        pid = kim.create({"resourceType": "Patient",
                          "identifier": [{"system": ACCOUNT_SYSTEM, "value": patient}],
                          "name": [{"family": "Hong"}]}).id  # fmt: skip
        obs = kim.create({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {"value": 72, "unit": "beats/minute"},
        })  # fmt: skip
        wait_for(lambda: heads_agree(nodes))

        # B's pharmacist, signed with B's own ledger key at A's node: no consent yet
        lee = RecordsClient(host, token=host.authenticate("hanbit-pharmacy.ph-lee", world["lee"]))
        with pytest.raises(AuthorizationError) as denied:
            lee.read_verified("Observation", str(obs.id), ledger=own)
        assert denied.value.code == "no_consent"
        deny_id = denied.value.audit_id  # type: ignore[attr-defined]
        wait_for(lambda: on_every_ledger(nodes, deny_id))
        proof = own.prove_inclusion(deny_id)  # proven from B's node
        assert proof.tx.tx.body.args["outcome"] == "deny"

        me.grant_consent(consent(f"Patient/{pid}", "Organization/hanbit-pharmacy", "access"))
        wait_for(lambda: heads_agree(nodes))
        got = lee.read_verified("Observation", str(obs.id), ledger=own)
        assert (got.org, got.version) == ("seoul-general", 1)
        assert got.resource["valueQuantity"]["value"] == 72
        assert got.audit_id is not None
        wait_for(lambda: on_every_ledger(nodes, str(got.audit_id)))
        entry = own.prove_inclusion(str(got.audit_id)).tx.tx.body.args
        assert (entry["actor"], entry["outcome"], entry["org"]) == (
            "hanbit-pharmacy.ph-lee", "permit", "seoul-general",
        )  # fmt: skip
        # every node computed the same chain
        wait_for(lambda: heads_agree(nodes))
        chains = {tuple(header_hash(b.header) for b in n.store.iter_blocks()) for n in nodes}
        assert len(chains) == 1
