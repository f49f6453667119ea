"""The portal (``carechain.web.portal``) over the real record service on the demo chain.

``create_app(demo_node, data_dir=…)``; people sign in custodially through the portal's form
(the demo password), every POST carries the session's CSRF token, and every access goes
through the record service, which decides it on chain and audits it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.crypto.keystore import Keyring
from carechain.ledger.tx import parse_envelope
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node
from carechain.testing.chain_driver import Chain
from carechain.web import portal

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

ACCOUNT_SYSTEM = "urn:carechain:account"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
AUDIT_RE = re.compile(r'id="audit-id">([0-9a-f]{64})<')


def _account(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


@pytest.fixture
def app(demo_node: Node, demo_chain: InitResult) -> FastAPI:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    assert app.state.records is not None
    return app


@pytest.fixture
def new_client(app: FastAPI) -> Iterator[Any]:
    """``new_client()``: a fresh browser-like client (its own cookie jar) on the app."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        c = TestClient(app, follow_redirects=False)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, html[:2000]
    return match.group(1)


def sign_in(client: TestClient, key: str, password: str = "demo") -> Any:
    page = client.get("/portal/login")
    assert page.status_code == 200
    return client.post(
        "/portal/login", data={"key": key, "password": password, "csrf": csrf(page.text)}
    )


def signed_in(new_client: Any, key: str) -> TestClient:
    client: TestClient = new_client()
    resp = sign_in(client, key)
    assert resp.status_code == 303, resp.text
    return client


def session_csrf(client: TestClient, page: str) -> str:
    resp = client.get(page)
    assert resp.status_code in (200, 403), resp.text
    return csrf(resp.text)


def bearer(client: TestClient, key: str) -> dict[str, str]:
    resp = client.post("/v1/auth/login", data={"key": key, "password": "demo"})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def seed_records(client: TestClient, demo_chain: InitResult, family: str = "Hong") -> str:
    """patient-1 lets Seoul General write; dr-kim stores a Patient and an Observation.
    Returns the Observation id."""
    p1 = _account(demo_chain, "patient-1")
    grant = {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": f"Patient/{p1}"},
        "decision": "permit",
        "provision": [
            {
                "actor": [{"reference": {"reference": "Organization/seoul-general"}}],
                "action": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": "correct",
                            }
                        ]
                    }
                ],
            }
        ],
    }
    resp = client.post("/fhir/Consent", json=grant, headers=bearer(client, "patient-1"))
    assert resp.status_code == 201, resp.text
    kim = bearer(client, "dr-kim")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": ACCOUNT_SYSTEM, "value": p1}],
        "name": [{"family": family, "given": ["Gildong"]}],
    }
    resp = client.post("/fhir/Patient", json=patient, headers=kim)
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 72, "unit": "beats/minute"},
    }
    resp = client.post("/fhir/Observation", json=obs, headers=kim)
    assert resp.status_code == 201, resp.text
    oid: str = resp.json()["id"]
    return oid


def audit_entry(node: Node, audit_id: str) -> dict[str, Any]:
    loc = node.store.find_tx(bytes.fromhex(audit_id))
    assert loc is not None
    raw = node.store.find_envelope(loc.log_index)
    assert raw is not None
    env = parse_envelope(raw)
    assert env.body.kind == "audit.record@1"
    return dict(env.body.args)


def grant_form(token: str, grantee: str, **extra: Any) -> dict[str, Any]:
    return {
        "csrf": token,
        "grantee_kind": "account",
        "grantee": grantee,
        "action": ["read"],
        "purpose": ["TREAT"],
        "type": ["Observation", "Patient"],
        **extra,
    }


# --- sign-in --------------------------------------------------------------------------------


def test_login_sets_a_strict_session_cookie_and_logout_ends_the_session(
    new_client: Any, demo_chain: InitResult
) -> None:
    client = new_client()
    resp = client.get("/portal")
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/login"
    page = client.get("/portal/login")
    assert "Content-Security-Policy" in page.headers
    assert "<script" not in page.text

    resp = sign_in(client, "patient-1", "wrong")
    assert resp.status_code == 401
    assert "Unknown key name or wrong password." in resp.text
    assert "carechain_session" not in client.cookies

    resp = sign_in(client, "patient-1")
    assert resp.status_code == 303 and resp.headers["location"] == "/portal"
    cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith("carechain_session=")
    )
    attrs = {a.strip().lower() for a in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attrs
    token = client.cookies["carechain_session"]
    assert client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}).json()[
        "account"
    ] == _account(demo_chain, "patient-1")

    resp = client.get("/portal")
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/me"
    me = client.get("/portal/me")
    assert me.status_code == 200
    assert _account(demo_chain, "patient-1") in me.text

    resp = client.post("/portal/logout", data={"csrf": csrf(me.text)})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/login"
    assert client.get("/portal/me").status_code == 303
    whoami = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
    assert whoami.status_code == 401  # the node dropped the session and its key

    kim = signed_in(new_client, "dr-kim")
    assert kim.get("/portal").headers["location"] == "/portal/patients"


