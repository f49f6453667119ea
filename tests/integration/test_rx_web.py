"""The prescription pages (``carechain.web.rx``) on the demo chain, through the portal session.

Every page's error paths: wrong role, no session, CSRF, each bad form field (a precise message
on the page, nothing submitted), contract refusals (the rejected receipt's reason, kept in its
block), refused reads (verify, PDMP: reason and audit entry). The happy paths run in a real
browser in ``test_rx_browser.py``; here they run once each as negative-control baselines.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.encoding import b64u_decode, b64u_encode
from carechain.node.chaindir import InitResult
from carechain.node.node import Node, now_ms
from carechain.testing.chain_driver import Chain

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

DAY = 86_400_000
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
DR = "seoul-general.dr-kim"
OXY = {
    "rxnorm": "1049621",
    "name": "oxycodone hydrochloride",
    "strength": "10 mg",
    "form": "tablet",
}


@pytest.fixture
def app(demo_node: Node, demo_chain: InitResult) -> FastAPI:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    assert app.state.records is not None
    return app


@pytest.fixture
def new_client(app: FastAPI) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make() -> TestClient:
        c = TestClient(app, follow_redirects=False)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def csrf(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, page[:2000]
    return match.group(1)


def signed_in(new_client: Any, key: str) -> TestClient:
    client: TestClient = new_client()
    page = client.get("/portal/login")
    resp = client.post(
        "/portal/login", data={"key": key, "password": "demo", "csrf": csrf(page.text)}
    )
    assert resp.status_code == 303, resp.text
    return client


def token_of(client: TestClient, page: str) -> str:
    resp = client.get(page)
    assert resp.status_code in (200, 403), resp.text
    return csrf(resp.text)


def text_of(page: str, element_id: str) -> str:
    """The text of the element with ``id`` (tags stripped, entities decoded)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|code|div|span)>', page, re.S)
    assert match, f"no #{element_id} in page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def issue_api(client: TestClient, patient: str, **over: Any) -> str:
    login = client.post("/v1/auth/login", json={"key": "dr-kim", "password": "demo"})
    assert login.status_code == 200, login.text
    now = now_ms()
    body = {
        "days_supply": 10, "digest": b64u_encode(bytes(32)), "earliest_fill": now - DAY,
        "expires": now + 30 * DAY, "medication": OXY, "patient": patient, "quantity": 60,
        "refills": 0, "schedule": "II", **over,
    }  # fmt: skip
    auth = {"authorization": f"Bearer {login.json()['access_token']}"}
    r = client.post("/v1/prescriptions", content=orjson.dumps(body), headers=auth)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def issue_form(patient: str, **over: str) -> dict[str, str]:
    today = now_ms()
    import datetime as dt

    def day(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()

    form = {
        "patient": patient, "rxnorm": OXY["rxnorm"], "name": OXY["name"],
        "strength": OXY["strength"], "form": OXY["form"], "schedule": "II", "quantity": "60",
        "days_supply": "10", "refills": "0", "earliest_fill": day(today),
        "expires": day(today + 30 * DAY), "pharmacy": "",
    }  # fmt: skip
    form.update(over)
    return form


def receipt_status(chain: Chain, tx_hex: str) -> str:
    loc = chain.node.store.find_tx(bytes.fromhex(tx_hex))
    assert loc is not None
    raw = chain.node.store.find_receipt(loc.log_index)
    assert raw is not None
    return str(orjson.loads(raw)["status"])


# -- who may see what ----------------------------------------------------------------------------


def test_rx_home_by_role(new_client: Any) -> None:
    anonymous = new_client()
    for page in ("/portal/rx", "/portal/rx/prescriber", "/portal/rx/pharmacy"):
        resp = anonymous.get(page)
        assert resp.status_code == 303 and resp.headers["location"].endswith("/portal/login")
    resp = anonymous.post("/portal/rx/prescriber/issue", data={"csrf": "x"})
    assert resp.status_code == 303 and resp.headers["location"].endswith("/portal/login")
    dr = signed_in(new_client, "dr-kim")
    assert dr.get("/portal/rx").headers["location"].endswith("/portal/rx/prescriber")
    ph = signed_in(new_client, "ph-lee")
    assert ph.get("/portal/rx").headers["location"].endswith("/portal/rx/pharmacy")
    for key in ("patient-1", "auditor-choi"):
        other = signed_in(new_client, key)
        resp = other.get("/portal/rx")
        assert resp.status_code == 403 and "prescribers and pharmacists" in resp.text


def test_pages_refuse_the_wrong_role(new_client: Any, chain: Chain) -> None:
    before = chain.state(f"rxidx/prescriber/{DR}")
    dr, ph = signed_in(new_client, "dr-kim"), signed_in(new_client, "ph-lee")
    resp = ph.get("/portal/rx/prescriber")
    assert resp.status_code == 403 and "For prescribers" in resp.text
    resp = dr.get("/portal/rx/pharmacy")
    assert resp.status_code == 403 and "For pharmacists" in resp.text
    token = token_of(ph, "/portal/rx/pharmacy")
    form = {**issue_form(chain.account("patient-1")), "csrf": token}
    resp = ph.post("/portal/rx/prescriber/issue", data=form)
    assert resp.status_code == 403 and "For prescribers" in resp.text
    token = token_of(dr, "/portal/rx/prescriber")
    resp = dr.post(
        "/portal/rx/pharmacy/0123456789abcdef/dispense",
        data={"csrf": token, "patient": chain.account("patient-1"), "quantity": "1"},
    )
    assert resp.status_code == 403 and "For pharmacists" in resp.text
    assert chain.state(f"rxidx/prescriber/{DR}") == before


def test_posts_need_the_sessions_csrf_token(new_client: Any, chain: Chain) -> None:
    before = chain.state(f"rxidx/prescriber/{DR}")
    dr = signed_in(new_client, "dr-kim")
    form = issue_form(chain.account("patient-1"))
    for token in (None, "", "0" * 64):
        data = form if token is None else {**form, "csrf": token}
        resp = dr.post("/portal/rx/prescriber/issue", data=data)
        assert resp.status_code == 403 and text_of(resp.text, "reason") == "csrf"
    other = signed_in(new_client, "nurse-park")  # another session's token does not work either
    resp = dr.post(
        "/portal/rx/prescriber/issue",
        data={**form, "csrf": token_of(other, "/portal/rx/prescriber")},
    )
    assert resp.status_code == 403
    resp = dr.post("/portal/rx/prescriber/issue", json=form)  # not a form at all
    assert resp.status_code == 403
    assert chain.state(f"rxidx/prescriber/{DR}") == before


# -- the prescriber's page ------------------------------------------------------------------------

BAD_ISSUE = {
    "patient": ({"patient": "not a patient!"}, "patient: 'not a patient!' is not a patient"),
    "rxnorm": ({"rxnorm": "OXY10"}, "RxNorm code: want 1 to 12 digits, got 'OXY10'"),
    "name-missing": ({"name": ""}, "medication name: required"),
    "name-control": ({"name": "oxy\x01"}, "medication name: at most 200 printable"),
    "schedule": ({"schedule": "I"}, "schedule: choose one of II, III, IV, V"),
    "quantity-word": ({"quantity": "ten"}, "quantity: want a whole number ≥ 1, got 'ten'"),
    "quantity-zero": ({"quantity": "0"}, "quantity: want a whole number ≥ 1, got '0'"),
    "quantity-huge": ({"quantity": "1" * 12}, "quantity: want a whole number ≥ 1"),
    "days-empty": ({"days_supply": ""}, "days' supply: want a whole number ≥ 1, got ''"),
    "refills-negative": ({"refills": "-1"}, "refills: want a whole number ≥ 0, got '-1'"),
    "earliest-format": ({"earliest_fill": "2026/12/01"}, "earliest fill date: want a date"),
    "expires-not-a-day": ({"expires": "2027-02-30"}, "expiry date: '2027-02-30' is not a"),
    "expires-first": (
        {"earliest_fill": "2027-01-10", "expires": "2027-01-09"},
        "expiry date: must be after the earliest fill date",
    ),
    "pharmacy": ({"pharmacy": "Hanbit Pharmacy"}, "pharmacy: 'Hanbit Pharmacy' is not an"),
}


@pytest.mark.parametrize("over,message", list(BAD_ISSUE.values()), ids=list(BAD_ISSUE))
def test_issue_form_errors(
    new_client: Any, chain: Chain, over: dict[str, str], message: str
) -> None:
    before, height = chain.state(f"rxidx/prescriber/{DR}"), chain.height()
    dr = signed_in(new_client, "dr-kim")
    token = token_of(dr, "/portal/rx/prescriber")
    form = {**issue_form(chain.account("patient-1")), **over, "csrf": token}
    resp = dr.post("/portal/rx/prescriber/issue", data=form)
    assert resp.status_code == 400
    assert text_of(resp.text, "form-error").startswith(message)
    assert "Traceback" not in resp.text
    assert 'id="issue"' in resp.text  # the form again, with what was typed
    assert chain.state(f"rxidx/prescriber/{DR}") == before and chain.height() == height


def test_issue_refusal_and_cancel_through_the_forms(new_client: Any, chain: Chain) -> None:
    patient = chain.account("patient-1")
    dr = signed_in(new_client, "dr-kim")
    token = token_of(dr, "/portal/rx/prescriber")
    # negative-control baseline: a valid form issues
    resp = dr.post("/portal/rx/prescriber/issue", data={**issue_form(patient), "csrf": token})
    assert resp.status_code == 303, resp.text
    rx = re.search(r"rx=([0-9a-f]{16})", resp.headers["location"])
    assert rx
    rx_id = rx.group(1)
    state = chain.state(f"rx/{rx_id}")
    assert state["prescriber"] == DR and state["quantity"] == 60
    assert len(b64u_decode(state["digest"])) == 32
    page = dr.get(resp.headers["location"])
    assert (
        "Prescription issued" in text_of(page.text, "notice") and f'data-rx="{rx_id}"' in page.text
    )
    # the contract refuses a refill of schedule II: the rejected receipt is on the page
    resp = dr.post(
        "/portal/rx/prescriber/issue", data={**issue_form(patient, refills="1"), "csrf": token}
    )
    assert resp.status_code == 422
    assert text_of(resp.text, "refused-code") == "refills_not_allowed"
    assert "may not be refilled" in text_of(resp.text, "refused-msg")
    tx = re.search(r'href="/tx/([0-9a-f]{64})"><code class="hash" id="refused-tx"', resp.text)
    assert tx and receipt_status(chain, tx.group(1)) == "rejected"
    # cancel: form errors, someone else's, then the prescriber's own, then again
    resp = dr.post(f"/portal/rx/prescriber/{rx_id}/cancel", data={"csrf": token, "reason": ""})
    assert resp.status_code == 400 and "cancel reason: state why" in text_of(
        resp.text, "form-error"
    )
    resp = dr.post("/portal/rx/prescriber/XYZ/cancel", data={"csrf": token, "reason": "x"})
    assert resp.status_code == 400
    assert "prescription id: got 'XYZ'" in text_of(resp.text, "form-error")
    nurse = signed_in(new_client, "nurse-park")
    resp = nurse.post(
        f"/portal/rx/prescriber/{rx_id}/cancel",
        data={"csrf": token_of(nurse, "/portal/rx/prescriber"), "reason": "not mine"},
    )
    assert resp.status_code == 422 and text_of(resp.text, "refused-code") == "unauthorized"
    assert chain.state(f"rx/{rx_id}")["status"] == "active"
    resp = dr.post(
        f"/portal/rx/prescriber/{rx_id}/cancel", data={"csrf": token, "reason": "dose changed"}
    )
    assert resp.status_code == 303 and "notice=cancelled" in resp.headers["location"]
    assert chain.state(f"rx/{rx_id}")["cancelled"]["reason"] == "dose changed"
    resp = dr.post(f"/portal/rx/prescriber/{rx_id}/cancel", data={"csrf": token, "reason": "again"})
    assert resp.status_code == 422 and text_of(resp.text, "refused-code") == "cancelled"


def test_pdmp_on_the_prescriber_page(new_client: Any, chain: Chain) -> None:
    patient = chain.account("patient-1")
    dr, ph = signed_in(new_client, "dr-kim"), signed_in(new_client, "ph-lee")
    rx = issue_api(dr, patient)
    token = token_of(ph, "/portal/rx/pharmacy")
    ph.post(
        f"/portal/rx/pharmacy/{rx}/dispense",
        data={"csrf": token, "patient": patient, "quantity": "20"},
    )
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": "no such patient"})
    assert resp.status_code == 400 and "is not a patient account id" in resp.text
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": patient, "purpose": "HMARKT"})
    assert resp.status_code == 400 and "purpose: choose one of" in text_of(resp.text, "pdmp-error")
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": "pt-nobody"})
    assert resp.status_code == 404 and "no patient pt-nobody" in text_of(resp.text, "pdmp-error")
    # no consent: refused, with the reason and the audit entry of the denial
    audits = chain.state(f"auditn/{patient}") or 0
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": patient})
    assert resp.status_code == 403 and text_of(resp.text, "pdmp-reason") == "no_consent"
    assert 'id="pdmp-flags"' not in resp.text
    assert chain.state(f"auditn/{patient}") == audits + 1
    # the patient's consent: permitted, the high-MME flag shown
    assert chain.run1(chain.grant()).ok
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": patient, "purpose": "TREAT"})
    assert resp.status_code == 200, resp.text
    assert 'data-flag="high_mme"' in resp.text
    assert text_of(resp.text, "pdmp-mme") == "90.0"
    assert chain.state(f"auditn/{patient}") == audits + 2


# -- the pharmacist's page -------------------------------------------------------------------------


def test_verify_dispense_and_a_refused_double_fill(new_client: Any, chain: Chain) -> None:
    patient = chain.account("patient-1")
    dr, ph = signed_in(new_client, "dr-kim"), signed_in(new_client, "ph-lee")
    rx = issue_api(dr, patient)
    page = ph.get("/portal/rx/pharmacy", params={"rx": rx})
    assert page.status_code == 200
    assert text_of(page.text, "rx-status") == "valid" and text_of(page.text, "remaining") == "60"
    assert "AK2047175" in text_of(page.text, "credential")
    token = csrf(page.text)
    resp = ph.post(
        f"/portal/rx/pharmacy/{rx}/dispense",
        data={"csrf": token, "patient": patient, "quantity": "20"},
    )
    assert resp.status_code == 303, resp.text
    page = ph.get(resp.headers["location"])
    assert "Dispensed" in text_of(page.text, "notice") and text_of(page.text, "remaining") == "40"
    resp = ph.post(
        f"/portal/rx/pharmacy/{rx}/dispense",
        data={"csrf": token, "patient": patient, "quantity": "60"},
    )
    assert resp.status_code == 422
    assert text_of(resp.text, "refused-code") == "quantity_exceeds_remaining"
    assert "60 requested, 40 remain" in text_of(resp.text, "refused-msg")
    tx = re.search(r'href="/tx/([0-9a-f]{64})"><code class="hash" id="refused-tx"', resp.text)
    assert tx and receipt_status(chain, tx.group(1)) == "rejected"
    assert text_of(resp.text, "remaining") == "40"  # the state as it is, after the refusal
    assert chain.state(f"rx/{rx}")["dispensed"] == 20


def test_pharmacy_page_errors(new_client: Any, chain: Chain) -> None:
    patient = chain.account("patient-1")
    dr, ph = signed_in(new_client, "dr-kim"), signed_in(new_client, "ph-lee")
    rx = issue_api(dr, patient)
    resp = ph.get("/portal/rx/pharmacy", params={"rx": "zz"})
    assert resp.status_code == 400
    assert text_of(resp.text, "form-error") == "prescription id: got 'zz', want 16 hex digits"
    resp = ph.get("/portal/rx/pharmacy", params={"rx": "0123456789abcdef"})
    assert resp.status_code == 404
    assert text_of(resp.text, "form-error") == "no prescription 0123456789abcdef"
    token = token_of(ph, "/portal/rx/pharmacy")
    for data, message in (
        ({"patient": "", "quantity": "1"}, "patient: '' is not a patient account id"),
        ({"patient": patient, "quantity": "abc"}, "quantity: want a whole number ≥ 1, got 'abc'"),
        ({"patient": patient, "quantity": "0"}, "quantity: want a whole number ≥ 1, got '0'"),
    ):
        resp = ph.post(f"/portal/rx/pharmacy/{rx}/dispense", data={"csrf": token, **data})
        assert resp.status_code == 400 and text_of(resp.text, "form-error") == message
    assert chain.state(f"rx/{rx}")["fills"] == []  # nothing was dispensed (only audited verifies)
    resp = ph.post(
        "/portal/rx/pharmacy/0123456789abcdef/dispense",
        data={"csrf": token, "patient": patient, "quantity": "1"},
    )
    assert resp.status_code == 404 and "no prescription" in text_of(resp.text, "form-error")
    resp = ph.post(
        "/portal/rx/pharmacy/NOTANID/dispense",
        data={"csrf": token, "patient": patient, "quantity": "1"},
    )
    assert resp.status_code == 400
    assert "prescription id: got 'NOTANID'" in text_of(resp.text, "form-error")
    other = chain.account("patient-2")
    resp = ph.post(
        f"/portal/rx/pharmacy/{rx}/dispense",
        data={"csrf": token, "patient": other, "quantity": "1"},
    )
    assert resp.status_code == 422 and text_of(resp.text, "refused-code") == "patient_mismatch"
    assert chain.state(f"rx/{rx}")["dispensed"] == 0


def test_infrastructure_failures_are_messages_not_traces(
    new_client: Any, chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit entry that cannot be committed refuses the read with a message (503)."""
    from carechain.errors import InfrastructureError
    from carechain.node.rx import RxService

    def broken(*_: Any, **__: Any) -> Any:
        raise InfrastructureError("the audit entry could not be committed", code="audit_failed")

    patient = chain.account("patient-1")
    dr, ph = signed_in(new_client, "dr-kim"), signed_in(new_client, "ph-lee")
    rx = issue_api(dr, patient)
    odd = ph.get(  # a forged notice link is ignored, never a crash
        "/portal/rx/pharmacy",
        params={"rx": rx, "notice": "dispensed", "tx": "0" * 64, "height": "²"},
    )
    assert odd.status_code == 200 and "Transaction" not in text_of(odd.text, "notice")
    monkeypatch.setattr(RxService, "verify", broken)
    monkeypatch.setattr(RxService, "pdmp", broken)
    resp = ph.get("/portal/rx/pharmacy", params={"rx": rx})
    assert resp.status_code == 503
    assert text_of(resp.text, "form-error") == "the audit entry could not be committed"
    resp = dr.get("/portal/rx/prescriber", params={"pdmp": patient})
    assert resp.status_code == 503
    assert text_of(resp.text, "pdmp-error") == "the audit entry could not be committed"


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains


def test_issue_form_keeps_the_medication_request_off_chain(
    new_client: Any, chain: Chain, app: FastAPI
) -> None:
    """With a Patient record at the hospital and the patient's write consent, the form's
    MedicationRequest is stored as a record and the prescription commits to its anchor; without
    the consent the page says why and nothing is issued; without a Patient record the form's
    keyed digest stays an opaque commitment (the earlier behaviour, a negative control)."""
    from carechain.node.records_api import Actor

    patient = chain.account("patient-1")
    dr = signed_in(new_client, "dr-kim")
    resp = dr.post(
        "/portal/rx/prescriber/issue",
        data={**issue_form(patient), "csrf": token_of(dr, "/portal/rx/prescriber")},
    )
    assert resp.status_code == 303, resp.text  # no Patient record here: not linked
    rx = re.search(r"rx=([0-9a-f]{16})", resp.headers["location"])
    assert rx and "record" not in chain.state(f"rx/{rx[1]}")

    grant = chain.run1(chain.grant(actions=["read", "write"], grantee={"org": "seoul-general"}))
    assert grant.ok
    records = app.state.records
    kim = records.actor(DR, chain.key("dr-kim"))
    records.create(
        kim,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:carechain:account", "value": patient}],
        },
    )
    resp = dr.post(
        "/portal/rx/prescriber/issue",
        data={**issue_form(patient), "csrf": token_of(dr, "/portal/rx/prescriber")},
    )
    assert resp.status_code == 303, resp.text
    rx = re.search(r"rx=([0-9a-f]{16})", resp.headers["location"])
    assert rx
    stored = chain.state(f"rx/{rx[1]}")
    link = stored["record"]
    anchor = chain.state(f"rec/seoul-general/MedicationRequest/{link['id']}")
    assert anchor["versions"][link["version"] - 1]["digest"] == stored["digest"]
    assert isinstance(kim, Actor)
    mr = records.read(kim, "MedicationRequest", link["id"]).value.resource
    assert mr["medication"]["concept"]["coding"][0]["code"] == OXY["rxnorm"]

    revoke = chain.tx("consent.revoke@1", patient, {"id": _consent_id(chain, patient)},
                      [chain.patient("patient-1")[1]])  # fmt: skip
    assert chain.run1(revoke).ok
    before = chain.state(f"rxidx/prescriber/{DR}")
    resp = dr.post(
        "/portal/rx/prescriber/issue",
        data={**issue_form(patient), "csrf": token_of(dr, "/portal/rx/prescriber")},
    )
    assert resp.status_code == 403 and "could not be stored at this hospital" in resp.text
    assert chain.state(f"rxidx/prescriber/{DR}") == before


def _consent_id(chain: Chain, patient: str) -> str:
    ids = chain.state(f"consents/{patient}")
    assert ids, "no consent"
    return str(ids[-1])
