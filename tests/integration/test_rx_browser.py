"""The prescription pages in a real browser: Debian chromium driven by Playwright over uvicorn.

dr-kim issues an oxycodone prescription through the form; ph-lee verifies it (status, remaining
quantity, the prescriber's registration at issue), dispenses 20 and sees a second fill of 60
refused with the rejected receipt's reason; the patient consents and dr-kim's PDMP query shows
the high-MME flag. Screenshots: ``/tmp/rx-pharmacy.png``, ``/tmp/rx-pdmp.png``.

Needs chromium at ``$CARECHAIN_CHROMIUM`` (default ``/usr/bin/chromium``); never runs
``playwright install``. A missing chromium fails the test: run ``make browser-deps``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from carechain.node.chaindir import InitResult
from carechain.testing.browser import Chromium
from carechain.testing.chain_driver import Chain

pytestmark = pytest.mark.browser
pytest.importorskip("carechain.node.records", reason="the record service is not installed")

TIMEOUT_MS = 30_000
OpenPage = Callable[[], Page]


@pytest.fixture
def open_page(chromium: Chromium, live_url: str) -> Iterator[OpenPage]:
    """Fresh pages, each in its own browser context (own cookies); a console error other than
    the document's own 4xx status (a refusal page), or an uncaught exception, fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_() -> Page:
        context = chromium.browser().new_context(
            base_url=live_url, viewport={"width": 1280, "height": 900}
        )
        contexts.append(context)
        p = context.new_page()
        p.set_default_timeout(TIMEOUT_MS)
        p.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not re.search(r"status of 4(00|03|22)", m.text)
                else None
            ),
        )
        p.on("pageerror", lambda e: errors.append(str(e)))
        return p

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"browser errors: {errors}"


def _sign_in(page: Page, key: str) -> None:
    page.goto("/portal/login")
    page.fill("#key", key)
    page.fill("#password", "demo")
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_be_visible()
    page.goto("/portal/rx")


def test_prescribe_verify_dispense_double_fill_and_pdmp(open_page: OpenPage, chain: Chain) -> None:
    patient = chain.account("patient-1")

    kim = open_page()
    _sign_in(kim, "dr-kim")
    expect(kim).to_have_url(re.compile(r"/portal/rx/prescriber$"))
    expect(kim.locator("#registration .badge")).to_have_text("valid")
    kim.fill("#patient", patient)
    kim.fill("#rxnorm", "1049621")
    kim.fill("#name", "oxycodone hydrochloride")
    kim.fill("#strength", "10 mg")
    kim.fill("#form", "tablet")
    kim.select_option("#schedule", "II")
    kim.fill("#quantity", "60")
    kim.fill("#days_supply", "10")
    kim.click("#issue button[type=submit]")
    expect(kim.locator("#notice")).to_contain_text("Prescription issued")
    notice = kim.locator("#notice").inner_text()
    found = re.search(r"Id ([0-9a-f]{16})", notice)
    assert found, notice
    rx = found.group(1)
    expect(kim.locator(f'#mine tr[data-rx="{rx}"] .rx-status')).to_have_text("valid")

    lee = open_page()
    _sign_in(lee, "ph-lee")
    expect(lee).to_have_url(re.compile(r"/portal/rx/pharmacy$"))
    lee.fill("#rx", rx)
    lee.click("#verify-form button[type=submit]")
    expect(lee.locator("#rx-status")).to_have_text("valid")
    expect(lee.locator("#remaining")).to_have_text("60")
    expect(lee.locator("#refills-remaining")).to_have_text("0")
    expect(lee.locator("#credential")).to_contain_text("AK2047175")
    expect(lee.locator("#credential-now")).to_have_text("in force")
    expect(lee.locator("#verify-audit")).to_be_visible()

    lee.fill("#dispense-patient", patient)
    lee.fill("#dispense-quantity", "20")
    lee.click("#dispense button[type=submit]")
    expect(lee.locator("#notice")).to_contain_text("Dispensed")
    expect(lee.locator("#remaining")).to_have_text("40")
    expect(lee.locator("#fills tbody tr")).to_have_count(1)

    lee.fill("#dispense-patient", patient)  # a second fill of the whole quantity: refused
    lee.fill("#dispense-quantity", "60")
    lee.click("#dispense button[type=submit]")
    expect(lee.locator("#refused-code")).to_have_text("quantity_exceeds_remaining")
    expect(lee.locator("#refused-msg")).to_contain_text("60 requested, 40 remain")
    expect(lee.locator("#refused-tx")).to_be_visible()
    expect(lee.locator("#remaining")).to_have_text("40")
    lee.screenshot(path="/tmp/rx-pharmacy.png", full_page=True)
    assert chain.state(f"rx/{rx}")["dispensed"] == 20

    kim.fill("#pdmp-patient", patient)  # no consent yet: refused, audited
    kim.click("#pdmp-form button[type=submit]")
    expect(kim.locator("#pdmp-reason")).to_have_text("no_consent")
    assert chain.run1(chain.grant()).ok
    kim.fill("#pdmp-patient", patient)
    kim.click("#pdmp-form button[type=submit]")
    flags = kim.locator("#pdmp-flags")
    expect(flags).to_be_visible()
    expect(flags.locator('[data-flag="high_mme"]')).to_have_count(1)
    expect(kim.locator("#pdmp-mme")).to_have_text("90.0")
    expect(kim.locator("#pdmp-history tbody tr")).to_have_count(1)
    kim.screenshot(path="/tmp/rx-pdmp.png", full_page=True)


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