def test_every_post_without_the_sessions_csrf_token_is_refused(
    new_client: Any, demo_chain: InitResult, app: FastAPI
) -> None:
    client = new_client()
    client.get("/portal/login")
    for data in ({"key": "patient-1", "password": "demo"},
                 {"key": "patient-1", "password": "demo", "csrf": "0" * 64}):  # fmt: skip
        resp = client.post("/portal/login", data=data)
        assert resp.status_code == 403 and "csrf" in resp.text
    stranger = new_client()  # a nonce of another browser does not fit this one
    token = csrf(stranger.get("/portal/login").text)
    resp = new_client().post(
        "/portal/login", data={"key": "patient-1", "password": "demo", "csrf": token}
    )
    assert resp.status_code == 403

    p1 = signed_in(new_client, "patient-1")
    other = signed_in(new_client, "patient-1")  # another session of the same person
    other_token = session_csrf(other, "/portal/me")
    mine = session_csrf(p1, "/portal/me")
    assert mine != other_token
    account = _account(demo_chain, "patient-1")
    for bad in (None, "", other_token):
        data = grant_form(bad, "hanbit-pharmacy.ph-lee") if bad is not None else {
            k: v for k, v in grant_form("", "hanbit-pharmacy.ph-lee").items() if k != "csrf"
        }  # fmt: skip
        resp = p1.post("/portal/consents", data=data)
        assert resp.status_code == 403, resp.text
        assert '<code id="reason">csrf</code>' in resp.text
    assert app.state.records.consents(app.state.records.actor(account), account) == []
    assert p1.post("/portal/logout", data={"csrf": other_token}).status_code == 403
    assert p1.get("/portal/me").status_code == 200  # still signed in
    assert p1.post("/portal/consents/0123456789abcdef/revoke", data={}).status_code == 403
    # JSON instead of the form: refused before anything happens
    assert p1.post("/portal/consents", json={"csrf": mine}).status_code == 403


def test_pages_for_the_right_and_wrong_roles(new_client: Any, demo_chain: InitResult) -> None:
    anonymous = new_client()
    for page in ("/portal/me", "/portal/patients", "/portal/records/Observation/x"):
        resp = anonymous.get(page)
        assert resp.status_code == 303 and resp.headers["location"] == "/portal/login"
    for page in ("/portal/consents", "/portal/logout", "/portal/break-glass"):
        assert anonymous.post(page, data={"csrf": "x"}).status_code == 303

    p1 = signed_in(new_client, "patient-1")
    assert p1.get("/portal/me").status_code == 200
    resp = p1.get("/portal/patients")
    assert resp.status_code == 403 and "For practitioners" in resp.text

    lee = signed_in(new_client, "ph-lee")
    assert lee.get("/portal/patients").status_code == 200
    resp = lee.get("/portal/me")
    assert resp.status_code == 403 and "For patients" in resp.text
    token = session_csrf(lee, "/portal/patients")
    resp = lee.post("/portal/consents", data=grant_form(token, "hanbit-pharmacy.ph-lee"))
    assert resp.status_code == 403
    p1_account = _account(demo_chain, "patient-1")
    resp = lee.post(
        "/portal/break-glass", data={"csrf": token, "patient": p1_account, "reason": "x"}
    )
    assert resp.status_code == 403 and "emergency capability" in resp.text
    assert 'id="break-glass"' not in lee.get(f"/portal/patients?patient={p1_account}").text


# --- patient: records, consents, access log ------------------------------------------------


