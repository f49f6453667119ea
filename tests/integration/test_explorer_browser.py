"""The explorer in a real browser: Debian chromium driven by Playwright over a live uvicorn.

Checks the in-browser inclusion proof (``web/static/proof.js``) end to end, its negative
controls (a flipped proof digit, a tampered checkpoint, a substituted envelope) and its RFC 9162
code against the transparency-dev vectors in ``tests/vectors/merkle``.

Needs chromium at ``$CARECHAIN_CHROMIUM`` (default ``/usr/bin/chromium``); never runs
``playwright install``. A missing chromium fails the tests: run ``make browser-deps``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from playwright.sync_api import BrowserContext, Page, Route

from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.tx import parse_envelope
from carechain.merkle import inclusion_proof, leaf_hash, root_at
from carechain.node.chaindir import new_tx
from carechain.node.node import Node
from carechain.testing.browser import Chromium
from carechain.web.routes import STATIC, router

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/explorer-tx.png")
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle" / "inclusion"
TIMEOUT_MS = 15_000
OpenPage = Callable[..., Page]
"""``open_page(width=1280, height=900)`` → a fresh page on the live server."""


def _api_shim(app: FastAPI, node: Node) -> None:
    """The three API endpoints proof.js calls, for when ``carechain.api.app`` is absent."""

    @app.get("/v1/transactions/{tx_id}")
    def transaction(tx_id: str) -> dict[str, Any]:
        loc = node.store.find_tx(bytes.fromhex(tx_id))
        raw = None if loc is None else node.store.find_envelope(loc.log_index)
        if raw is None:
            raise HTTPException(404, "not found")
        return {"tx_id": tx_id, "envelope_b64": b64u_encode(raw)}

    @app.get("/v1/proofs/inclusion")
    def proof(tx: str, size: int | None = None) -> dict[str, Any]:
        loc = node.store.find_tx(bytes.fromhex(tx))
        raw = None if loc is None else node.store.find_envelope(loc.log_index)
        if loc is None or raw is None:
            raise HTTPException(404, "not found")
        n = node.store.log_size() if size is None else size
        return {
            "tx_id": tx,
            "leaf_index": loc.log_index,
            "tree_size": n,
            "leaf_hash": leaf_hash(raw).hex(),
            "proof": [h.hex() for h in inclusion_proof(node.store, loc.log_index, n)],
            "root": root_at(node.store, n).hex(),
        }

    @app.get("/v1/checkpoint")
    def checkpoint() -> PlainTextResponse:
        note = node.store.find_checkpoint()
        assert note is not None
        return PlainTextResponse(note.decode())


def make_app(node: Node) -> FastAPI:
    """``create_app(node)`` when the API exists, else the explorer plus an API shim."""
    if importlib.util.find_spec("carechain.api.app") is not None:
        from carechain.api.app import create_app

        app: FastAPI = create_app(node)
        return app
    app = FastAPI()
    app.state.node = node
    _api_shim(app, node)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@pytest.fixture
def server(demo_node: Node) -> Iterator[str]:
    """A live uvicorn on 127.0.0.1 (free port) in a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(demo_node), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 15 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def open_page(chromium: Chromium, server: str) -> Iterator[OpenPage]:
    """Opens fresh pages on ``server``; any console error or uncaught exception (a CSP
    violation, a failed asset) fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_(width: int = 1280, height: int = 900) -> Page:
        context = chromium.browser().new_context(
            base_url=server, viewport={"width": width, "height": height}
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


def _open_tx(page: Page, position: int) -> str:
    """From the status page, click through to block 1 and its ``position``-th transaction."""
    page.goto("/")
    page.locator('a.block-link[href="/blocks/1"]').click()
    page.wait_for_url("**/blocks/1")
    link = page.locator("a.tx-link").nth(position)
    tx_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
    link.click()
    page.wait_for_url(f"**/tx/{tx_id}")
    return tx_id


def _check(page: Page) -> tuple[str, str]:
    page.get_by_role("button", name="Check inclusion proof").click()
    result = page.locator("#proof-result[data-status]")
    result.wait_for()
    return result.get_attribute("data-status") or "", result.inner_text()


def test_navigate_and_verify_inclusion_proof(open_page: OpenPage, demo_node: Node) -> None:
    page = open_page()
    page.goto("/")
    assert page.locator("#height").inner_text() == "1"
    tx_id = _open_tx(page, 3)
    assert page.locator("h1").inner_text() == "Transaction"
    assert page.locator("#proof-result").get_attribute("data-status") is None
    status, text = _check(page)
    assert status == "verified", text
    assert text.startswith("verified: tx included at index 3 of tree size 6, root ")
    assert demo_node.log.root().hex() in text
    assert "signed by node seoul-general-node-1 (Ed25519, checked here)" in text
    steps = page.locator("#proof-steps li").all_inner_texts()
    assert len(steps) == 5 and tx_id in steps[0]
    raw = demo_node.store.find_envelope(3)
    assert raw is not None and leaf_hash(raw).hex() in steps[1]
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_flipped_proof_digit_fails(open_page: OpenPage) -> None:
    """Negative control: one hex digit of the audit path changed → the root does not match."""
    page = open_page()
    flipped: list[str] = []

    def tamper(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        h = body["proof"][1]
        body["proof"][1] = h[:5] + ("0" if h[5] != "0" else "1") + h[6:]
        flipped.append(body["proof"][1])
        route.fulfill(response=response, json=body)

    page.route("**/v1/proofs/inclusion?*", tamper)
    _open_tx(page, 3)
    status, text = _check(page)
    assert flipped, "the proof request was not intercepted"
    assert status == "failed", text
    assert text.startswith("failed: inclusion proof: calculated root ")
    assert ", want checkpoint root " in text


def test_tampered_checkpoint_fails(open_page: OpenPage) -> None:
    """Negative control: a checkpoint whose root changed no longer carries a valid signature."""
    page = open_page()

    def tamper(route: Route) -> None:
        response = route.fetch()
        origin, size, root, rest = response.text().split("\n", 3)
        raw = bytearray(base64.b64decode(root))
        raw[0] ^= 1
        note = "\n".join([origin, size, base64.b64encode(raw).decode(), rest])
        route.fulfill(response=response, body=note)

    page.route("**/v1/checkpoint", tamper)
    _open_tx(page, 0)
    status, text = _check(page)
    assert status == "failed", text
    assert "checkpoint signature by seoul-general-node-1" in text
    assert "got an invalid signature" in text


def test_substituted_envelope_fails(open_page: OpenPage, demo_node: Node) -> None:
    """Negative control: the server answers with another transaction's envelope."""
    page = open_page()
    other = demo_node.store.find_envelope(5)
    assert other is not None

    def swap(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["envelope_b64"] = b64u_encode(other)
        route.fulfill(response=response, json=body)

    page.route("**/v1/transactions/*", swap)
    tx_id = _open_tx(page, 1)
    status, text = _check(page)
    assert status == "failed", text
    assert text == (
        f"failed: transaction id of the envelope: got {parse_envelope(other).tx_id.hex()}, "
        f"want {tx_id}"
    )


def test_proof_still_verifies_after_the_log_grows(open_page: OpenPage, demo_node: Node) -> None:
    page = open_page()
    _open_tx(page, 2)
    key = generate_key("ed25519")
    tx = new_tx(
        demo_node,
        "identity.register_patient@1",
        patient_account_id(key.kid),
        {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}]},
        [key],
    )
    demo_node.submit_and_wait([tx.raw])
    status, text = _check(page)
    assert status == "verified", text
    assert "index 2 of tree size 7" in text


