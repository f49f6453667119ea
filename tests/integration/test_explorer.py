"""The explorer's server-rendered pages (carechain.web.routes) over the demo chain.

The app is ``carechain.api.app.create_app(node)`` when that module exists; otherwise a minimal
FastAPI app with the explorer router and the static mount (what ``create_app`` promises to do).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from markupsafe import escape

from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.block import header_hash, parse_header
from carechain.ledger.tx import parse_envelope
from carechain.merkle import leaf_hash
from carechain.node.chaindir import DEMO_PASSWORD, new_tx
from carechain.node.node import Node
from carechain.web.routes import STATIC, router

XSS = '<script>alert("pwned")</script>'
XSS_ATTR = "<img src=x onerror=alert(1)>"


def esc(text: str) -> str:
    """``text`` as Jinja's autoescape writes it."""
    return str(escape(text))


def make_app(node: Node) -> FastAPI:
    """The API app when it exists, else the explorer alone (router + /static)."""
    if importlib.util.find_spec("carechain.api.app") is not None:
        from carechain.api.app import create_app

        app: FastAPI = create_app(node)
        return app
    app = FastAPI()
    app.state.node = node
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@pytest.fixture
def client(demo_node: Node) -> Iterator[TestClient]:
    with TestClient(make_app(demo_node)) as c:
        yield c


@dataclass
class Busy:
    """A demo chain with more blocks: an HTML-laden member, a rejection, extra patients."""

    node: Node
    client: TestClient
    member: str
    member_tx: str
    rejected_tx: str
    patients: list[str]


def _patient_tx(node: Node, extra: dict[str, str] | None = None) -> tuple[str, bytes, str]:
    key = generate_key("ed25519")
    account = patient_account_id(key.kid)
    args = {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}], **(extra or {})}
    tx = new_tx(node, "identity.register_patient@1", account, args, [key])
    return account, tx.raw, tx.tx_id.hex()


@pytest.fixture
def busy(demo_node: Node, demo_keys: Keyring) -> Iterator[Busy]:
    node = demo_node
    admin = demo_keys.load("seoul-general-admin", DEMO_PASSWORD)
    member_key = generate_key("ed25519")
    member = "seoul-general.dr-xss"
    tx = new_tx(node, "identity.register_member@1", "seoul-general.admin", {
        "account": member, "display": XSS,
        "keys": [{"alg": member_key.alg, "pub": b64u_encode(member_key.public)}],
        "licence": "KR-MD-99999", "org": "seoul-general", "role": "practitioner",
    }, [admin])  # fmt: skip
    node.submit_and_wait([tx.raw])  # block 2
    _, raw, rejected = _patient_tx(node, {"note": XSS_ATTR})
    node.submit_and_wait([raw])  # block 3: rejected (unknown args field)
    patients = []
    for _ in range(3):  # blocks 4, 5, 6
        account, raw, _ = _patient_tx(node)
        node.submit_and_wait([raw])
        patients.append(account)
    with TestClient(make_app(node)) as c:
        yield Busy(node, c, member, tx.tx_id.hex(), rejected, patients)


def _tx_ids(page: str) -> list[str]:
    return re.findall(r'href="/tx/([0-9a-f]{64})"', page)


def _block_links(page: str) -> list[int]:
    return [int(h) for h in re.findall(r'class="block-link" href="/blocks/([0-9]+)"', page)]


# -- status page -------------------------------------------------------------------------


def test_status_page_shows_the_chain(client: TestClient, demo_node: Node) -> None:
    store = demo_node.store
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    head = store.find_block(1)
    assert head is not None
    assert "carechain-demo" in page
    assert demo_node.genesis.origin in page
    assert '<div class="card-value" id="height">1</div>' in page
    assert '<div class="card-value" id="log-size">6</div>' in page
    assert header_hash(head.header).hex() in page
    note = store.find_checkpoint()
    assert note is not None
    assert f'<pre class="note" id="checkpoint">{esc(note.decode())}</pre>' in page
    assert "healthy" in page and "producing blocks" in page
    for name, roles in (
        ("Seoul General Hospital", ["hospital"]),
        ("Hanbit Pharmacy", ["dispenser", "pharmacy"]),
        ("Drug Safety Regulator (demo)", ["auditor", "regulator"]),
    ):
        row = page[page.index(name) :].split("</tr>")[0]
        for role in roles:
            assert f'<span class="tag">{role}</span>' in row
    assert _block_links(page) == [1, 0]
    assert 'href="/static/style.css"' in page
    assert '<a href="/blocks">' in page


def test_status_page_reports_a_failed_node(client: TestClient, demo_node: Node) -> None:
    demo_node.failed = OSError("disk full")
    try:
        page = client.get("/").text
    finally:
        demo_node.failed = None
    assert '<span class="badge bad">failed</span>' in page
    assert "stopped: disk full" in page


# -- blocks ------------------------------------------------------------------------------


