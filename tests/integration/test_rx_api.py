"""Prescriptions over HTTP on a live node: exactly-once under concurrency, verify, PDMP, report.

The concurrency acceptance test fires well over 100 simultaneous dispense requests (custodial
``POST /v1/prescriptions/{id}/dispense``) for one prescription, over repeated trials: exactly the
prescribed quantity is dispensed, and every other attempt is answered 422 with the id of a
rejected receipt that is committed in a block.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.crypto.keystore import Keyring
from carechain.encoding import b64u_encode
from carechain.node.chaindir import InitResult, init_chain, open_node
from carechain.node.node import Node, now_ms
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

DAY = 86_400_000
OXY = {
    "rxnorm": "1049621",
    "name": "oxycodone hydrochloride",
    "strength": "10 mg",
    "form": "tablet",
}


def login(url: str, key: str) -> dict[str, str]:
    r = httpx.post(f"{url}/v1/auth/login", json={"key": key, "password": "demo"}, timeout=60)
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


def issue(url: str, auth: dict[str, str], patient: str, **over: Any) -> str:
    now = now_ms()
    body: dict[str, Any] = {
        "days_supply": 10,
        "digest": b64u_encode(bytes(range(32))),
        "earliest_fill": now - DAY,
        "expires": now + 30 * DAY,
        "medication": OXY,
        "patient": patient,
        "quantity": 60,
        "refills": 0,
        "schedule": "II",
        **over,
    }
    r = httpx.post(f"{url}/v1/prescriptions", json=body, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    return str(r.json()["id"])


def receipt_of(node: Node, tx_hex: str) -> dict[str, Any]:
    loc = node.store.find_tx(bytes.fromhex(tx_hex))
    assert loc is not None, f"{tx_hex} is not committed"
    raw = node.store.find_receipt(loc.log_index)
    assert raw is not None
    return dict(orjson.loads(raw))


@pytest.mark.parametrize("per_request", [1, 7, 30])
def test_concurrent_dispenses_exactly_once(
    live_url: str, chain: Chain, demo_node: Node, per_request: int
) -> None:
    """120 simultaneous requests per trial, three trials (1, 7 or 30 units each)."""
    patient = chain.account("patient-1")
    doctor, pharmacist = login(live_url, "dr-kim"), login(live_url, "ph-lee")
    n_requests, quantity = 120, 30
    for _trial in range(3):
        rx = issue(live_url, doctor, patient, quantity=quantity)
        barrier = threading.Barrier(n_requests)

        def fire(_: int, rx: str = rx, barrier: threading.Barrier = barrier) -> httpx.Response:
            with httpx.Client(timeout=120) as http:
                barrier.wait()
                return http.post(
                    f"{live_url}/v1/prescriptions/{rx}/dispense",
                    json={"patient": patient, "quantity": per_request},
                    headers=pharmacist,
                )

        with ThreadPoolExecutor(max_workers=n_requests) as pool:
            responses = list(pool.map(fire, range(n_requests)))
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert {r.status_code for r in refused} <= {422}, [r.text for r in refused[:3]]
        assert len(ok) + len(refused) == n_requests
        dispensed = per_request * len(ok)
        want = quantity - quantity % per_request  # 30, 28 (4 × 7: 2 left, none fits), 30
        assert dispensed == want
        state = chain.state(f"rx/{rx}")
        assert state["dispensed"] == want and len(state["fills"]) == len(ok)
        codes = Counter(r.json()["code"] for r in refused)
        assert set(codes) <= {"quantity_exceeds_remaining", "completed"}, codes
        for r in refused:  # every refused attempt is evidence kept in a block
            body = r.json()
            assert r.headers["content-type"].startswith("application/problem+json")
            assert receipt_of(demo_node, body["tx"])["status"] == "rejected"
        heights = {r.json()["height"] for r in responses}
        assert len(heights) < n_requests  # many attempts shared blocks: real concurrency
    chain.verify()


def test_verify_pdmp_and_report(live_url: str, chain: Chain) -> None:
    patient = chain.account("patient-1")
    doctor, pharmacist = login(live_url, "dr-kim"), login(live_url, "ph-lee")
    nurse, auditor = login(live_url, "nurse-park"), login(live_url, "auditor-choi")
    rx = issue(live_url, doctor, patient)
    url = f"{live_url}/v1/prescriptions/{rx}"
    # partial fill of 20 (covers 4 days at 90 MME/day), then a double fill refused
    r = httpx.post(
        f"{url}/dispense", json={"patient": patient, "quantity": 20}, headers=pharmacist, timeout=60
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{url}/dispense", json={"patient": patient, "quantity": 60}, headers=pharmacist, timeout=60
    )
    assert r.status_code == 422 and r.json()["code"] == "quantity_exceeds_remaining"
    # verify: pharmacist allowed and audited; unregistered nurse refused and audited
    v = httpx.get(url, headers=pharmacist, timeout=60)
    assert v.status_code == 200
    assert v.json()["remaining"] == 40 and v.json()["status"] == "valid"
    assert v.json()["prescriber"]["credential_at_issue"]["number"] == "AK2047175"
    assert v.headers["x-audit-entry"] == v.json()["audit_entry"]
    denied = httpx.get(url, headers=nurse, timeout=60)
    assert denied.status_code == 403 and denied.json()["code"] == "not_registered"
    fhir = httpx.get(url, params={"format": "fhir"}, headers=pharmacist, timeout=60)
    assert fhir.status_code == 200
    kinds = [e["resource"]["resourceType"] for e in fhir.json()["entry"]]
    assert kinds == ["MedicationRequest", "MedicationDispense"]
    assert httpx.get(f"{live_url}/v1/prescriptions/zz", headers=pharmacist).status_code == 400
    assert httpx.get(url).status_code == 401
    # PDMP: no consent → 403, audited as a denial
    before = chain.state(f"auditn/{patient}") or 0
    p = httpx.get(f"{live_url}/v1/pdmp/{patient}", headers=doctor, timeout=60)
    assert p.status_code == 403 and p.json()["code"] == "no_consent"
    assert chain.state(f"auditn/{patient}") == before + 1
    last = chain.state(f"audit/{patient}/{before:010d}")
    assert (last["action"], last["outcome"], last["actor"]) == (
        "search",
        "deny",
        "seoul-general.dr-kim",
    )
    # the patient grants dr-kim read for TREAT: the query is permitted, flagged and audited
    assert chain.run1(chain.grant()).ok
    p = httpx.get(f"{live_url}/v1/pdmp/{patient}", headers=doctor, timeout=60)
    assert p.status_code == 200, p.text
    report = p.json()
    assert [f["code"] for f in report["flags"]] == ["high_mme"]
    assert report["max_daily_mme_milli"] == 90_000
    assert report["basis"]["kind"] == "consent"
    entry = chain.state(f"audit/{patient}/{before + 1:010d}")
    assert (entry["outcome"], entry["basis"]["kind"]) == ("permit", "consent")
    # a clerk-like role (auditor) may not query the PDMP at all, and that is audited too
    assert httpx.get(f"{live_url}/v1/pdmp/{patient}", headers=auditor).status_code == 403
    # the EPCS report of the day lists the refused dispense
    day = dt.datetime.now(dt.UTC).date().isoformat()
    rep = httpx.get(
        f"{live_url}/v1/prescriptions-report", params={"day": day}, headers=auditor, timeout=60
    )
    assert rep.status_code == 200
    events = Counter(e["event"] for e in rep.json()["events"])
    assert events["refused_dispense"] >= 1 and events["prescriptions.issue"] >= 1
    assert events["credentials.register_prescriber"] >= 0
    assert events["access_deny"] >= 2
    assert (
        httpx.get(
            f"{live_url}/v1/prescriptions-report", params={"day": day}, headers=doctor
        ).status_code
        == 403
    )


def test_rejections_through_http_are_problem_documents(live_url: str, chain: Chain) -> None:
    patient = chain.account("patient-1")
    doctor, pharmacist = login(live_url, "dr-kim"), login(live_url, "ph-lee")
    r = httpx.post(
        f"{live_url}/v1/prescriptions", json={"patient": patient}, headers=pharmacist, timeout=60
    )
    assert r.status_code == 422 and r.json()["code"] == "not_a_prescriber"
    rx = issue(live_url, doctor, patient)
    r = httpx.post(
        f"{live_url}/v1/prescriptions/{rx}/cancel",
        json={"reason": "x"},
        headers=pharmacist,
        timeout=60,
    )
    assert r.status_code == 422 and r.json()["code"] == "unauthorized"
    r = httpx.post(
        f"{live_url}/v1/prescriptions/{rx}/cancel", json={"reason": "x"}, headers=doctor, timeout=60
    )
    assert r.status_code == 200
    r = httpx.post(
        f"{live_url}/v1/prescriptions/{rx}/dispense",
        json={"patient": patient, "quantity": 1},
        headers=pharmacist,
        timeout=60,
    )
    assert r.status_code == 422 and r.json()["code"] == "cancelled"
    r = httpx.post(f"{live_url}/v1/prescriptions", content=b"[", headers=doctor, timeout=60)
    assert r.status_code == 400


# -- the PDMP legal basis (``rules.prescriptions.pdmp.legal_basis_roles`` set in the genesis) ----

STATUTE = {"prescriptions": {"pdmp": {"legal_basis_roles": ["pharmacist"]}}}


@pytest.fixture
def statute_chain(tmp_path: Path) -> Iterator[tuple[Chain, Path]]:
    """A demo consortium (with the domain demo data) whose genesis lets registered pharmacists
    query the PDMP without the patient's consent."""
    result = init_chain(tmp_path / "chain", demo=True, domains=True, rules=STATUTE,
                        scrypt_n=FAST_SCRYPT_N)  # fmt: skip
    assert result.genesis.doc["rules"] == STATUTE
    node = open_node(result.paths.root)
    try:
        yield Chain(node, Keyring(result.paths.root, scrypt_n=FAST_SCRYPT_N)), result.paths.root
    finally:
        node.stop()
        node.store.close()


