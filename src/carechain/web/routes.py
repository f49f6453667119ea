"""The block explorer: server-rendered pages over a node's committed ledger.

Pages (all HTML, none in the OpenAPI schema)::

    /                       chain status: ids, head, newest checkpoint, health, organisations
    /blocks?before=&limit=  blocks, newest first, paged by height
    /blocks/{height}        one block: header, seal, transactions with receipts
    /tx/{tx_id}             one transaction: body, signers, receipt, in-browser proof check
    /accounts/{id}          one account: record, keys, transactions touching it
    /search?q=              jump to a height, transaction id or account

The including app stores the node in ``app.state.node`` and serves ``web/static`` at
``/static`` (``carechain.api.app.create_app`` does both).

Invariants: store reads run in a threadpool, never on the event loop; templates autoescape
everything; a malformed identifier is answered with a 400 page and an unknown one with a 404
page, both before or instead of any rendering of ledger data; every page carries a strict
Content-Security-Policy (scripts and styles only from ``/static``, fetches only to this origin).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool

from carechain.encoding import MAX_SAFE_INT
from carechain.ledger.tx import ACCOUNT_RE
from carechain.node.node import Node
from carechain.web import portal, queries

T = TypeVar("T")

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_HEIGHT_RE = re.compile(r"^(0|[1-9][0-9]{0,15})$")
_TX_ID_RE = re.compile(r"^[0-9a-fA-F]{64}$")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def format_ms(ms: int) -> str:
    """Unix milliseconds as ``YYYY-MM-DD HH:MM:SS.mmm UTC``."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d} UTC"


def short_hex(value: str, n: int = 12) -> str:
    """The first ``n`` characters of a hex string, with an ellipsis if cut."""
    return value if len(value) <= n else value[:n] + "…"


def format_duration(seconds: int) -> str:
    """``1d 2h 3m 4s`` style, omitting leading zero units."""
    out: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size or out:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    out.append(f"{seconds}s")
    return " ".join(out)


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["ms"] = format_ms
env.filters["short"] = short_hex
env.filters["duration"] = format_duration

router = APIRouter(include_in_schema=False)
router.include_router(portal.router)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render ``template`` (autoescaped) with the explorer's headers."""
    html = env.get_template(template).render(base=_base(request), path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(request: Request, status_code: int, title: str, detail: str) -> Response:
    """A 4xx page in the explorer's layout."""
    return render(
        request, "error.html", status_code, title=title, detail=detail, status=status_code
    )


async def _read(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def _parse_cursor(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not _HEIGHT_RE.match(value):
        raise _BadRequest(f"{what}: got {value!r}, want a non-negative integer")
    return int(value)


def _parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return PAGE_SIZE
    if not _HEIGHT_RE.match(value) or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise _BadRequest(f"limit: got {value!r}, want an integer from 1 to {MAX_PAGE_SIZE}")
    return int(value)


class _BadRequest(Exception):
    """A malformed query or path parameter (answered with a 400 page)."""


@router.get("/", response_class=HTMLResponse)
async def status_page(request: Request) -> Response:
    """Chain status."""
    data = await _read(queries.chain_status, _node(request))
    return render(request, "index.html", **data)


@router.get("/blocks", response_class=HTMLResponse)
async def blocks_page(
    request: Request, before: str | None = None, limit: str | None = None
) -> Response:
    """Blocks, newest first; ``before`` is a height cursor."""
    try:
        cursor, size = _parse_cursor(before, "before"), _parse_limit(limit)
    except _BadRequest as exc:
        return error_page(request, 400, "Bad request", str(exc))
    data = await _read(queries.block_list, _node(request), before=cursor, limit=size)
    return render(request, "blocks.html", **data)


@router.get("/blocks/{height}", response_class=HTMLResponse)
async def block_page(request: Request, height: str) -> Response:
    """One block."""
    if not _HEIGHT_RE.match(height) or int(height) > MAX_SAFE_INT:
        return error_page(
            request, 400, "Bad request", f"{height!r} is not a block height (0, 1, 2, …)"
        )
    data = await _read(queries.block_detail, _node(request), int(height))
    if data is None:
        return error_page(request, 404, "Block not found", f"There is no block at height {height}.")
    return render(request, "block.html", **data)


@router.get("/tx/{tx_id}", response_class=HTMLResponse)
async def tx_page(request: Request, tx_id: str) -> Response:
    """One transaction, with the in-browser inclusion proof check."""
    if not _TX_ID_RE.match(tx_id):
        return error_page(
            request,
            400,
            "Bad request",
            f"{tx_id[:80]!r} is not a transaction id (64 hexadecimal characters)",
        )
    data = await _read(queries.tx_detail, _node(request), bytes.fromhex(tx_id))
    if data is None:
        return error_page(
            request,
            404,
            "Transaction not found",
            f"No committed transaction has id {tx_id.lower()}.",
        )
    return render(request, "tx.html", **data)


@router.get("/accounts/{account}", response_class=HTMLResponse)
async def account_page(
    request: Request, account: str, before: str | None = None, limit: str | None = None
) -> Response:
    """One account and the transactions touching it; ``before`` is a log-index cursor."""
    if not ACCOUNT_RE.match(account):
        return error_page(
            request,
            400,
            "Bad request",
            f"{account[:80]!r} is not an account id "
            "(2-64 characters of a-z 0-9 . _ : -, starting with a letter or digit)",
        )
    try:
        cursor, size = _parse_cursor(before, "before"), _parse_limit(limit)
    except _BadRequest as exc:
        return error_page(request, 400, "Bad request", str(exc))
    data = await _read(queries.account_detail, _node(request), account, before=cursor, limit=size)
    if data is None:
        return error_page(
            request,
            404,
            "Account not found",
            f"No account {account} is registered and no transaction touches it.",
        )
    return render(request, "account.html", **data)


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request, q: str = "") -> Response:
    """Redirect to the block, transaction or account that ``q`` names."""
    query = q.strip()
    base = _base(request)
    if _HEIGHT_RE.match(query):
        return RedirectResponse(f"{base}/blocks/{query}", status_code=303)
    if _TX_ID_RE.match(query):
        return RedirectResponse(f"{base}/tx/{query.lower()}", status_code=303)
    if ACCOUNT_RE.match(query):
        return RedirectResponse(f"{base}/accounts/{query}", status_code=303)
    return error_page(
        request,
        400,
        "Nothing to look for",
        f"{query[:80]!r} is neither a block height, a transaction id (64 hex) nor an account id.",
    )


__all__ = ["STATIC", "TEMPLATES", "env", "router"]


@router.get("/docs", response_class=HTMLResponse)
async def api_reference(request: Request) -> Response:
    """The API reference, rendered here from the OpenAPI document (no CDN assets)."""
    spec = request.app.openapi()
    operations = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = op.get("requestBody", {}).get("content", {})
            operations.append(
                {
                    "anchor": f"{method}-{path}".replace("/", "-").strip("-"),
                    "method": method.upper(),
                    "path": path,
                    "tag": ", ".join(op.get("tags", [])),
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": op.get("parameters", []),
                    "request": sorted(body),
                    "responses": [
                        (code, r.get("description", ""))
                        for code, r in op.get("responses", {}).items()
                    ],
                }
            )
    return render(request, "apidocs.html", spec=spec, operations=operations)