def test_grant_and_revoke_round_trip_through_the_forms(
    new_client: Any, demo_chain: InitResult, demo_node: Node
) -> None:
    api = new_client()
    oid = seed_records(api, demo_chain)
    p1_account = _account(demo_chain, "patient-1")
    lee = signed_in(new_client, "ph-lee")
    denied = lee.get(f"/portal/patients?patient={p1_account}")
    assert denied.status_code == 403
    assert '<code id="reason">no_consent</code>' in denied.text

    p1 = signed_in(new_client, "patient-1")
    token = session_csrf(p1, "/portal/me")
    resp = p1.post("/portal/consents", data=grant_form(token, "hanbit-pharmacy.ph-lee"))
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/me?notice=granted"
    me = p1.get(resp.headers["location"]).text
    assert "Consent granted" in me
    rows = re.findall(r'<tr data-consent="([0-9a-f]{16})">(.*?)</tr>', me, re.S)
    assert len(rows) == 2  # the hospital's (seed) and the new one, newest first
    cid, cells = rows[0]
    assert "account hanbit-pharmacy.ph-lee" in cells and 'badge ok">active' in cells
    assert f'/portal/consents/{cid}/revoke"' in cells

    found = lee.get(f"/portal/patients?patient={p1_account}")
    assert found.status_code == 200, found.text
    assert f'href="/portal/records/Observation/{oid}?purpose=TREAT"' in found.text
    view = lee.get(f"/portal/records/Observation/{oid}?purpose=TREAT")
    assert view.status_code == 200 and "beats/minute" in view.text
    read_audit = AUDIT_RE.search(view.text)
    assert read_audit is not None
    entry = audit_entry(demo_node, read_audit.group(1))
    assert entry["actor"] == "hanbit-pharmacy.ph-lee" and entry["outcome"] == "permit"
    assert entry["basis"] == {"id": cid, "kind": "consent"}

    resp = p1.post(f"/portal/consents/{cid}/revoke", data={"csrf": token})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/me?notice=revoked"
    me = p1.get(resp.headers["location"]).text
    cells = dict(re.findall(r'<tr data-consent="([0-9a-f]{16})">(.*?)</tr>', me, re.S))[cid]
    assert "revoked" in cells and "/revoke" not in cells
    again = lee.get(f"/portal/patients?patient={p1_account}")
    assert again.status_code == 403 and '<code id="reason">revoked</code>' in again.text
    # revoking twice, or someone else's grant, is refused with a page, not a crash
    assert p1.post(f"/portal/consents/{cid}/revoke", data={"csrf": token}).status_code == 403


def test_denied_search_shows_the_reason_and_its_audit_entry(
    new_client: Any, demo_chain: InitResult, demo_node: Node
) -> None:
    seed_records(new_client(), demo_chain)
    p1_account = _account(demo_chain, "patient-1")
    lee = signed_in(new_client, "ph-lee")
    resp = lee.get(f"/portal/patients?patient={p1_account}")
    assert resp.status_code == 403
    assert "Access denied" in resp.text and "no_consent" in resp.text
    match = AUDIT_RE.search(resp.text)
    assert match is not None
    entry = audit_entry(demo_node, match.group(1))
    assert entry["outcome"] == "deny" and entry["reason"] == "no_consent"
    assert entry["actor"] == "hanbit-pharmacy.ph-lee" and entry["purpose"] == "TREAT"
    assert entry["patient"] == p1_account
    assert f'href="/tx/{match.group(1)}"' in resp.text
    unknown = lee.get("/portal/patients?patient=pt-00000000000000000000")
    assert unknown.status_code == 404


