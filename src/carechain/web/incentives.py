"""Prevention-incentive pages: the sponsor's programme page (budget, participants, awards),
the sponsor's totals, and the patient's wallet (points per sponsor, programmes, devices).

Public ledger state only: accounts are pseudonyms, devices are keys, and points are not money.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from carechain.errors import NotFoundError, ValidationError
from carechain.node import incentives as views
from carechain.node.node import Node
from carechain.web.routes import error_page, render

router = APIRouter(include_in_schema=False)


async def _view(
    request: Request, template: str, fn: Callable[..., dict[str, Any]], arg: str, what: str
) -> Response:
    node: Node = request.app.state.node
    try:
        view = await run_in_threadpool(fn, node.store, arg)
    except ValidationError as exc:
        return error_page(request, 400, f"Not a {what}", exc.message)
    except NotFoundError as exc:
        return error_page(request, 404, f"Unknown {what}", exc.message)
    return render(request, template, **view)


@router.get("/incentives")
async def incentives_index(request: Request) -> Response:
    """Every programme, with links to sponsors and participants."""
    node: Node = request.app.state.node
    items = await run_in_threadpool(views.list_programmes, node.store)
    return render(request, "incentives_index.html", programmes=items)


@router.get("/incentives/programmes/{programme}")
async def programme_page(request: Request, programme: str) -> Response:
    """The sponsor's view of a programme."""
    return await _view(
        request, "incentives_programme.html", views.programme_detail, programme, "programme"
    )


@router.get("/incentives/sponsors/{org}")
async def sponsor_page(request: Request, org: str) -> Response:
    """A sponsor's awarded, redeemed and outstanding points."""
    return await _view(request, "incentives_sponsor.html", views.sponsor_totals, org, "sponsor")


@router.get("/incentives/wallets/{account}")
async def wallet_page(request: Request, account: str) -> Response:
    """The patient's wallet."""
    return await _view(request, "incentives_wallet.html", views.wallet, account, "account")


__all__ = ["router"]
