"""The portal in a real browser: Debian chromium driven by Playwright over a live uvicorn.

A patient signs in, grants Hanbit Pharmacy's pharmacist read consent through the form, sees it
listed and revokes it; the pharmacist sees a denied search (reason and audit entry), then after
the grant a permitted one. Screenshot: ``/tmp/portal.png``.

Needs chromium at ``$CARECHAIN_CHROMIUM`` (default ``/usr/bin/chromium``); never runs
``playwright install``. A missing chromium fails the test: run ``make browser-deps``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from carechain.node.chaindir import InitResult
from carechain.testing.browser import Chromium

pytestmark = pytest.mark.browser
pytest.importorskip("carechain.node.records", reason="the record service is not installed")

SCREENSHOT = Path("/tmp/portal.png")
TIMEOUT_MS = 20_000
ACCOUNT_SYSTEM = "urn:carechain:account"
OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(chromium: Chromium, live_url: str) -> Iterator[OpenPage]:
    """Fresh pages, each in its own browser context (own cookies); a console error or an
    uncaught exception (a CSP violation, a failed asset) fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_(width: int = 1280, height: int = 900) -> Page:
        context = chromium.browser().new_context(
            base_url=live_url, viewport={"width": width, "height": height}
        )
        contexts.append(context)
        p = context.new_page()
        p.set_default_timeout(TIMEOUT_MS)
        p.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "status of 403" not in m.text
                else None
            ),
        )
        p.on("pageerror", lambda e: errors.append(str(e)))
        return p

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"browser errors: {errors}"


def _account(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


def _bearer(api: httpx.Client, key: str) -> dict[str, str]:
    resp = api.post("/v1/auth/login", json={"key": key, "password": "demo"})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _seed(live_url: str, patient: str) -> str:
    """The hospital may write for the patient; dr-kim stores a Patient and an Observation."""
    action = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                          "code": "correct"}]}  # fmt: skip
    consent: dict[str, Any] = {
        "resourceType": "Consent", "status": "active", "decision": "permit",
        "subject": {"reference": f"Patient/{patient}"},
        "provision": [{"actor": [{"reference": {"reference": "Organization/seoul-general"}}],
                       "action": [action]}],
    }  # fmt: skip
    with httpx.Client(base_url=live_url, timeout=30) as api:
        resp = api.post("/fhir/Consent", json=consent, headers=_bearer(api, "patient-1"))
        assert resp.status_code == 201, resp.text
        kim = _bearer(api, "dr-kim")
        pat = {
            "resourceType": "Patient",
            "identifier": [{"system": ACCOUNT_SYSTEM, "value": patient}],
            "name": [{"family": "Hong", "given": ["Gildong"]}],
        }
        resp = api.post("/fhir/Patient", json=pat, headers=kim)
        assert resp.status_code == 201, resp.text
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
                ]
            },
            "subject": {"reference": f"Patient/{resp.json()['id']}"},
            "valueQuantity": {"value": 72, "unit": "beats/minute"},
        }
        resp = api.post("/fhir/Observation", json=obs, headers=kim)
        assert resp.status_code == 201, resp.text
        oid: str = resp.json()["id"]
        return oid


def _sign_in(page: Page, key: str) -> None:
    page.goto("/portal/login")
    page.fill("#key", key)
    page.fill("#password", "demo")
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_be_visible()


def _search(page: Page, patient: str) -> None:
    page.goto("/portal/patients")
    page.fill("#patient", patient)
    page.click("#search-patient button[type=submit]")
    page.wait_for_load_state()


def test_patient_grants_and_revokes_and_the_pharmacist_sees_the_effect(
    open_page: OpenPage, live_url: str, demo_chain: InitResult
) -> None:
    p1 = _account(demo_chain, "patient-1")
    oid = _seed(live_url, p1)

    lee = open_page()
    _sign_in(lee, "ph-lee")
    expect(lee).to_have_url(re.compile(r"/portal/patients$"))
    _search(lee, p1)
    expect(lee.locator("h1")).to_have_text("Access denied")
    expect(lee.locator("#reason")).to_have_text("no_consent")
    expect(lee.locator("#audit-id")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))

    patient = open_page()
    _sign_in(patient, "patient-1")
    expect(patient).to_have_url(re.compile(r"/portal/me$"))
    expect(patient.locator("#records a.view-link")).to_have_count(2)
    patient.check("#grant input[name=grantee_kind][value=account]")
    patient.fill("#grantee", "hanbit-pharmacy.ph-lee")
    expect(patient.locator("#grant input[name=action][value=read]")).to_be_checked()
    expect(patient.locator("#grant input[name=purpose][value=TREAT]")).to_be_checked()
    patient.click("#grant button[type=submit]")
    expect(patient.locator("#notice")).to_contain_text("Consent granted")
    row = patient.locator("#consents tbody tr", has_text="hanbit-pharmacy.ph-lee")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("active")

    _search(lee, p1)
    expect(lee.locator("#results tbody tr")).to_have_count(2)
    lee.locator(f'#results a[href*="/Observation/{oid}"]').click()
    expect(lee.locator("#resource")).to_contain_text("beats/minute")
    expect(lee.locator("#audit-id")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))

    patient.goto("/portal/me")
    log = patient.locator("#access-log tbody tr", has_text="hanbit-pharmacy.ph-lee")
    expect(log.first).to_be_visible()
    assert log.count() >= 3  # the denied search, the permitted search, the read
    expect(patient.locator("#access-log .proof-bad")).to_have_count(0)
    expect(patient.locator("#access-log .proof-ok").first).to_have_text("proof verified")
    patient.screenshot(path=str(SCREENSHOT), full_page=True)

    row = patient.locator("#consents tbody tr", has_text="hanbit-pharmacy.ph-lee")
    row.locator("button.revoke").click()
    expect(patient.locator("#notice")).to_contain_text("Consent revoked")
    row = patient.locator("#consents tbody tr", has_text="hanbit-pharmacy.ph-lee")
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.locator("button.revoke")).to_have_count(0)

    _search(lee, p1)
    expect(lee.locator("#reason")).to_have_text("revoked")

    lee.click("form.signout button")
    expect(lee).to_have_url(re.compile(r"/portal/login$"))
    lee.goto("/portal/patients")
    expect(lee).to_have_url(re.compile(r"/portal/login$"))