def test_me_lists_records_views_them_audited_and_verifies_the_access_log(
    new_client: Any, demo_chain: InitResult, demo_node: Node
) -> None:
    oid = seed_records(new_client(), demo_chain)
    p1 = signed_in(new_client, "patient-1")
    me = p1.get("/portal/me").text
    assert f'href="/portal/records/Observation/{oid}"' in me
    assert "seoul-general" in me
    view = p1.get(f"/portal/records/Observation/{oid}")
    assert view.status_code == 200 and "beats/minute" in view.text
    match = AUDIT_RE.search(view.text)
    assert match is not None
    entry = audit_entry(demo_node, match.group(1))
    assert entry["actor"] == _account(demo_chain, "patient-1")
    assert entry["basis"] == {"kind": "self"} and entry["purpose"] == "PATRQT"

    log = p1.get("/portal/me").text.split('id="access-log"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[ >].*?</tr>", log.split("<tbody>", 1)[1], re.S)
    assert len(rows) >= 5, log
    assert all("proof verified" in r for r in rows), log
    assert match.group(1) in log  # the view above is in the log
    assert "not verified" not in log
    assert p1.get("/portal/records/Observation/nope").status_code == 404
    assert p1.get("/portal/records/Basic/x").status_code == 400


def test_break_glass_by_an_emergency_member_is_highlighted_for_the_patient(
    new_client: Any, demo_chain: InitResult, chain: Chain
) -> None:
    ring = Keyring(demo_chain.paths.root, scrypt_n=2**10)
    ring.create("dr-er", "ed25519", DEMO_PASSWORD, account="seoul-general.dr-er")
    key = ring.load("dr-er", DEMO_PASSWORD)
    assert chain.enroll("seoul-general", "dr-er", key, capabilities=["emergency"]).ok
    p2 = _account(demo_chain, "patient-2")  # no consent at all
    er = signed_in(new_client, "dr-er")
    denied = er.get(f"/portal/patients?patient={p2}")
    assert denied.status_code == 403 and '<code id="reason">no_consent</code>' in denied.text
    assert 'id="break-glass"' in denied.text  # offered to emergency members only
    resp = er.post(
        "/portal/break-glass",
        data={"csrf": csrf(denied.text), "patient": p2, "reason": "unconscious in <ED>"},
    )
    assert resp.status_code == 303, resp.text
    assert "purpose=ETREAT" in resp.headers["location"]
    found = er.get(resp.headers["location"])
    assert found.status_code == 200, found.text
    assert "Break-glass session opened" in found.text and 'id="results"' in found.text

    patient = signed_in(new_client, "patient-2")
    me = patient.get("/portal/me").text
    sessions = me.split('id="sessions"', 1)[1].split("</table>", 1)[0]
    assert "seoul-general.dr-er" in sessions and "unconscious in &lt;ED&gt;" in sessions
    assert "awaiting review" in sessions and "Mark reviewed" in sessions
    (sid,) = re.findall(r"/portal/break-glass/([0-9a-f]{16})/review", sessions)
    no_csrf = patient.post(f"/portal/break-glass/{sid}/review", data={})
    assert no_csrf.status_code == 403  # CSRF still guards it
    reviewed = patient.post(f"/portal/break-glass/{sid}/review", data={"csrf": csrf(me)})
    assert reviewed.status_code == 303 and "notice=reviewed" in reviewed.headers["location"]
    after = patient.get("/portal/me").text.split('id="sessions"', 1)[1].split("</table>", 1)[0]
    assert "reviewed by you" in after and "Mark reviewed" not in after
    assert [r["as"] for r in chain.state(f"bg/{sid}")["reviews"]] == ["patient"]
    again = patient.post(f"/portal/break-glass/{sid}/review", data={"csrf": csrf(me)})
    assert again.status_code == 409  # a second review is refused
    log = me.split('id="access-log"', 1)[1].split("</table>", 1)[0]
    flagged = re.findall(r'<tr class="break-glass-row".*?</tr>', log, re.S)
    assert len(flagged) >= 2  # the opening and the ETREAT search
    assert all("seoul-general.dr-er" in r and "proof verified" in r for r in flagged)


def test_everything_shown_is_escaped(
    new_client: Any, demo_chain: InitResult, demo_node: Node
) -> None:
    evil = '<script>alert("x")</script>'
    client = new_client()
    page = client.get("/portal/login")
    resp = client.post(
        "/portal/login", data={"key": evil, "password": "x", "csrf": csrf(page.text)}
    )
    assert resp.status_code == 401
    assert evil not in resp.text and "&lt;script&gt;" in resp.text

    oid = seed_records(new_client(), demo_chain, family=evil)
    p1 = signed_in(new_client, "patient-1")
    token = session_csrf(p1, "/portal/me")
    resp = p1.post("/portal/consents", data=grant_form(token, evil))
    assert resp.status_code == 422 and evil not in resp.text and "&lt;script&gt;" in resp.text
    resp = p1.post("/portal/consents", data=grant_form(token, "nobody.here", end='2026"><b>x'))
    assert resp.status_code == 422 and "<b>x" not in resp.text
    lee = signed_in(new_client, "ph-lee")
    resp = lee.get("/portal/patients", params={"patient": evil})
    assert resp.status_code == 400 and evil not in resp.text
    assert oid
    (pid,) = [
        k.rsplit("/", 1)[1] for k, _ in demo_node.store.iter_state("rec/seoul-general/Patient/")
    ]
    view = p1.get(f"/portal/records/Patient/{pid}")
    assert view.status_code == 200
    assert "<script>" not in view.text and "&lt;script&gt;alert(" in view.text


def test_a_tampered_proof_is_not_shown_as_verified(
    new_client: Any, demo_chain: InitResult, demo_node: Node, app: FastAPI
) -> None:
    signed_in(new_client, "patient-1").get("/portal/me")  # at least one audited look
    account = _account(demo_chain, "patient-1")
    views = app.state.records.audit_views(account)
    assert views and all(ok for ok, _ in portal._proof_status(demo_node, views))
    view = views[0]
    root = bytearray(bytes.fromhex(view.proof["root"]))
    root[0] ^= 1
    bad_root = dataclasses.replace(view, proof={**view.proof, "root": root.hex()})
    other_leaf = dataclasses.replace(view, entry={**view.entry, "tx": views[-1].entry["tx"]})
    results = portal._proof_status(demo_node, [bad_root, other_leaf])
    if len(views) > 1:
        assert [ok for ok, _ in results] == [False, False]
    else:
        assert not results[0][0]