def test_pages_fit_a_phone_screen(open_page: OpenPage) -> None:
    p = open_page(390, 844)
    for url in ("/", "/blocks", "/blocks/1", "/accounts/seoul-general.dr-kim"):
        p.goto(url)
        overflow = p.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{url} scrolls sideways by {overflow}px on a phone"
    p.goto("/blocks/1")
    p.locator("a.tx-link").first.click()
    p.wait_for_url("**/tx/*")
    overflow = p.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the tx page scrolls sideways by {overflow}px on a phone"
    p.screenshot(path="/tmp/explorer-tx-phone.png", full_page=True)


def test_proof_js_agrees_with_the_transparency_dev_vectors(open_page: OpenPage) -> None:
    page = open_page()
    files = sorted(VECTORS.rglob("*.json"))
    assert len(files) == 98
    vectors = []
    for f in files:
        v = json.loads(f.read_text())
        vectors.append(
            {
                "name": str(f.relative_to(VECTORS)),
                "index": str(v["leafIdx"]),  # uint64: exact only as a string → BigInt
                "size": str(v["treeSize"]),
                "leaf": v["leafHash"] or "",
                "root": v["root"] or "",
                "proof": v["proof"] or [],
                "wantErr": v["wantErr"],
            }
        )
    _open_tx(page, 0)
    results = page.evaluate(
        """async (vectors) => {
          const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
          const { verifyInclusion, ProofFailure } = window.carechainProof;
          const out = {};
          for (const v of vectors) {
            try {
              await verifyInclusion(BigInt(v.index), BigInt(v.size), b64(v.leaf),
                                    v.proof.map(b64), b64(v.root));
              out[v.name] = "ok";
            } catch (err) {
              out[v.name] = err instanceof ProofFailure ? "error: " + err.message : "BUG: " + err;
            }
          }
          return out;
        }""",
        vectors,
    )
    happy = 0
    for v in vectors:
        got = results[v["name"]]
        if v["wantErr"]:
            assert got.startswith("error: "), f"{v['name']}: accepted a corrupted proof"
        else:
            assert got == "ok", f"{v['name']}: {got}"
            happy += 1
    assert happy == 6
