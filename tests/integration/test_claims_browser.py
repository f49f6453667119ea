"""The payer's claims page in a real browser: Debian chromium driven by Playwright over a live
uvicorn (``live_url``). Claims are submitted as real transactions; the payer signs in through the
portal and sees each provider's analytics and the adjudications; a patient is refused, a
provider sees its own organisation only. Screenshot: ``/tmp/claims.png``.

Needs chromium at ``$CARECHAIN_CHROMIUM`` (default ``/usr/bin/chromium``); never runs
``playwright install``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from carechain.encoding import b64u_encode
from carechain.node.chaindir import InitResult
from carechain.node.node import now_ms
from carechain.testing.browser import Chromium
from carechain.testing.chain_driver import Chain

pytestmark = pytest.mark.browser
pytest.importorskip("carechain.node.records", reason="the record service is not installed")

SCREENSHOT = Path("/tmp/claims.png")
TIMEOUT_MS = 20_000
DAY = 86_400_000


def _claim(chain: Chain, by: str, ref: str, org: str, encounter: str) -> Any:
    args = {
        "ref": ref,
        "provider": org,
        "patient": chain.account("patient-1"),
        "coverage": "nhis-p1",
        "encounter": {"org": org, "id": encounter},
        "items": [
            {"service": "consult-outpatient", "date": now_ms() - DAY, "units": 1, "charge": 20_000}
        ],
        "diagnoses": ["E11.9"],
        "digest": b64u_encode(hashlib.sha256(ref.encode()).digest()),
    }
    sender, key = chain._actor(by)
    return chain.tx("claims.submit@1", sender, args, [key])


@pytest.fixture
def page_for(chromium: Chromium, live_url: str) -> Iterator[Any]:
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_(key: str) -> Page:
        context = chromium.browser().new_context(
            base_url=live_url, viewport={"width": 1280, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "status of 403" not in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/portal/login")
        page.fill("#key", key)
        page.fill("#password", "demo")
        page.click("#login button[type=submit]")
        expect(page.locator("#who")).to_be_visible()
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"browser errors: {errors}"


def test_payer_sees_analytics_and_adjudications(chain: Chain, page_for: Any) -> None:
    chain.run(
        chain.anchor("dr-kim", type="Encounter", id="enc-b"),
        chain.anchor("ph-lee", org="hanbit-pharmacy", type="Encounter", id="enc-ph"),
    )
    outs = chain.run(
        _claim(chain, "dr-kim", "b-1", "seoul-general", "enc-b"),
        _claim(chain, "dr-kim", "b-1", "seoul-general", "enc-b"),  # the same claim again
        _claim(chain, "dr-kim", "b-2", "seoul-general", "no-visit"),  # no encounter
        _claim(chain, "ph-lee", "ph-1", "hanbit-pharmacy", "enc-ph"),
    )
    assert all(o.ok for o in outs)
    first = outs[0].tx.tx_id.hex()[:16]

    payer = page_for("nhis-payer-admin")
    payer.goto("/portal/claims")
    expect(payer.locator("h1")).to_contain_text("Claims")
    row = payer.locator('#analytics tr[data-provider="seoul-general"]')
    expect(row.locator(".denial-rate")).to_have_text("67%")
    expect(row.locator(".duplicate-rate")).to_have_text("33%")
    expect(row.locator(".without-encounter")).to_have_text("1")
    expect(row).to_contain_text("3.00×")
    expect(payer.locator('#analytics tr[data-provider="hanbit-pharmacy"]')).to_have_count(1)
    expect(payer.locator("#claims tbody tr")).to_have_count(4)
    expect(payer.locator("#claims")).to_contain_text("encounter_not_found")
    expect(payer.locator("#claims")).to_contain_text("duplicate_claim")
    payer.screenshot(path=str(SCREENSHOT), full_page=True)
    payer.locator(f'#claims a[href$="/portal/claims/{first}"]').click()
    expect(payer.locator("#decision")).to_have_text("approved")
    expect(payer.locator("#items")).to_contain_text("consult-outpatient")
    expect(payer.locator("#items")).to_contain_text("5,600")

    lee = page_for("ph-lee")
    lee.goto("/portal/claims")
    expect(lee.locator("#analytics tbody tr")).to_have_count(1)
    expect(lee.locator('#analytics tr[data-provider="hanbit-pharmacy"]')).to_have_count(1)
    expect(lee.locator("#claims tbody tr")).to_have_count(1)
    lee.goto(f"/portal/claims/{first}")
    expect(lee.locator("h1")).to_have_text("Access denied")

    patient = page_for("patient-1")
    patient.goto("/portal/claims")
    expect(patient.locator("h1")).to_have_text("Payers only")
    expect(patient).to_have_url(re.compile(r"/portal/claims$"))


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