def test_blocks_are_listed_newest_first_and_paged(busy: Busy) -> None:
    c = busy.client
    assert _block_links(c.get("/blocks").text) == [6, 5, 4, 3, 2, 1, 0]
    first = c.get("/blocks?limit=3").text
    assert _block_links(first) == [6, 5, 4]
    assert 'href="/blocks?before=4&amp;limit=3">Older' in first
    assert '<span class="disabled">← Newer</span>' in first
    second = c.get("/blocks?before=4&limit=3").text
    assert _block_links(second) == [3, 2, 1]
    assert 'href="/blocks?before=1&amp;limit=3">Older' in second
    assert 'href="/blocks?limit=3">← Newer' in second
    last = c.get("/blocks?before=1&limit=3").text
    assert _block_links(last) == [0]
    assert '<span class="disabled">Older →</span>' in last
    assert 'href="/blocks?before=4&amp;limit=3">← Newer' in last
    assert _block_links(c.get("/blocks?before=999").text) == [6, 5, 4, 3, 2, 1, 0]


def test_block_page_shows_header_seal_and_transactions(client: TestClient, demo_node: Node) -> None:
    block = demo_node.store.find_block(1)
    assert block is not None
    header = parse_header(block.header)
    r = client.get("/blocks/1")
    assert r.status_code == 200
    page = r.text
    for value in (
        header_hash(block.header).hex(),
        header.prev.hex(),
        header.tx_root.hex(),
        header.receipt_root.hex(),
        header.log_root.hex(),
        header.state_root.hex(),
        header.proposer,
    ):
        assert value in page
    assert "seoul-general-node-1" in page
    assert '<dl class="fields" id="seal">' in page
    assert "<code>ed25519</code>" in page
    assert '<span class="badge ok">= proposer</span>' in page
    txs = [parse_envelope(raw) for raw in block.envelopes]
    assert _tx_ids(page) == [t.tx_id.hex() for t in txs]
    assert page.count("<code>identity.register_member@1</code>") == 4
    assert page.count("<code>identity.register_patient@1</code>") == 2
    assert 'href="/accounts/seoul-general.admin">seoul-general.admin</a>' in page
    assert page.count('<span class="badge ok">ok</span>') == 6
    assert 'href="/blocks/0"' in page


def test_genesis_block_has_no_seal(client: TestClient, demo_node: Node) -> None:
    page = client.get("/blocks/0").text
    assert "Block 0 carries no seal" in page
    assert demo_node.genesis.hash.hex() in page
    assert "No transactions." in page


# -- transactions ------------------------------------------------------------------------


def test_tx_page_shows_body_signers_receipt_and_proof_button(
    client: TestClient, demo_node: Node
) -> None:
    store = demo_node.store
    raw, receipt = store.find_envelope(0), store.find_receipt(0)
    assert raw is not None and receipt is not None
    tx = parse_envelope(raw)
    r = client.get(f"/tx/{tx.tx_id.hex()}")
    assert r.status_code == 200
    page = r.text
    body = orjson.dumps(orjson.loads(tx.body_bytes), option=orjson.OPT_INDENT_2).decode()
    assert f'<pre class="json" id="body">{esc(body)}</pre>' in page
    assert tx.body.signers[0].kid in page
    assert 'href="/accounts/seoul-general.admin">seoul-general.admin</a>' in page
    assert "<code>identity.member_registered</code>" in page
    assert esc('"role": "practitioner"') in page
    assert '<a id="block-link" href="/blocks/1">block 1</a>' in page
    assert leaf_hash(raw).hex() in page
    assert '<button type="button" id="check-proof"' in page
    assert f'data-tx-id="{tx.tx_id.hex()}"' in page
    assert f'data-origin="{demo_node.genesis.origin}"' in page
    assert '<div id="proof-result"' in page
    assert '<script src="/static/proof.js" defer></script>' in page
    keys = re.search(r'<script type="application/json" id="checkpoint-keys">(.*?)</script>', page)
    assert keys is not None
    [key] = orjson.loads(keys.group(1))
    assert key["name"] == demo_node.genesis.origin
    assert key["node"] == "seoul-general-node-1"
    assert key["pub"] == b64u_encode(demo_node.node_key.public)


def test_tx_ids_are_case_insensitive(client: TestClient, demo_node: Node) -> None:
    raw = demo_node.store.find_envelope(3)
    assert raw is not None
    tx_id = parse_envelope(raw).tx_id.hex()
    assert client.get(f"/tx/{tx_id.upper()}").status_code == 200


def test_rejected_tx_shows_code_and_message(busy: Busy) -> None:
    page = busy.client.get(f"/tx/{busy.rejected_tx}").text
    assert '<span class="badge bad">rejected · bad_args</span>' in page
    assert "unknown args field(s)" in page
    block = busy.client.get("/blocks/3").text
    assert "rejected · bad_args" in block


# -- accounts ----------------------------------------------------------------------------


def test_member_account_page(client: TestClient) -> None:
    page = client.get("/accounts/seoul-general.dr-kim").text
    assert "Dr. Kim Minji" in page
    assert "KR-MD-20417" in page
    assert '<span class="tag">practitioner</span>' in page
    assert "Seoul General Hospital" in page
    assert '<span class="badge ok">active</span>' in page
    assert len(_tx_ids(page)) == 1  # its registration names it


