"""The payer's claims page: per-provider analytics and recent adjudications.

Pages (HTML, none in the OpenAPI schema)::

    GET /portal/claims              signed-in payer / oversight member: every provider's duplicate
                                    rate, denial rate, claims without an encounter and volume
                                    against peers, and the newest claims it may read; a member of
                                    a provider sees its own organisation only
    GET /portal/claims/{claim}      one claim: items with decisions, reason codes, amounts,
                                    payments, appeal

Sign-in is the portal's custodial session (``/portal/login``, cookie ``carechain_session``).
Everything shown comes from committed ledger state through ``node/claims.py`` (which decides
who may read what); claims carry pseudonyms and codes only, no PHI. Autoescaped templates, the
portal's CSP (no scripts).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from carechain.errors import LedgerError
from carechain.node import claims as q
from carechain.node.node import Node
from carechain.web import portal

router = APIRouter(include_in_schema=False)
RECENT = 50


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _dashboard(node: Node, account: str) -> dict[str, Any]:
    v = q.viewer(node.store, account)
    allowed = "payer" in v.org_roles or bool(set(v.org_roles) & set(q.OVERSIGHT_ROLES))
    names = q.providers(node.store) if allowed else [v.org] if v.org else []
    rows = []
    for provider in names:
        if provider is not None:
            rows.append(q.provider_analytics(node.store, v, provider))
    claims = q.list_claims(node.store, v, limit=RECENT)
    return {"analytics": rows, "claims": claims, "scope": "all" if allowed else "own"}


@router.get("/portal/claims", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    """Analytics per provider and the newest claims."""
    session = await portal._session(request)
    if session is None:
        return portal._to_login(request)
    node = _node(request)
    if session.actor.kind == "patient":
        detail = "The claims page is for payers, providers and auditors."
        return portal.error_page(request, 403, "Payers only", detail, session)
    try:
        data = await portal._run(_dashboard, node, session.actor.account)
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)
    return portal.render(request, "claims_dashboard.html", session=session, **data)


@router.get("/portal/claims/{claim}", response_class=HTMLResponse)
async def claim_page(request: Request, claim: str) -> Response:
    """One claim with its adjudication."""
    session = await portal._session(request)
    if session is None:
        return portal._to_login(request)
    node = _node(request)
    try:
        v = await portal._run(q.viewer, node.store, session.actor.account)
        rec = await portal._run(q.get_claim, node.store, v, claim[:64])
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)
    return portal.render(request, "claims_claim.html", session=session, claim=rec)


__all__ = ["router"]