def _pdmp(client: TestClient, key: str, patient: str) -> httpx.Response:
    r = client.post("/v1/auth/login", json={"key": key, "password": "demo"})
    assert r.status_code == 200, r.text
    auth = {"authorization": f"Bearer {r.json()['access_token']}"}
    return client.get(f"/v1/pdmp/{patient}", headers=auth)


def test_pdmp_legal_basis_from_the_genesis(statute_chain: tuple[Chain, Path]) -> None:
    chain, root = statute_chain
    rules = chain.state("rules/prescriptions")
    assert rules["pdmp"]["legal_basis_roles"] == ["pharmacist"]
    patient = chain.account("patient-1")
    app = create_app(chain.node, data_dir=root)
    with TestClient(app) as client:
        # a registered pharmacist, no consent: permitted by law, audited as such
        n = chain.state(f"auditn/{patient}") or 0
        r = _pdmp(client, "ph-lee", patient)
        assert r.status_code == 200, r.text
        assert r.json()["basis"] == {"kind": "law"}
        entry = chain.state(f"audit/{patient}/{n:010d}")
        assert entry["tx"] == r.headers["x-audit-entry"] == r.json()["audit_entry"]
        assert (entry["actor"], entry["action"], entry["outcome"]) == (
            "hanbit-pharmacy.ph-lee",
            "search",
            "permit",
        )
        assert (entry["basis"]["kind"], entry["reason"]) == ("law", "pdmp_statute")
        # negative controls: roles outside the statute still need the patient's consent
        for key in ("dr-kim", "nurse-park"):
            r = _pdmp(client, key, patient)
            assert r.status_code == 403 and r.json()["code"] == "no_consent", r.text
        # the statute covers registered pharmacists only: revoked, ph-lee is refused too
        admin, key = chain.admin("hanbit-pharmacy")
        revoke = {"kind": "pharmacist", "reason": "test", "subject": "hanbit-pharmacy.ph-lee"}
        assert chain.run1(chain.tx("credentials.revoke@1", admin, revoke, [key])).ok
        r = _pdmp(client, "ph-lee", patient)
        assert r.status_code == 403 and r.json()["code"] == "no_consent", r.text
        last = chain.state(f"audit/{patient}/{(chain.state(f'auditn/{patient}') - 1):010d}")
        assert (last["actor"], last["outcome"]) == ("hanbit-pharmacy.ph-lee", "deny")


def test_pdmp_without_a_legal_basis_needs_consent(live_url: str, chain: Chain) -> None:
    """Negative control on the demo chain (no statute): the same pharmacist is refused."""
    assert chain.state("rules/prescriptions")["pdmp"]["legal_basis_roles"] == []
    patient = chain.account("patient-1")
    r = httpx.get(f"{live_url}/v1/pdmp/{patient}", headers=login(live_url, "ph-lee"), timeout=60)
    assert r.status_code == 403 and r.json()["code"] == "no_consent"


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