def test_patient_account_page_and_paging(busy: Busy) -> None:
    c = busy.client
    patient = busy.patients[0]
    page = c.get(f"/accounts/{patient}").text
    assert "pseudonymous" in page
    assert "<code>ed25519</code>" in page
    assert len(_tx_ids(page)) == 1
    admin = c.get("/accounts/seoul-general.admin").text
    assert len(_tx_ids(admin)) == 3  # it registered dr-kim, nurse-park and dr-xss
    first = c.get("/accounts/seoul-general.admin?limit=2").text
    ids = _tx_ids(first)
    assert len(ids) == 2
    older = re.search(r'href="/accounts/seoul-general.admin\?before=([0-9]+)">Older', first)
    assert older is not None
    rest = _tx_ids(c.get(f"/accounts/seoul-general.admin?before={older.group(1)}").text)
    assert len(rest) == 1 and rest[0] not in ids


# -- errors and escaping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("/blocks/2", "Block not found"),
        ("/blocks/9007199254740991", "Block not found"),
        ("/tx/" + "ab" * 32, "Transaction not found"),
        ("/accounts/nobody.here", "Account not found"),
        ("/accounts/pt-00000000000000000000", "Account not found"),
    ],
)
def test_unknown_things_are_404_pages(client: TestClient, url: str, title: str) -> None:
    r = client.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert f"<h1>{title}</h1>" in r.text
    assert '<p class="status-code">404</p>' in r.text


@pytest.mark.parametrize(
    "url",
    [
        "/blocks/abc",
        "/blocks/-1",
        "/blocks/01",
        "/blocks/1.5",
        "/blocks/99999999999999999999",
        "/blocks?before=x",
        "/blocks?limit=0",
        "/blocks?limit=101",
        "/tx/xyz",
        "/tx/" + "a" * 63,
        "/tx/" + "a" * 65,
        "/tx/" + "g" * 64,
        "/accounts/Upper.Case",
        "/accounts/a",
        "/accounts/" + "a" * 65,
        "/accounts/seoul-general.admin?before=-3",
        "/search?q=%3Cscript%3E",
    ],
)
def test_malformed_ids_are_400_pages(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert '<p class="status-code">400</p>' in r.text
    assert "<script>" not in r.text.split("<body>")[1].replace('<script src="', "")


def test_everything_is_escaped(busy: Busy) -> None:
    c = busy.client
    pages = {
        "member": c.get(f"/accounts/{busy.member}").text,
        "member tx": c.get(f"/tx/{busy.member_tx}").text,
        "rejected tx": c.get(f"/tx/{busy.rejected_tx}").text,
        "error": c.get("/accounts/x%3Cb%3E").text,
    }
    for name, page in pages.items():
        assert XSS not in page, name
        assert XSS_ATTR not in page, name
        assert "<b>" not in page, name
    assert esc(XSS) in pages["member"]
    assert esc(XSS).replace("&#34;", "\\&#34;") in pages["member tx"]  # inside JSON
    assert esc(XSS_ATTR) in pages["rejected tx"]


def test_pages_carry_security_headers(client: TestClient) -> None:
    for url in ("/", "/blocks/1", "/blocks/9", "/tx/zz"):
        headers = client.get(url).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "connect-src 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"


def test_static_assets_are_served_and_self_contained(client: TestClient) -> None:
    css = client.get("/static/style.css")
    js = client.get("/static/proof.js")
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "javascript" in js.headers["content-type"]
    for text in (css.text, js.text):
        assert "http://" not in text and "https://" not in text and "@import" not in text
    assert "crypto.subtle" in js.text and 'id="proof-result"' not in js.text


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("1", "/blocks/1"),
        ("  0 ", "/blocks/0"),
        ("AB" * 32, "/tx/" + "ab" * 32),
        ("seoul-general.dr-kim", "/accounts/seoul-general.dr-kim"),
    ],
)
def test_search_redirects(client: TestClient, query: str, location: str) -> None:
    r = client.get("/search", params={"q": query}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == location


def test_explorer_pages_are_not_in_the_openapi_schema(client: TestClient) -> None:
    r = client.get("/openapi.json")
    if r.status_code == 404:
        pytest.skip("this app serves no OpenAPI document")
    paths = r.json()["paths"]
    assert not {"/", "/blocks", "/blocks/{height}", "/tx/{tx_id}", "/accounts/{account}"} & set(
        paths
    )


def test_api_reference_is_self_contained(demo_node: Node) -> None:
    """/docs renders every OpenAPI operation without any external asset (offline networks)."""
    from carechain.api.app import create_app

    client = TestClient(create_app(demo_node))
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method in item:
            assert f"<code>{method.upper()}</code> <code>{path}</code>" in html
    assert "cdn." not in html and "https://" not in html.split("<body", 1)[1].split("</footer>")[0]
    assert client.get("/redoc").status_code == 404
