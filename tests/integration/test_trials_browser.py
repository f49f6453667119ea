"""The public trial registry in a real browser: Debian chromium driven by Playwright over a
live uvicorn. A visitor opens the registry, sees the trial whose primary outcome was switched
after enrolment, reads the report, follows a version's proof to its transaction and checks the
inclusion proof in the browser (``static/proof.js``). Screenshot: ``/tmp/trials.png``.

Needs chromium at ``$CARECHAIN_CHROMIUM`` (default ``/usr/bin/chromium``); never runs
``playwright install``. A missing chromium fails the test: run ``make browser-deps``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from carechain.client.client import now_ms
from carechain.encoding import b64u_encode
from carechain.node.chaindir import DEMO_PASSWORD
from carechain.node.trials import SPONSOR_ORG, admit_demo_sponsor_on
from carechain.testing.browser import Chromium
from carechain.testing.chain_driver import Chain

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/trials.png")
TIMEOUT_MS = 20_000
TRIAL = "KCT0055555"
PRIMARY = [{"measure": "HbA1c change from baseline", "time_frame": "24 weeks"}]
SWITCHED = [{"measure": "Fasting plasma glucose", "time_frame": "12 weeks"}]
OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(chromium: Chromium, live_url: str) -> Iterator[OpenPage]:
    """Fresh pages; a console error or an uncaught exception (a CSP violation, a failed asset)
    fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_(width: int = 1280, height: int = 900) -> Page:
        context = chromium.browser().new_context(
            base_url=live_url, viewport={"width": width, "height": height}
        )
        contexts.append(context)
        p = context.new_page()
        p.set_default_timeout(TIMEOUT_MS)
        p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        p.on("pageerror", lambda e: errors.append(str(e)))
        return p

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"browser errors: {errors}"


def _seed(chain: Chain) -> None:
    admit_demo_sponsor_on(chain.node, chain.keys, DEMO_PASSWORD)
    pi, key = f"{SPONSOR_ORG}.dr-yoon", chain.key("dr-yoon")
    digest = b64u_encode(hashlib.sha256(b"protocol").digest())

    def run(kind: str, args: dict[str, Any]) -> None:
        out = chain.run1(chain.tx(kind, pi, args, [key]))
        assert out.ok, out.receipt

    run(
        "trials.register@1",
        {
            "id": TRIAL,
            "title": "Drug X in type 2 diabetes",
            "phase": "phase-3",
            "protocol": digest,
            "primary": PRIMARY,
            "secondary": [],
            "planned_enrolment": 120,
        },
    )
    t = now_ms()
    grant = chain.grant(
        "patient-1",
        grantee={"org": SPONSOR_ORG},
        purposes=["HRESCH"],
        period={"start": t - 3_600_000, "end": t + 86_400_000},
    )
    assert chain.run1(grant).ok
    run("trials.enrol@1", {"trial": TRIAL, "consent": grant.tx_id.hex()[:16]})
    run("trials.amend@1", {"trial": TRIAL, "reason": "sponsor decision", "primary": SWITCHED})
    run(
        "trials.report_results@1",
        {"trial": TRIAL, "primary": SWITCHED, "secondary": [], "data": digest},
    )


def test_registry_exposes_the_switch_and_its_proofs(open_page: OpenPage, chain: Chain) -> None:
    _seed(chain)
    page = open_page()
    page.goto("/")
    page.get_by_role("link", name="Trials").click()
    page.wait_for_url("**/trials")
    row = page.locator(f'tr[data-trial="{TRIAL}"]')
    expect(row).to_contain_text("1 switch")
    row.get_by_role("link", name=TRIAL).click()
    page.wait_for_url(f"**/trials/{TRIAL}")
    expect(page.locator("#verdict")).to_have_text("primary outcome switched")
    expect(page.locator("#reported")).to_contain_text("Fasting plasma glucose")
    changes = page.locator("#changes tr.change")
    expect(changes).to_have_count(2)
    expect(page.locator('#changes tr[data-change="dropped"]')).to_contain_text("HbA1c change")
    expect(page.locator('#versions tr[data-version="2"]')).to_contain_text(
        "switched after enrolment"
    )
    proofs = page.locator("#proofs tr.proof")
    expect(proofs).to_have_count(3)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    # follow version 2's proof to its transaction and check it in the browser
    proofs.nth(1).locator("a.hash").click()
    page.wait_for_url("**/tx/*")
    page.get_by_role("button", name="Check inclusion proof").click()
    result = page.locator("#proof-result[data-status]")
    result.wait_for()
    assert result.get_attribute("data-status") == "verified", result.inner_text()


def test_registry_on_a_phone(open_page: OpenPage, chain: Chain) -> None:
    _seed(chain)
    page = open_page(width=390, height=844)
    page.goto(f"/trials/{TRIAL}")
    expect(page.locator("#verdict")).to_be_visible()
    # the report's content fits (the shared header's navigation is the explorer's)
    wide = page.evaluate(
        "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
        " > 391).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)"
    )
    assert wide == [], f"report content wider than the phone: {wide}"
