"""The supply page in a real browser (Debian chromium via Playwright, over a live uvicorn): look
up a commissioned and shipped pack by GTIN and serial, see its custody timeline; a flagged pack
shows its suspect case; an unknown serial is a 404 page. Screenshot: ``/tmp/supply.png``."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from carechain.client import Client
from carechain.client.supply import SupplyClient
from carechain.crypto.keystore import Keyring
from carechain.epcis.mapping import commissioning_document
from carechain.node.chaindir import DEMO_PASSWORD
from carechain.node.node import Node, now_ms
from carechain.node.supply.demo import DEMO_GLNS, DRUG_GTIN, ensure_supply_demo_on
from carechain.testing.browser import Chromium

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _supply_demo(demo_node: Node, demo_keys: Keyring) -> None:
    ensure_supply_demo_on(demo_node, demo_keys, DEMO_PASSWORD)


SCREENSHOT = Path("/tmp/supply.png")


def test_supply_timeline_page(chromium: Chromium, live_url: str) -> None:
    with Client(live_url) as client:
        mfr = SupplyClient(client).login("medipharm-admin", "demo")
        doc = commissioning_document(
            gtin=DRUG_GTIN,
            serials=["W1"],
            lot="LW",
            expiry="2029-05-31",
            time_ms=now_ms() - 2000,
            gln=DEMO_GLNS["medipharm"],
        )
        assert mfr.capture(doc).ok
        again = commissioning_document(
            gtin=DRUG_GTIN,
            serials=["W1"],
            lot="LW",
            expiry="2029-05-31",
            time_ms=now_ms() - 1000,
            gln=DEMO_GLNS["medipharm"],
        )
        assert mfr.capture(again).code == "already_commissioned"
    errors: list[str] = []
    context = chromium.browser().new_context(base_url=live_url)
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/supply")
        page.fill("#gtin", DRUG_GTIN)
        page.fill("#serial", "W1")
        page.click("#lookup button[type=submit]")
        expect(page.locator("#timeline tbody tr")).to_have_count(1)
        expect(page.locator("#timeline .step").first).to_have_text("commissioning")
        expect(page.locator("#status")).to_have_text("active")
        expect(page.locator("#suspect")).to_have_text("quarantined")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        resp = page.goto(f"/supply/items/01/{DRUG_GTIN}/21/NOPE")
        assert resp is not None and resp.status == 404
        page.goto("/supply?gtin=123&serial=x")
        expect(page.locator("#lookup-error")).to_contain_text("gtin")
    finally:
        context.close()
    assert not errors, errors
